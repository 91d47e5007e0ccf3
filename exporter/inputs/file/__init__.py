"""The file input: Falco's file_output, followed durably (docs/file-input.md).

May import: `exporter.inputs.http` for the JSON line parser it shares with the HTTP input,
and the layers below the inputs.
"""
