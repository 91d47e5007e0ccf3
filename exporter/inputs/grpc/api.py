"""The wire paths of Falco's gRPC API (docs/falco-wire-contract.md), for client and simulator.

Message names never travel, so both sides use raw bytes with these paths and decode
themselves: the client can then skip one undecodable message without losing the stream.
"""

SUB_PATH = "/falco.outputs.service/sub"
GET_PATH = "/falco.outputs.service/get"
VERSION_PATH = "/falco.version.service/version"

OUTPUTS_SERVICE = "falco.outputs.service"
VERSION_SERVICE = "falco.version.service"

# An empty `request` message serialises to zero bytes.
EMPTY_REQUEST = b""
