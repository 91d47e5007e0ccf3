"""What a PNG screenshot shows: its size, and the pixels of its first row (stdlib only)."""

from __future__ import annotations

import struct
import zlib


def png_header(png: bytes) -> tuple[int, int, int, int]:
    """Width, height, bit depth and colour type, from the IHDR chunk."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    return width, height, depth, colour


def first_row(png: bytes) -> list[tuple[int, int, int]]:
    """The RGB pixels of the image's first row, decoded (8-bit RGB or RGBA, not interlaced)."""
    width, _, depth, colour = png_header(png)
    assert depth == 8
    assert colour in {2, 6}, colour
    assert png[28] == 0, "interlaced"
    size = 3 if colour == 2 else 4
    data = bytearray()
    offset = 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        if kind == b"IDAT":
            data += png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompressobj().decompress(bytes(data), 1 + width * size)
    kind, row = raw[0], bytearray(raw[1 : 1 + width * size])
    # The row above the first is zeros, so Up is None, and Paeth predicts from the left as Sub.
    for i in range(len(row)):
        left = row[i - size] if i >= size else 0
        if kind in {1, 4}:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + left // 2) & 0xFF
        else:
            assert kind in {0, 2}, f"filter type {kind}"
    return [(row[i], row[i + 1], row[i + 2]) for i in range(0, len(row), size)]
