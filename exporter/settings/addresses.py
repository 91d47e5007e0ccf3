"""Host and port text, both ways: what the flags take and what targets are named.

Kept apart from the configuration so that the network modules need only this.
"""

from __future__ import annotations


def join_host_port(host: str, port: int) -> str:
    """ "falco:5060", or "[fd00::1]:5060" for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(text: str) -> tuple[str, int | None]:
    """("falco", 5060) from "falco:5060" or "[fd00::1]:5060"; the port None when absent."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"{text!r} has no host name")
    return host, (parse_port(port_text) if port_text else None)


def split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """Host and port; without a port in the text, `default_port`, or an error if None."""
    host, port = parse_host_port(text)
    if port is not None:
        return host, port
    if default_port is None:
        raise ValueError(f"{text!r} needs a port (host:port)")
    return host, default_port


def parse_port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"{number} is not a port (1-65535)")
    return number


def parse_listen_address(text: str) -> tuple[str | None, int]:
    """Host and port of ":9376", "0.0.0.0:9376", "[::1]:9376"; host None means every interface."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not host:port (example: :9376)")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r} has no port number (example: :9376)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port (0-65535)")
    host = host.strip("[]")
    return (host or None), port
