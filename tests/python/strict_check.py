#!/usr/bin/env python3
"""Strict validation of a multipart/mixed batch *response*.

Usage:
    strict_check.py FILE [--expect-parts N] [--expect-statuses 200,404,...]

FILE (or "-" for stdin) holds the captured response: the first line is the
value of the outer Content-Type header (without "Content-Type:"), terminated
by LF or CRLF; every byte after that line is the response body, verbatim.

Checks, on the raw bytes and again with Python's ``email`` package in strict
mode (``email.policy.HTTP`` and ``email.policy.compat32``, both with
``raise_on_defect=True``):

* the Content-Type is multipart/mixed with a boundary, the body is framed by
  ``--boundary`` delimiters and a closing ``--boundary--``;
* every line ending outside the nested response bodies is CRLF (delimiters,
  part headers, nested status lines and headers, preamble and epilogue);
* every part is ``Content-Type: application/http``;
* every payload starts with ``HTTP/1.1 NNN Reason\\r\\n`` (a non-empty reason,
  which googleapiclient needs), then at least one header line (ditto), then
  an empty line;
* every nested response has a Content-Length equal to its body length
  (for 204 and 304 the body must be empty and Content-Length, if sent, 0 for
  204);
* the email package finds the same parts, Content-IDs and payload bytes.

Prints one JSON object: {"ok", "boundary", "parts", "statuses", "reasons",
"contentIds", "contentLengths"}; on a defect prints {"ok": false, "error"}
and exits 1 (2 for usage errors).

Importable: ``validate(content_type: str, body: bytes) -> dict`` raises
``StrictError``.
"""

import argparse
import email.parser
import email.policy
import json
import re
import sys

__all__ = ["StrictError", "validate", "parse_capture"]


class StrictError(Exception):
    pass


STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) ([^\r\n]+)\r\n")
HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*")


def _no_bare_line_breaks(what, data):
    """Every CR must be followed by LF and every LF preceded by CR."""
    for m in re.finditer(rb"\r(?!\n)|(?<!\r)\n", data):
        raise StrictError(
            "%s: bare %s at byte %d: %r"
            % (
                what,
                "CR" if m.group() == b"\r" else "LF",
                m.start(),
                data[max(0, m.start() - 20) : m.start() + 20],
            )
        )


def _parse_head(what, head):
    """Header lines (without the final empty line) -> list of (name, value)."""
    _no_bare_line_breaks(what, head)
    headers = []
    if not head:
        return headers
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            raise StrictError("%s: folded header line %r" % (what, line))
        m = HEADER_LINE.fullmatch(line)
        if not m:
            raise StrictError("%s: malformed header line %r" % (what, line))
        headers.append((m.group(1).decode("ascii").lower(), m.group(2)))
    return headers


def _one(headers, name, what):
    values = [v for n, v in headers if n == name]
    if len(values) > 1:
        raise StrictError("%s: %d %s headers" % (what, len(values), name))
    return values[0] if values else None


def _split_raw(boundary, body):
    """Raw multipart framing -> list of part bytes (headers + payload)."""
    dash = b"--" + boundary
    delim = b"\r\n" + dash
    if body.startswith(dash):
        preamble, rest = b"", body[len(dash) :]
    else:
        i = body.find(delim)
        if i < 0:
            raise StrictError("no opening boundary delimiter %r in body" % dash)
        preamble, rest = body[:i], body[i + len(delim) :]
        _no_bare_line_breaks("preamble", preamble + b"\r\n")
    parts = []
    while True:
        if rest.startswith(b"--"):
            epilogue = rest[2:]
            if epilogue and not epilogue.startswith(b"\r\n"):
                raise StrictError(
                    "closing delimiter not followed by CRLF: %r" % epilogue[:20]
                )
            _no_bare_line_breaks("epilogue", epilogue)
            break
        # Transport padding (LWSP) after a delimiter is allowed by RFC 2046,
        # but no real server sends it: be strict.
        if not rest.startswith(b"\r\n"):
            raise StrictError("boundary delimiter not followed by CRLF: %r" % rest[:20])
        rest = rest[2:]
        i = rest.find(delim)
        if i < 0:
            raise StrictError("part %d is not closed by a delimiter" % (len(parts) + 1))
        parts.append(rest[:i])
        rest = rest[i + len(delim) :]
    if not parts:
        raise StrictError("multipart body has no parts")
    return parts


def _check_nested(n, payload):
    what = "part %d nested response" % n
    m = STATUS_LINE.match(payload)
    if not m:
        raise StrictError(
            "%s: does not start with 'HTTP/1.1 NNN Reason\\r\\n': %r"
            % (what, payload[:60])
        )
    status = int(m.group(1))
    reason = m.group(2).decode("latin-1")
    rest = payload[m.end() :]
    if rest.startswith(b"\r\n"):
        head, body = b"", rest[2:]
    else:
        i = rest.find(b"\r\n\r\n")
        if i < 0:
            raise StrictError("%s: headers not ended by an empty CRLF line" % what)
        head, body = rest[:i], rest[i + 4 :]
    headers = _parse_head(what + " headers", head)
    if not headers:
        # googleapiclient's _deserialize_response splits the status line off
        # at its LF and then needs a CRLFCRLF in the rest: with no header
        # line at all that is missing and it raises IndexError.
        raise StrictError("%s: no header lines (googleapiclient cannot parse that)" % what)
    if _one(headers, "transfer-encoding", what) is not None:
        raise StrictError("%s: has Transfer-Encoding" % what)
    cl = _one(headers, "content-length", what)
    if cl is not None:
        if not re.fullmatch(rb"[0-9]+", cl):
            raise StrictError("%s: bad Content-Length %r" % (what, cl))
        cl = int(cl)
    if status in (204, 304) or status < 200:
        if body:
            raise StrictError("%s: status %d with a %d-byte body" % (what, status, len(body)))
        if status == 204 and cl not in (None, 0):
            raise StrictError("%s: 204 with Content-Length %d" % (what, cl))
    else:
        if cl is None:
            raise StrictError("%s: status %d without Content-Length" % (what, status))
        if cl != len(body):
            raise StrictError(
                "%s: Content-Length %d but the body has %d bytes: %r"
                % (what, cl, len(body), body[:80])
            )
    return status, reason, cl


def _email_parts(policy, ct, body):
    raw = b"Content-Type: " + ct.encode("latin-1") + b"\r\n\r\n" + body
    try:
        msg = email.parser.BytesParser(policy=policy).parsebytes(raw)
    except Exception as e:  # raise_on_defect raises the defect itself
        raise StrictError("email package (%s) found a defect: %r" % (policy, e))
    if msg.defects:
        raise StrictError("email package defects: %r" % msg.defects)
    if not msg.is_multipart():
        raise StrictError("email package does not see a multipart message")
    out = []
    for part in msg.get_payload():
        if part.defects:
            raise StrictError("email package part defects: %r" % part.defects)
        if part.is_multipart():
            raise StrictError("nested multipart part")
        out.append(
            (
                part.get_content_type(),
                part.get("Content-ID"),
                part.get_payload(decode=True),
            )
        )
    return out


def validate(content_type, body):
    """Validate one batch response; returns the summary dict."""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    content_type = content_type.strip()
    ctmsg = email.message_from_string("Content-Type: %s\n\n" % content_type)
    if ctmsg.get_content_type() != "multipart/mixed":
        raise StrictError("outer Content-Type is not multipart/mixed: %r" % content_type)
    boundary = ctmsg.get_boundary()
    if not boundary:
        raise StrictError("outer Content-Type has no boundary: %r" % content_type)
    if len(boundary) > 70 or not re.fullmatch(r"[0-9A-Za-z'()+_,./:=? -]*[0-9A-Za-z'()+_,./:=?-]", boundary):
        raise StrictError("boundary is not RFC 2046 compliant: %r" % boundary)

    raw_parts = _split_raw(boundary.encode("ascii"), body)

    statuses, reasons, cids, lengths = [], [], [], []
    payloads = []
    for n, part in enumerate(raw_parts, 1):
        if part.startswith(b"\r\n"):
            head, payload = b"", part[2:]
        else:
            i = part.find(b"\r\n\r\n")
            if i < 0:
                raise StrictError("part %d: headers not ended by an empty CRLF line" % n)
            head, payload = part[:i], part[i + 4 :]
        headers = _parse_head("part %d headers" % n, head)
        ctype = _one(headers, "content-type", "part %d" % n)
        if ctype is None or ctype.split(b";")[0].strip().lower() != b"application/http":
            raise StrictError("part %d: Content-Type is %r, not application/http" % (n, ctype))
        cid = _one(headers, "content-id", "part %d" % n)
        status, reason, cl = _check_nested(n, payload)
        statuses.append(status)
        reasons.append(reason)
        cids.append(cid.decode("latin-1") if cid is not None else None)
        lengths.append(cl)
        payloads.append(payload)

    strict_http = email.policy.HTTP.clone(raise_on_defect=True)
    strict_compat = email.policy.compat32.clone(raise_on_defect=True)
    for name, policy in (("HTTP", strict_http), ("compat32", strict_compat)):
        eparts = _email_parts(policy, content_type, body)
        if len(eparts) != len(raw_parts):
            raise StrictError(
                "email package (%s) sees %d parts, raw framing %d"
                % (name, len(eparts), len(raw_parts))
            )
        for n, (ctype, cid, payload) in enumerate(eparts, 1):
            if ctype != "application/http":
                raise StrictError("email (%s) part %d: content type %r" % (name, n, ctype))
            if (str(cid) if cid is not None else None) != cids[n - 1]:
                raise StrictError(
                    "email (%s) part %d: Content-ID %r, raw %r" % (name, n, cid, cids[n - 1])
                )
            if payload != payloads[n - 1]:
                raise StrictError(
                    "email (%s) part %d: payload differs from the raw framing" % (name, n)
                )

    return {
        "ok": True,
        "boundary": boundary,
        "parts": len(raw_parts),
        "statuses": statuses,
        "reasons": reasons,
        "contentIds": cids,
        "contentLengths": lengths,
    }


def parse_capture(data):
    """Split a capture file into (content_type, body)."""
    nl = data.find(b"\n")
    if nl < 0:
        raise StrictError("capture has no first line (Content-Type)")
    first = data[:nl]
    if first.endswith(b"\r"):
        first = first[:-1]
    return first.decode("latin-1"), data[nl + 1 :]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help='capture file, or "-" for stdin')
    ap.add_argument("--expect-parts", type=int, help="required number of parts")
    ap.add_argument(
        "--expect-statuses",
        help="required nested statuses, comma-separated, in order (e.g. 200,404)",
    )
    args = ap.parse_args(argv)
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as f:
                data = f.read()
        summary = validate(*parse_capture(data))
        if args.expect_parts is not None and summary["parts"] != args.expect_parts:
            raise StrictError(
                "expected %d parts, got %d" % (args.expect_parts, summary["parts"])
            )
        if args.expect_statuses is not None:
            want = [int(s) for s in args.expect_statuses.split(",") if s.strip()]
            if summary["statuses"] != want:
                raise StrictError("expected statuses %r, got %r" % (want, summary["statuses"]))
    except (StrictError, OSError) as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        print("strict_check: FAIL: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
