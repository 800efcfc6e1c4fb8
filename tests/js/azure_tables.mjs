// Azure's JavaScript Tables client (@azure/data-tables) as a real client of an entity group
// transaction: `TableClient.submitTransaction` builds the multipart batch (absolute item URLs
// under the batch's base), posts it, and reads the answer with its own parser, which looks for
// `--changesetresponse_` parts and `ETag: ` lines. Reads go straight to the service.
//
// Usage: NODE_PATH=target/js/node_modules node tests/js/azure_tables.mjs http://127.0.0.1:PORT/tables
//
// Prints one JSON summary line: what the client reported for each step.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { TableClient } = require("@azure/data-tables");
const version = require("@azure/data-tables/package.json").version;

const url = process.argv[2];
const client = new TableClient(url, "animals", { allowInsecureConnection: true });
const summary = { version };

async function step(name, run) {
  try {
    summary[name] = { ok: true, value: await run() };
  } catch (e) {
    summary[name] = { ok: false, status: e.statusCode ?? null, code: e.code ?? null, message: String(e.message) };
  }
}

// A transaction that commits: two creates and an update.
await step("commit", async () => {
  const res = await client.submitTransaction([
    ["create", { partitionKey: "farm", rowKey: "pony", legs: 4 }],
    ["create", { partitionKey: "farm", rowKey: "hen", legs: 2 }],
  ]);
  return { status: res.status, subResponses: res.subResponses };
});
await step("readPony", async () => {
  const e = await client.getEntity("farm", "pony");
  return { legs: e.legs, etag: e.etag ?? null };
});
// A transaction that fails in its middle: the second create collides with `pony`, so the
// first (`cow`) must be rolled back and the client must say the transaction failed.
await step("rollback", async () => {
  const res = await client.submitTransaction([
    ["create", { partitionKey: "farm", rowKey: "cow", legs: 4 }],
    ["create", { partitionKey: "farm", rowKey: "pony", legs: 3 }],
    ["update", { partitionKey: "farm", rowKey: "hen", legs: 9 }, "Merge"],
  ]);
  return { status: res.status, subResponses: res.subResponses };
});
await step("readCow", async () => (await client.getEntity("farm", "cow")).legs);
await step("readHen", async () => (await client.getEntity("farm", "hen")).legs);
// Updates and deletes that commit, with the etags the answer carried.
await step("updateAndDelete", async () => {
  const res = await client.submitTransaction([
    ["update", { partitionKey: "farm", rowKey: "hen", legs: 3 }, "Merge"],
    ["delete", { partitionKey: "farm", rowKey: "pony" }],
  ]);
  return { status: res.status, subResponses: res.subResponses };
});
await step("readHenAfter", async () => (await client.getEntity("farm", "hen")).legs);
await step("readPonyAfter", async () => (await client.getEntity("farm", "pony")).legs);
console.log(JSON.stringify(summary));
