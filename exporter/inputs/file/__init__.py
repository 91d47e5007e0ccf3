"""The file input: Falco's file_output, followed durably (docs/file-input.md).

May import: `exporter.inputs.falco_json` (the JSON line parser every JSON input shares), and
the layers below the inputs; never another input.
"""
