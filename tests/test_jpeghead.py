"""The fast JPEG header reader agrees with Pillow, and hands anything unusual back to it."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from corpus import image_bytes
from yolopipe.validate.jpeghead import jpeg_header


def pillow_header(data: bytes) -> tuple[int, int, int | None]:
    with Image.open(io.BytesIO(data)) as image:
        return *image.size, image.getexif().get(274)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("orientation", [None, 1, 6, 8])
def test_agrees_with_pillow(mode, progressive, orientation):
    image = Image.new(mode, (37, 23))
    buffer = io.BytesIO()
    extra = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[271], exif[274] = "camera", orientation
        extra["exif"] = exif
    image.save(buffer, "JPEG", progressive=progressive, **extra)
    assert jpeg_header(buffer.getvalue()) == pillow_header(buffer.getvalue())


def test_big_endian_exif():
    ifd = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    ifd += struct.pack(">HHI", 0x0112, 3, 1) + struct.pack(">HH", 6, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + ifd
    plain = image_bytes(size=(30, 20))
    data = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + plain[2:]
    assert jpeg_header(data) == pillow_header(data) == (30, 20, 6)


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x10JFIF",
                                  b"\xff\xd8\xff\xda"])
def test_unusual_input_goes_to_pillow(data):
    assert jpeg_header(data) is None
