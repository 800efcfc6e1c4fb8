// Microsoft's JavaScript Graph client (@microsoft/microsoft-graph-client) as a real client of
// a JSON batch endpoint: the batch is built by the SDK's BatchRequestContent from real
// `Request` objects, sent with fetch, and read back by the SDK's BatchResponseContent.
//
// Usage: NODE_PATH=target/js/node_modules node tests/js/graph_batch.mjs http://127.0.0.1:PORT
//
// Prints one JSON summary line; exits 1 on any mismatch.
import { createRequire } from "node:module";

// The SDK's `main` is CommonJS, and NODE_PATH only reaches `require`, not `import`.
const require = createRequire(import.meta.url);
const sdkPath = require.resolve("@microsoft/microsoft-graph-client");
const { BatchRequestContent, BatchResponseContent } = require("@microsoft/microsoft-graph-client");
const sdkVersion = require("@microsoft/microsoft-graph-client/package.json").version;

const base = process.argv[2];
if (!base) {
  console.error("usage: graph_batch.mjs <base_url>");
  process.exit(2);
}
const root = `${base}/v1.0`;
const failures = [];
const quirks = [];

// The SDK only accepts a dependency shape that is parallel, serial or "all on one"; this is
// serial, and request 3 is a 404, so request 4 must come back as 424.
const posted = { subject: "hello", body: { contentType: "text", content: "from js" } };
const content = new BatchRequestContent([
  { id: "1", request: new Request(`${root}/me`) },
  {
    id: "2",
    dependsOn: ["1"],
    request: new Request(`${root}/me/messages`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(posted),
    }),
  },
  { id: "3", dependsOn: ["2"], request: new Request(`${root}/me/messages/missing`) },
  { id: "4", dependsOn: ["3"], request: new Request(`${root}/me/messages/m1`) },
]);
const payload = await content.getContent();

const res = await fetch(`${root}/$batch`, {
  method: "POST",
  headers: { "Content-Type": "application/json", Accept: "application/json" },
  body: JSON.stringify(payload),
});
const raw = await res.text();
if (res.status !== 200) {
  failures.push(`batch status ${res.status}: ${raw}`);
}
let answer;
try {
  answer = JSON.parse(raw);
} catch (e) {
  failures.push(`batch answer is not JSON (${e.message}): ${raw}`);
  answer = { responses: [] };
}
const order = (answer.responses ?? []).map((r) => r.id);

// BatchResponseContent turns a JSON `body` back into text only when the item's headers hold
// the key "Content-Type" spelled exactly so (as graph.microsoft.com writes it); under any other
// spelling it hands the object to `new Response`, whose text is then "[object Object]". Header
// names are case-insensitive, so the answer is re-keyed before the SDK reads it, and the
// summary says whether that was needed.
const asSent = new BatchResponseContent(structuredClone(answer));
const sdkReadsAsSent = (await asSent.getResponseById("1")?.text()) !== "[object Object]";
for (const item of answer.responses ?? []) {
  const h = item.headers;
  if (!h || "Content-Type" in h) continue;
  const key = Object.keys(h).find((k) => k.toLowerCase() === "content-type");
  if (key === undefined) continue;
  h["Content-Type"] = h[key];
  delete h[key];
  if (!quirks.includes("content-type-case")) quirks.push("content-type-case");
}
const reader = new BatchResponseContent(answer);

async function readBody(id) {
  const r = reader.getResponseById(id);
  if (!r) {
    failures.push(`no response for id ${id}`);
    return { status: null, body: null };
  }
  const text = await r.text();
  try {
    return { status: r.status, body: JSON.parse(text), contentType: r.headers.get("content-type") };
  } catch {
    return { status: r.status, body: text, contentType: r.headers.get("content-type") };
  }
}

function expect(cond, what) {
  if (!cond) failures.push(what);
}

const got = {};
for (const id of ["1", "2", "3", "4"]) got[id] = await readBody(id);

expect(got["1"].status === 200, `1: status ${got["1"].status}`);
expect(got["1"].body?.displayName === "Ann", `1: body ${JSON.stringify(got["1"].body)}`);
expect(got["2"].status === 201, `2: status ${got["2"].status}`);
expect(got["2"].body?.subject === posted.subject, `2: body ${JSON.stringify(got["2"].body)}`);
expect(got["2"].body?.body?.content === posted.body.content, `2: nested ${JSON.stringify(got["2"].body)}`);
expect(got["3"].status === 404, `3: status ${got["3"].status}`);
expect(got["3"].body?.error?.code === "ResourceNotFound", `3: body ${JSON.stringify(got["3"].body)}`);
expect(got["4"].status === 424, `4: status ${got["4"].status}`);
expect(JSON.stringify(order) === JSON.stringify(["1", "2", "3", "4"]), `order ${order}`);

console.log(
  JSON.stringify({
    ok: failures.length === 0,
    sdk_version: sdkVersion,
    sdk_path: sdkPath,
    sent: payload,
    order,
    sdk_reads_answer_as_sent: sdkReadsAsSent,
    statuses: Object.fromEntries(Object.entries(got).map(([k, v]) => [k, v.status])),
    bodies: Object.fromEntries(Object.entries(got).map(([k, v]) => [k, v.body])),
    quirks,
    failures,
  }),
);
process.exit(failures.length === 0 ? 0 : 1);
