// PnPjs (@pnp/sp) as a real client of SharePoint's `_api/$batch`: `sp.batched()` puts
// consecutive writes in one change set, names items by absolute URL under the batch's base,
// and reads the answer with its own parser, which takes only top-level `--batchresponse_`
// parts and matches them to its requests by position.
//
// Usage: NODE_PATH=target/js/node_modules node tests/js/pnp_sp.mjs http://127.0.0.1:PORT/sites/farm
//
// Prints one JSON summary line: what the client reported for each request.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// The packages are ES modules, which NODE_PATH does not reach: import them by path.
const modules = process.env.NODE_PATH;
const load = (p) => import(pathToFileURL(join(modules, p)).href);
const { spfi, DefaultHeaders, DefaultInit } = await load("@pnp/sp/index.js");
await load("@pnp/sp/webs/index.js");
await load("@pnp/sp/lists/index.js");
await load("@pnp/sp/items/index.js");
await load("@pnp/sp/batching.js");
const { BrowserFetch, DefaultParse } = await load("@pnp/queryable/index.js");
const { readFileSync } = await import("node:fs");
const version = JSON.parse(readFileSync(join(modules, "@pnp/sp/package.json"))).version;

const site = process.argv[2];
const sp = spfi(site).using(DefaultHeaders(), DefaultInit(), BrowserFetch(), DefaultParse());
const summary = { version };

const settle = (p) =>
  p.then(
    (value) => ({ ok: true, value }),
    (e) => ({ ok: false, status: e.status ?? e.response?.status ?? null, message: String(e.message) }),
  );

async function batch(name, build) {
  const [batched, execute] = sp.batched();
  const list = batched.web.lists.getByTitle("Animals");
  const promises = build(list).map(settle);
  let executed;
  try {
    await execute();
    executed = { ok: true };
  } catch (e) {
    executed = { ok: false, message: String(e.message) };
  }
  summary[name] = { execute: executed, results: await Promise.all(promises) };
}

// A read and a change set of two creates that commits.
await batch("commit", (list) => [
  list.items(),
  list.items.add({ Title: "pony" }),
  list.items.add({ Title: "hen" }),
]);
// A change set whose second create fails (the list refuses the title "bad"): the first is
// rolled back, and each request learns its own fate.
await batch("rollback", (list) => [
  list.items.add({ Title: "cow" }),
  list.items.add({ Title: "bad" }),
]);
// An update and a delete that commit, then a read.
await batch("updateAndDelete", (list) => [
  list.items.getById(1).update({ Title: "pony2" }),
  list.items.getById(2).delete(),
]);
summary.after = await settle(sp.web.lists.getByTitle("Animals").items());
console.log(JSON.stringify(summary));
