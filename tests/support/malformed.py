"""The HTTP input's malformed requests, each with the status and the counted reason it gets.

Shared by the hardening tests (one exporter each) and the process test (whose log must stay
JSON and stderr silent through all of them). A reason `a+b` counts once as each.
"""

from __future__ import annotations

import gzip
import json

from tests.support import EVENT, EVENT_BODY
from tests.support.raw_http import post_request

DEEP = b"[" * 1_000_000
DEEP_FIELDS = (
    json.dumps({**EVENT, "output_fields": {}})
    .encode()
    .replace(
        b'"output_fields": {}', b'"output_fields": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    )
)
MALFORMED: list[tuple[str, bytes, int, str]] = [
    ("1 MB of [[[[", post_request(DEEP), 400, "not_json"),
    ("deep nesting in output_fields", post_request(DEEP_FIELDS), 400, "not_json"),
    (
        "gzip declared, not gzip",
        post_request(EVENT_BODY, headers={"Content-Encoding": "gzip"}),
        400,
        "bad_encoding",
    ),
    (
        "truncated gzip",
        post_request(gzip.compress(EVENT_BODY)[:-8], headers={"Content-Encoding": "gzip"}),
        400,
        "bad_encoding",
    ),
    (
        "brotli",
        post_request(EVENT_BODY, headers={"Content-Encoding": "br"}),
        415,
        "unsupported_encoding",
    ),
    ("wrong path", post_request(EVENT_BODY, path="/api/v1/alerts"), 404, "path"),
    ("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method"),
    (
        "declared length shorter than the body",
        post_request(EVENT_BODY, headers={"Content-Length": "10"}),
        400,
        "not_json+malformed_request",  # the rest of the body is read as the next request
    ),
    (
        "garbage",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
        400,
        "malformed_request",
    ),
    (
        "two lengths",
        post_request(
            EVENT_BODY, headers={"Content-Length": f"{len(EVENT_BODY)}\r\nContent-Length: 3"}
        ),
        400,
        "malformed_request",
    ),
    (
        "declared body over the limit",
        post_request(b"{}", headers={"Content-Length": "99999999"}),
        413,
        "too_large",
    ),
    (
        "gzip bomb",
        post_request(gzip.compress(b" " * 5_000_000), headers={"Content-Encoding": "gzip"}),
        413,
        "too_large",
    ),
]
