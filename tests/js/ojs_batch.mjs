// o.js (the `odata` package, 2.x) as a real client of an OData 4 `$batch`: its OBatch writes
// every item as an absolute URL under the service root it was given (its default), puts writes
// in a change set when asked, and reads the answer with its own parser.
//
// Usage: NODE_PATH=target/js/node_modules node tests/js/ojs_batch.mjs http://127.0.0.1:PORT/odata/v4/app/
//
// Prints one JSON summary line: what the client parsed from each batch.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { o } = require("odata");
const version = require("odata/package.json").version;

const root = process.argv[2];
// o.js merges its configuration shallowly, so a batch setting restates the defaults.
const changeSets = {
  batch: {
    boundaryPrefix: "batch_",
    changsetBoundaryPrefix: "changset_",
    endpoint: "$batch",
    headers: new Headers({ "Content-Type": "multipart/mixed" }),
    useChangset: true,
    useRelativeURLs: false,
  },
};
const summary = { version };

async function step(name, run) {
  try {
    summary[name] = { ok: true, value: await run() };
  } catch (e) {
    const status = e && typeof e.status === "number" ? e.status : null;
    summary[name] = { ok: false, status, message: String(e && (e.message ?? e.statusText)) };
  }
}

// A change set of two creates that commits.
await step("commit", () =>
  o(root, changeSets)
    .post("animals", { name: "pony", age: 3 })
    .post("animals", { name: "hen", age: 1 })
    .batch(),
);
// Reads, by key predicate and of the whole set.
await step("reads", () =>
  o(root).get("animals('pony')").get("animals('hen')").get("animals('nobody')").get("animals").batch(),
);
// A change set whose second create is refused: the first is rolled back.
await step("rollback", () =>
  o(root, changeSets)
    .post("animals", { name: "cow", age: 2 })
    .post("animals", { name: "bad", age: -1 })
    .batch(),
);
// An update and a delete that commit.
await step("updateAndDelete", () =>
  o(root, changeSets).patch("animals('hen')", { age: 2 }).delete("animals('pony')").batch(),
);
await step("after", () => o(root).get("animals").query());
console.log(JSON.stringify(summary));
