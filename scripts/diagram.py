#!/usr/bin/env python3
"""Writes docs/guide/data-flow.svg: a batch's way through the proxy, tower-http's layers outside
the batch layer, the batch layer's stages, and the app's own layers that every item goes through.

Run from anywhere: python3 scripts/diagram.py. The SVG is written by hand (no dependencies) and
has no blank lines, so that rustdoc can inline it into the guide's HTML.
"""
from pathlib import Path
from xml.sax.saxutils import escape

W = 800
OUT = Path(__file__).resolve().parent.parent / "docs" / "guide" / "data-flow.svg"

parts = []


def box(x, y, w, h, title, lines=(), fill="#f5f7fa", stroke="#5b6b7f", bold=False):
    parts.append(
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="1.5"/>'
    )
    weight = ' font-weight="bold"' if bold else ""
    parts.append(f'<text x="{x + 10}" y="{y + 19}" font-size="14"{weight}>{escape(title)}</text>')
    for i, line in enumerate(lines):
        parts.append(
            f'<text x="{x + 10}" y="{y + 38 + 16 * i}" font-size="12" fill="#333">{escape(line)}</text>'
        )


def arrow(x1, y1, x2, y2, label=None, dashed=False):
    dash = ' stroke-dasharray="5,4"' if dashed else ""
    parts.append(
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#333" stroke-width="1.5"'
        f'{dash} marker-end="url(#head)"/>'
    )
    if label:
        parts.append(
            f'<text x="{(x1 + x2) / 2 + 6}" y="{(y1 + y2) / 2 + 4}" font-size="12" '
            f'fill="#333">{escape(label)}</text>'
        )


# The request's way down, left column; answers go back up the same way.
box(20, 10, 460, 40, "client: one POST /batch, many calls inside")
arrow(250, 50, 250, 70)
box(20, 70, 460, 58, "proxy / load balancer (nginx, ALB, Cloud Load Balancing)",
    ["read timeout above batch_timeout; body limit above max_body_bytes"])
arrow(250, 128, 250, 148)
box(20, 148, 460, 110, "tower-http layers OUTSIDE the batch layer", [
    "TraceLayer: one span for the batch",
    "CorsLayer: preflight answered here, headers on the one answer",
    "CompressionLayer: compresses the whole batch answer",
    "RequestBodyLimitLayer, RequestDecompressionLayer",
], fill="#eef5ff", stroke="#3b6db3")
arrow(250, 258, 250, 278)
box(20, 278, 460, 210, "BatchLayer (Batch<S>)", [
    "not a batch (path, method)?  pass through, untouched",
    "read the body (read_timeout, max_body_bytes)",
    "format::decode: multipart/mixed or JSON $batch -> items",
    "check: every limit once, ids, dependencies",
    "inherit: outer headers, query, extensions -> each item",
    "plan: change sets, paths resolved under the service root",
    "schedule: concurrency, held-bytes budget, deadlines",
    "format::encode: answers streamed in request order",
    "(the route's dialect: Google, OData 2/3/4, Azure, ...)",
], fill="#fff6e5", stroke="#b37a1b", bold=True)
arrow(480, 400, 540, 400, None)
parts.append('<text x="486" y="392" font-size="12" fill="#333">item 1..n</text>')
box(540, 278, 240, 210, "your app, once per item", [
    "the same tower service a",
    "direct call reaches:",
    "router, auth middleware,",
    "rate limits, TimeoutLayer,",
    "handlers (a clone of the",
    "service, after poll_ready)",
    "",
    "change sets: one transaction",
    "(TransactionProvider, sqlx)",
], fill="#eefaf0", stroke="#2f8f46")
arrow(540, 460, 480, 460, None, dashed=True)
parts.append('<text x="486" y="478" font-size="12" fill="#333">answers</text>')
arrow(250, 488, 250, 508, None, dashed=True)
box(20, 508, 460, 40, "one answer: each item's status, headers and body, in order")

H = 560
svg = (
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
    'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" role="img" '
    'aria-label="A batch request through the proxy, tower-http layers, the batch layer and the app">\n'
    '<title>A batch\'s way: proxy, tower-http layers outside, BatchLayer, the app per item</title>\n'
    '<defs><marker id="head" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
    '<path d="M0,0 L10,4 L0,8 z" fill="#333"/></marker></defs>\n'
    f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>\n'
    + "\n".join(parts)
    + "\n</svg>\n"
)
OUT.write_text(svg)
print(f"wrote {OUT}")
