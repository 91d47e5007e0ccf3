"""A simulated Falco: the gRPC outputs server the tests and the demo run against, its
http_output, the `demo` and `certs` commands. Tooling, not the daemon.

May import: anything of the exporter (the demo runs one).
"""
