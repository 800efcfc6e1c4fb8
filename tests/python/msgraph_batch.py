"""Microsoft Graph's Python SDK core (msgraph-core) as a client of http-batch's JSON batches.

Usage: msgraph_batch.py BASE_URL   (for example http://127.0.0.1:4000)

Run by tests/json_batch.rs against the small API defined there, whose batch paths are /batch
and /v1.0/$batch. The SDK builds every batch (BatchRequestContent / BatchRequestItem) and reads
every answer (BatchResponseContent), in two ways:

1. end to end: BatchRequestBuilder.post through Kiota's httpx request adapter, as an
   application would call Graph (anonymous auth, so no token service is involved);
2. by hand: the SDK's own serialization of the batch is POSTed with httpx, and the raw answer
   is checked field by field, then parsed with the SDK's BatchResponseContent.

Prints "msgraph interop ok" at the end; any failed check raises and exits non-zero.

Two SDK quirks shape the checks: BatchRequestItem writes `depends_on` (snake case) rather than
`dependsOn`, which the server accepts as an alias; and BatchResponseItem reads `body` with
get_bytes_value, which base64-decodes strings and (since kiota-serialization-json 1.x) drops
JSON objects, so JSON bodies are checked on the raw answer and binary ones through the SDK.
"""

import asyncio
import json
import sys

import httpx
from kiota_abstractions.api_client_builder import (
    register_default_deserializer,
    register_default_serializer,
)
from kiota_abstractions.authentication.anonymous_authentication_provider import (
    AnonymousAuthenticationProvider,
)
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.httpx_request_adapter import HttpxRequestAdapter
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from kiota_serialization_json.json_serialization_writer_factory import (
    JsonSerializationWriterFactory,
)
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph_core.requests.batch_response_content import BatchResponseContent

BINARY = bytes([0x00, 0x9F, 0x92, 0x96, 0xFF])
TOKEN = "Bearer sdk-outer-token"
CHECKS = 0


def check(condition, what):
    global CHECKS
    if not condition:
        raise AssertionError(what)
    CHECKS += 1


def request(method, url, body=None):
    info = RequestInformation()
    info.http_method = method
    info.url = url
    if body is not None:
        info.headers.try_add("Content-Type", "application/json")
        info.content = json.dumps(body).encode()
    return info


def build_batch(root):
    """The same six requests each time; ids are chosen so that order matters."""
    content = BatchRequestContent()
    items = [
        BatchRequestItem(request(Method.GET, f"{root}/items/pony"), id="1"),
        BatchRequestItem(
            request(Method.POST, f"{root}/items", {"name": "goat", "legs": 4}), id="2"
        ),
        BatchRequestItem(request(Method.GET, f"{root}/status/404"), id="3"),
        # Fails because "3" does (424 Failed Dependency), without running.
        BatchRequestItem(request(Method.GET, f"{root}/echo"), id="4", depends_on=["3"]),
        BatchRequestItem(request(Method.GET, f"{root}/binary"), id="5"),
        # Runs after "2" succeeded; sees the outer Authorization header.
        BatchRequestItem(request(Method.GET, f"{root}/echo?after=2"), id="6", depends_on=["2"]),
    ]
    for item in items:
        content.add_request(item.id, item)
    return content


EXPECTED_STATUS = {"1": 200, "2": 201, "3": 404, "4": 424, "5": 200, "6": 200}


def check_sdk_view(parsed, how):
    """Checks a BatchResponseContent the SDK produced."""
    check(parsed.get_response_status_codes() == EXPECTED_STATUS,
          f"{how}: statuses {parsed.get_response_status_codes()}")
    check(list(parsed.responses) == ["1", "2", "3", "4", "5", "6"],
          f"{how}: response order {list(parsed.responses)}")
    check(parsed.get_response_by_id("1").content_type.startswith("application/json"),
          f"{how}: content type of 1")
    binary = parsed.get_response_by_id("5")
    check(binary.content_type == "application/octet-stream", f"{how}: content type of 5")
    # The SDK base64-decodes string bodies: the server wrote the bytes in base64.
    check(bytes(binary.body) == BINARY, f"{how}: binary body {binary.body!r}")
    stream = parsed.get_response_stream_by_id("5")
    check(stream is not None and stream.read() == BINARY, f"{how}: binary stream")


async def end_to_end(base):
    register_default_serializer(JsonSerializationWriterFactory)
    register_default_deserializer(JsonParseNodeFactory)
    async with httpx.AsyncClient(headers={"Authorization": TOKEN}) as http:
        adapter = HttpxRequestAdapter(AnonymousAuthenticationProvider(), http_client=http)
        adapter.base_url = f"{base}/v1.0"
        builder = BatchRequestBuilder(adapter)
        parsed = await builder.post(build_batch(base))
    check(isinstance(parsed, BatchResponseContent), f"post returned {type(parsed)}")
    check_sdk_view(parsed, "end to end")


def by_hand(base):
    writer = JsonSerializationWriterFactory().get_serialization_writer("application/json")
    writer.write_object_value(None, build_batch(base))
    payload = writer.get_serialized_content()
    sent = json.loads(payload)
    check(sent["requests"][3]["depends_on"] == ["3"], f"SDK payload: {sent}")

    res = httpx.post(
        f"{base}/batch",
        content=payload,
        headers={"Content-Type": "application/json", "Authorization": TOKEN},
    )
    check(res.status_code == 200, f"batch status {res.status_code}: {res.text}")
    check(res.headers["content-type"] == "application/json", "batch content type")
    answer = res.json()
    responses = answer["responses"]
    check([r["id"] for r in responses] == ["1", "2", "3", "4", "5", "6"], "raw order")
    by_id = {r["id"]: r for r in responses}
    check({k: r["status"] for k, r in by_id.items()} == EXPECTED_STATUS, "raw statuses")
    check(by_id["1"]["body"] == {"name": "pony"}, f"body of 1: {by_id['1']}")
    check(by_id["2"]["body"] == {"name": "goat", "legs": 4}, f"body of 2: {by_id['2']}")
    check(by_id["3"]["body"]["error"]["code"] == 404, f"body of 3: {by_id['3']}")
    check("error" in by_id["4"]["body"], f"body of 4: {by_id['4']}")
    check(by_id["5"]["headers"].get("content-transfer-encoding") == "base64", "base64 marker")
    check(by_id["6"]["body"]["authorization"] == TOKEN, f"inherited auth: {by_id['6']}")
    check(by_id["6"]["body"]["uri"] == "/echo?after=2", f"item url: {by_id['6']}")

    root = JsonParseNodeFactory().get_root_parse_node("application/json", res.content)
    check_sdk_view(root.get_object_value(BatchResponseContent), "by hand")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: msgraph_batch.py BASE_URL")
    base = sys.argv[1].rstrip("/")
    asyncio.run(end_to_end(base))
    by_hand(base)
    print(f"msgraph interop ok ({CHECKS} checks)")


if __name__ == "__main__":
    main()
