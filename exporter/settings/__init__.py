"""What the user configured: every setting declared once (schema), loaded from flags, the
environment and a YAML file (load), checked (checks), and grouped into the immutable tree
the exporter reads (config). Also the parsers of values and the certificate-file rules.

May import: `exporter.core` (the label vocabulary) and itself.
"""
