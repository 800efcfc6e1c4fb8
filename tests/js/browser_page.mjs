// Opens the farm example's page (`examples/farm/page.html`) in headless Chromium with
// playwright-core, waits for it to send its calls both ways, saves a screenshot and prints
// what the page found.
//
// Usage: NODE_PATH=target/js/node_modules node tests/js/browser_page.mjs \
//          /usr/bin/chromium 'http://127.0.0.1:PAGE/?api=http://127.0.0.1:API' shot.png
//
// Prints one JSON line: { ok, browser, result, shown, differs, consoleErrors, pageErrors, error? }.
// Besides the screenshot it saves one of the page showing a changed answer (`*-differs.png`).
import { createRequire } from "node:module";

// playwright-core's `main` is CommonJS, and NODE_PATH only reaches `require`, not `import`.
const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const [executablePath, url, screenshot] = process.argv.slice(2);
if (!executablePath || !url || !screenshot) {
  console.error("usage: browser_page.mjs <chromium> <page url> <screenshot.png>");
  process.exit(2);
}

const out = { ok: false, consoleErrors: [], pageErrors: [] };
// Chromium refuses to start its sandbox as root.
const args = process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [];
let browser;
try {
  browser = await chromium.launch({ executablePath, args, timeout: 30_000 });
  out.browser = browser.version();
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => {
    if (m.type() === "error") out.consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => out.pageErrors.push(String(e)));
  await page.goto(url, { timeout: 15_000 });
  await page.waitForFunction(() => document.documentElement.dataset.state === "done", null, {
    timeout: 30_000,
  });
  out.result = await page.evaluate(() => window.farmResult);
  out.shown = await page.evaluate(() => ({
    singleMs: document.getElementById("single-ms").textContent,
    batchMs: document.getElementById("batch-ms").textContent,
    verdict: document.getElementById("verdict").textContent,
    rows: document.querySelectorAll("#rows tr").length,
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  // How the page shows an answer that differs: the same result with call 5's batch answer
  // changed, drawn by the page's own code.
  out.differs = await page.evaluate(() => {
    const changed = structuredClone(window.farmResult);
    changed.calls[4].batch = { status: 500, body: "changed" };
    changed.calls[4].same = false;
    show(changed);
    return {
      verdict: document.getElementById("verdict").textContent,
      rowClass: document.querySelectorAll("#rows tr")[4].className,
      sameCell: document.querySelectorAll("#rows tr")[4].lastElementChild.textContent,
    };
  });
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-differs.png"), fullPage: true });
  out.ok = true;
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  if (browser) await browser.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
