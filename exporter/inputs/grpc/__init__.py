"""The gRPC input: Falco 0.24 to 0.43 over its outputs API, through a unix socket or TCP
with mutual TLS, one reader thread per target (docs/falco-wire-contract.md#grpc-outputs-api).

grpc and protobuf are imported only by the modules that read the wire (connection,
messages, status_hints), and those only with the first subscription.

May import: `exporter.core`, `exporter.settings`, `exporter.runtime`, `exporter.exposition`,
`exporter.http` (as every input may; it needs neither), `exporter.falcopb` and itself;
never another input.
"""
