"""A JPEG header reader for the common case: size and EXIF orientation from the marker segments.

Pillow's JpegImagePlugin parses every table of the header in Python, which was half the cost of
validating an image. This walks the segment lengths to the frame header (SOFn) and reads IFD0 of an
Exif APP1 segment. Anything it does not fully understand returns None, and the caller asks Pillow.
"""

from __future__ import annotations

import struct

SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
ORIENTATION_TAG = 0x0112


def jpeg_header(head: bytes) -> tuple[int, int, int | None] | None:
    """(width, height, EXIF orientation or None) from the first bytes of a JPEG, or None to ask Pillow."""
    if head[:3] != b"\xff\xd8\xff":
        return None
    orientation = None
    position = 2
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        length = int.from_bytes(head[position + 2:position + 4], "big")
        segment = head[position + 4:position + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(segment[6:])
            if orientation is False:
                return None
        elif marker in SOF_MARKERS:
            if len(segment) < 6:
                return None
            height, width = struct.unpack(">HH", segment[1:5])
            return (width, height, orientation) if width and height else None
        elif marker in (0xDA, 0xD9) or 0xD0 <= marker <= 0xD8:  # scan data or a stray marker before SOF
            return None
        position += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None | bool:
    """Tag 274 of IFD0; None when absent, False when the block is malformed."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return False
    offset = struct.unpack(order + "I", tiff[4:8])[0]
    if offset + 2 > len(tiff):
        return False
    count = struct.unpack(order + "H", tiff[offset:offset + 2])[0]
    entries = tiff[offset + 2:offset + 2 + 12 * count]
    if len(entries) != 12 * count:
        return False
    for index in range(0, len(entries), 12):
        tag, kind = struct.unpack(order + "HH", entries[index:index + 4])
        if tag == ORIENTATION_TAG:
            return struct.unpack(order + "H", entries[index + 8:index + 10])[0] if kind == 3 else False
    return None
