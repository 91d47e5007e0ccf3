"""The data path's middle, with no I/O: the normalised event, the label set, the counter,
the contract of an input and self-metrics as values.

May import: nothing of the exporter outside `exporter.core`. Every other layer imports it.
"""
