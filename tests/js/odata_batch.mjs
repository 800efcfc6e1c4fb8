// Interop check: the OData 4 client `@odata/client` sends multipart and JSON batches with relative
// item URLs and change sets to the OData 4 service of tests/odata_clients.rs.
//
// Usage: node odata_batch.mjs ADDR   (NODE_PATH holds the installed packages)
//
// Prints one JSON report on its last line.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { OData } = require("@odata/client");

const addr = process.argv[2];
const client = OData.New4({ serviceEndpoint: `http://${addr}/odata/v4/farm/v1/` });
const report = {};

async function summary(responses) {
  const out = [];
  for (const r of responses) {
    let body = null;
    try {
      body = await r.json();
    } catch (e) {
      body = null;
    }
    out.push({ status: r.status, body });
  }
  return out;
}

// Multipart: a read, and a write, which the client sends as a change set of its own.
report.multipart = await summary(
  await client.execBatchRequests([
    client.newBatchRequest({ collection: "Animals", id: "pony" }),
    client.newBatchRequest({ collection: "Animals", method: "POST", entity: { Name: "goat", Age: 1 } }),
  ]),
);

// Multipart: a change set that fails (the pony exists) is answered by its failing response.
report.multipartFailed = await summary(
  await client.execBatchRequests([
    client.newBatchRequest({ collection: "Animals", method: "POST", entity: { Name: "pony", Age: 9 } }),
  ]),
);

// JSON (OData 4.01): an atomicity group of two creates, then one whose second create fails.
report.json = await summary(
  await client.execBatchRequestsJson([
    client.newBatchRequest({ collection: "Animals", method: "POST", entity: { Name: "hen", Age: 2 }, atomicityGroup: "g1", requestId: "1" }),
    client.newBatchRequest({ collection: "Animals", method: "POST", entity: { Name: "duck", Age: 3 }, atomicityGroup: "g1", requestId: "2" }),
    client.newBatchRequest({ collection: "Animals", id: "goat", requestId: "3" }),
  ]),
);
report.jsonFailed = await summary(
  await client.execBatchRequestsJson([
    client.newBatchRequest({ collection: "Animals", method: "POST", entity: { Name: "cat", Age: 4 }, atomicityGroup: "g2", requestId: "1" }),
    client.newBatchRequest({ collection: "Animals", method: "POST", entity: { Name: "pony", Age: 5 }, atomicityGroup: "g2", requestId: "2" }),
  ]),
);
report.after = await summary(
  await client.execBatchRequestsJson([
    // The found one first: without `Prefer: odata.continue-on-error`, a failure stops the batch.
    client.newBatchRequest({ collection: "Animals", id: "hen", requestId: "hen" }),
    client.newBatchRequest({ collection: "Animals", id: "cat", requestId: "cat" }),
  ]),
);
report.ok = true;
console.log(JSON.stringify(report));
