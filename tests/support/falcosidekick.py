"""What falcosidekick's `webhook` output posts for an alert Falco posted to it: the body and
the headers, made the way sidekick makes them, to build tests/data/falcosidekick/ from the
real Falco 0.44.1 requests and to hold those files to the rules below.

Sidekick (github.com/falcosecurity/falcosidekick; tests/data/falcosidekick/README.md names
the files and commits read) decodes Falco's JSON into its FalcoPayload (numbers kept as
their literal text: `json.Decoder.UseNumber`), reworks it (`newFalcoPayload`), and posts it
re-encoded by Go's `json.Encoder`. What changes on the way:

- a random `uuid` is added, first;
- `priority` is parsed case-insensitively and written back in Falco's capitalisation;
- `source` "" becomes "syscalls", and is "internal" for sidekick's own "Test rule";
- `tags` are sorted, and left out when empty; `hostname` is left out when empty;
- `time` is written as Go writes a time (RFC 3339 with the fraction's trailing zeros cut,
  no fraction at all on a whole second);
- `config.customfields` are added to `output_fields`, whose keys Go writes sorted;
- a payload over 4096 bytes has each string field over 512 characters cut to 507 and
  "[...]", in `output` too;
- Go escapes <, > and & (and U+2028, U+2029) as \\u003c, \\u003e, \\u0026, and ends the
  body with a newline;
- fields of Falco's that FalcoPayload has not are dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# What sidekick's HTTP client sends besides the body (outputs/client.go: the content type
# and user agent it sets; Go's transport adds Accept-Encoding), as curl -H arguments; "Accept:"
# removes the header curl would add, which Go does not send.
HEADERS = (
    "Content-Type: application/json; charset=utf-8",
    "User-Agent: Falcosidekick",
    "Accept-Encoding: gzip",
    "Accept:",
)
PRIORITIES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational",
              "Debug")  # fmt: skip
TEST_RULE = "Test rule"
MAX_PAYLOAD = 4096
MAX_FIELD = 512


class GoNumber(str):
    """A JSON number kept as its literal text, as json.Number keeps it."""

    __slots__ = ()


def decode(body: bytes) -> dict[str, Any]:
    """Falco's JSON with every number kept as written."""
    document: dict[str, Any] = json.loads(body, parse_int=GoNumber, parse_float=GoNumber)
    return document


def go_time(text: str) -> str:
    """Falco's RFC 3339 time as Go's time.Time marshals it (UTC)."""
    moment, _, fraction = text.rstrip("Z").partition(".")
    dt.datetime.fromisoformat(moment)  # a valid time, or ValueError as Go would refuse it
    fraction = fraction.rstrip("0")
    return f"{moment}.{fraction}Z" if fraction else f"{moment}Z"


def priority(text: str) -> str:
    """Sidekick's priority: Falco's name in any case, written back capitalised."""
    for name in PRIORITIES:
        if text.lower() == name.lower():
            return name
    raise ValueError(f"sidekick refuses priority {text!r}: its Check() wants a known one")


def forwarded(
    falco: Mapping[str, Any], *, customfields: Mapping[str, str] | None = None, uuid_of: bytes
) -> dict[str, Any]:
    """The FalcoPayload sidekick makes of Falco's decoded alert, in its field order. The
    uuid, random in sidekick, is drawn here from `uuid_of`, so the files are reproducible."""
    fields = dict(falco.get("output_fields") or {})
    fields.update(customfields or {})
    rule = falco["rule"]
    source = "internal" if rule == TEST_RULE else (falco.get("source") or "syscalls")
    payload: dict[str, Any] = {
        "uuid": str(uuid.UUID(bytes=hashlib.sha256(uuid_of).digest()[:16], version=4)),
        "output": falco.get("output", ""),
        "priority": priority(falco["priority"]),
        "rule": rule,
        "time": go_time(falco["time"]),
        "output_fields": {key: fields[key] for key in sorted(fields)},
        "source": source,
    }
    if falco.get("tags"):
        payload["tags"] = sorted(falco["tags"])
    if falco.get("hostname"):
        payload["hostname"] = falco["hostname"]
    if not payload["output_fields"]:
        raise ValueError("sidekick refuses an alert without output fields (its Check())")
    if len(encode(payload)) - 1 > MAX_PAYLOAD:
        for key, value in payload["output_fields"].items():
            if type(value) is str and len(value) > MAX_FIELD:
                cut = value[: MAX_FIELD - 5] + "[...]"
                payload["output"] = payload["output"].replace(value, cut)
                payload["output_fields"][key] = cut
    return payload


def _go_string(text: str) -> str:
    """A JSON string as Go's encoder writes it (HTML-safe)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\n\r\t\b\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}[char])
        elif code < 0x20 or char in "<>&\u2028\u2029":
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _go_value(value: object) -> str:
    if isinstance(value, GoNumber):
        return str(value)
    if isinstance(value, str):
        return _go_string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_go_value(item) for item in value) + "]"
    if isinstance(value, dict):  # a map: Go sorts its keys; a struct's order is kept above
        return "{" + ",".join(f"{_go_string(k)}:{_go_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no JSON for {value!r}")


def encode(payload: Mapping[str, Any]) -> bytes:
    """The body Go's json.Encoder writes for the payload, its newline included."""
    return (_go_value(dict(payload)) + "\n").encode("utf-8")


# tests/data/falcosidekick/, made from tests/data/falco-0.44.1/ (README.md there says which).
CAPTURES = ("replay-json", "nodriver-json")
# Falco on a Kubernetes node adds these to a container's alert (the container plugin's
# suggested fields); the captures come from a machine without pods.
ON_KUBERNETES = {"k8s.ns.name": "shop", "k8s.pod.name": "checkout-7d4b9c6f5-x2v9q"}
CUSTOMFIELDS = {"environment": "production"}
# What sidekick's /test endpoint feeds its own pipeline, at a fixed time.
TEST_ENDPOINT = (
    b'{"output":"This is a test from falcosidekick","priority":"Debug","hostname": '
    b'"falcosidekick", "rule":"Test rule", "time":"2026-12-01T19:54:30Z","output_fields": '
    b'{"proc.name":"falcosidekick","user.name":"falcosidekick"}, "tags":["test","example"]}'
)


def falco_body(request: bytes) -> bytes:
    """The body of a whole captured request."""
    return request.partition(b"\r\n\r\n")[2]


def dataset(captures: Path) -> dict[str, bytes]:
    """Every file of tests/data/falcosidekick/ but its README, by relative path: each capture
    as sidekick forwards it; the rule alerts again as from a Kubernetes node, with a custom
    field; and sidekick's own test alert."""
    files: dict[str, bytes] = {}
    for kind in CAPTURES:
        for path in sorted((captures / kind).glob("req-*.http")):
            body = falco_body(path.read_bytes())
            name = f"{kind}/{path.stem}.json"
            files[name] = encode(forwarded(decode(body), uuid_of=name.encode()))
            if kind == "replay-json":
                alert = decode(body)
                alert["output_fields"] = {**alert["output_fields"], **ON_KUBERNETES}
                name = f"kubernetes/{path.stem}.json"
                payload = forwarded(alert, customfields=CUSTOMFIELDS, uuid_of=name.encode())
                files[name] = encode(payload)
    files["test-endpoint.json"] = encode(forwarded(decode(TEST_ENDPOINT), uuid_of=b"test"))
    return files


def main() -> None:
    """Write tests/data/falcosidekick/ (python -m tests.support.falcosidekick)."""
    root = Path(__file__).resolve().parent.parent
    out = root / "data" / "falcosidekick"
    for name, content in dataset(root / "data" / "falco-0.44.1").items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(content)


if __name__ == "__main__":
    main()
