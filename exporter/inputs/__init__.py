"""The inputs: each subpackage is one way Falco's alerts reach the exporter, and keeps the
contract of `exporter.core.inputs.Input`. `assemble` builds the list from the configuration.

An input may import `exporter.core`, `exporter.settings`, `exporter.runtime`,
`exporter.exposition` and `exporter.http`; never another input, the serving layer or the
application.
"""
