#!/usr/bin/env python3
"""Reads a multipart/mixed batch answer of any dialect with Python's `email` package in strict
mode (change sets included) and prints what it found as JSON.

Input on stdin: the value of the outer Content-Type header on the first line, then the body.
Output: {"boundary", "parts": [...], "statuses", "contentIds"}; each part is either
{"status", "contentId"} or {"changeSet": boundary, "parts": [...]}. Exits 1 on a defect.
"""

import email.parser
import email.policy
import json
import re
import sys

STATUS = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) ([^\r\n]+)\r\n")


def read_part(part):
    ctype = part.get_content_type()
    if ctype == "multipart/mixed":
        inner = [read_part(p) for p in part.get_payload()]
        return {"changeSet": part.get_boundary(), "parts": inner}
    if ctype != "application/http":
        raise ValueError("part type %r" % ctype)
    payload = part.get_payload(decode=True)
    m = STATUS.match(payload)
    if not m:
        raise ValueError("no status line in %r" % payload[:80])
    head_end = payload.index(b"\r\n\r\n")
    body = payload[head_end + 4 :]
    length = re.search(rb"\r\n[Cc]ontent-[Ll]ength: *([0-9]+)", payload[: head_end + 2])
    if not length or int(length.group(1)) != len(body):
        raise ValueError("Content-Length does not match the nested body")
    return {"status": int(m.group(1)), "contentId": part.get("Content-ID")}


def main():
    data = sys.stdin.buffer.read()
    first, _, body = data.partition(b"\n")
    ctype = first.rstrip(b"\r").decode()
    if re.search(rb"(?<!\r)\n", body):
        raise ValueError("bare LF in the answer")
    raw = b"Content-Type: " + ctype.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    policy = email.policy.HTTP.clone(raise_on_defect=True)
    msg = email.parser.BytesParser(policy=policy).parsebytes(raw)
    if not msg.is_multipart():
        raise ValueError("not multipart")
    parts = [read_part(p) for p in msg.get_payload()]
    print(
        json.dumps(
            {
                "boundary": msg.get_boundary(),
                "parts": parts,
                "statuses": [p.get("status") for p in parts],
                "contentIds": [p.get("contentId") for p in parts],
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"ok": False, "error": str(e)}))
        sys.exit(1)
