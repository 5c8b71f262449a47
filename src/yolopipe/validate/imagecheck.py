"""Per-image checks: the file opens, its header decodes, it is complete, and it is big enough.

Only the header and the last bytes are read (unless a content hash or a full decode is wanted): that is
what makes validating 50 GB take minutes instead of an hour, and it catches what Ultralytics rejects.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from yolopipe.validate.jpeghead import jpeg_header

# PIL format names Ultralytics accepts (its IMG_FORMATS plus "jpeg2000", see check_image).
READABLE_FORMATS = frozenset({"avif", "bmp", "dng", "heic", "heif", "jpeg", "jpeg2000", "mpo", "png", "tiff",
                              "webp"})
MIN_SIDE = 10
HEAD_BYTES = 65536  # Exif APP1 is at most 64 KiB, so the frame header is almost always in here
JPEG_END = b"\xff\xd9"
PNG_END = b"IEND\xaeB`\x82"
EXIF_ORIENTATION = 274
TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height


@dataclass(frozen=True)
class ImageCheck:
    width: int
    height: int
    """Sizes as displayed, i.e. after the EXIF orientation is applied (0 when unreadable)."""
    digest: str | None
    """Content hash, prefixed with its algorithm ("md5:...", "sha1:..."), or None when not hashed."""
    problems: tuple[tuple[str, str], ...]
    """(finding code, message) pairs."""


def check_image(path: str, hash_name: str | None, full_decode: bool = False) -> ImageCheck:
    """Check one image; hash its bytes with `hash_name` (a hashlib name) unless it is None."""
    digest = None
    try:
        with open(path, "rb") as file:
            if hash_name or full_decode:
                data = file.read()
                if hash_name:
                    digest = f"{hash_name}:{hashlib.new(hash_name, data, usedforsecurity=False).hexdigest()}"
                size, head, tail = len(data), data, data[-8:]
            else:
                size = os.fstat(file.fileno()).st_size
                head = file.read(HEAD_BYTES)
                if size > len(head):
                    file.seek(-8, os.SEEK_END)
                tail = file.read()[-8:] if size > len(head) else head[-8:]
            if size == 0:
                return ImageCheck(0, 0, digest, (("image.empty", "the file is empty (0 bytes)"),))
            header = None if full_decode else jpeg_header(head)
            if header is None:
                stream = io.BytesIO(data) if hash_name or full_decode else file
                stream.seek(0)
                return _check_with_pillow(stream, tail, digest, full_decode)
    except FileNotFoundError:
        return ImageCheck(0, 0, None, (("image.missing", "the image does not exist"),))
    except OSError as exc:
        return ImageCheck(0, 0, digest, (("image.corrupt", f"cannot read the file: {exc.strerror or exc}"),))
    width, height, orientation = header
    if orientation in TRANSPOSED:
        width, height = height, width
    return ImageCheck(width, height, digest, tuple(_problems("jpeg", width, height, tail)))


def _check_with_pillow(stream, tail: bytes, digest: str | None, full_decode: bool) -> ImageCheck:
    problems = []
    try:
        with Image.open(stream) as image:
            fmt = (image.format or "").lower()
            width, height = image.size
            if _orientation(image, fmt) in TRANSPOSED:
                width, height = height, width
            if full_decode:
                problems.extend(_decode(image))
    except UnidentifiedImageError:
        return ImageCheck(0, 0, digest, (("image.corrupt", "not an image format Pillow recognises"),))
    except Exception as exc:  # Pillow raises many types for broken headers and data
        return ImageCheck(0, 0, digest, (("image.corrupt", f"does not decode: {exc}"),))
    return ImageCheck(width, height, digest, tuple(problems + _problems(fmt, width, height, tail)))


def _problems(fmt: str, width: int, height: int, tail: bytes) -> list[tuple[str, str]]:
    problems = []
    if fmt not in READABLE_FORMATS:
        problems.append(("image.unsupported_format", f"{fmt.upper() or 'unknown'} content is not an image "
                                                     "format Ultralytics reads"))
    if fmt in {"jpeg", "mpo"} and not tail.endswith(JPEG_END):
        problems.append(("image.truncated", "the JPEG has no end marker (FFD9): the file is cut short"))
    elif fmt == "png" and not tail.endswith(PNG_END):
        problems.append(("image.truncated", "the PNG has no IEND chunk: the file is cut short"))
    if min(width, height) < MIN_SIDE:
        problems.append(("image.too_small", f"{width}x{height} is under {MIN_SIDE} px on a side"))
    return problems


def _orientation(image: Image.Image, fmt: str) -> int | None:
    if fmt == "png":
        # PngImageFile.getexif() decodes the whole image to reach a late eXIf chunk; read the early one only.
        exif = Image.Exif()
        if "exif" in image.info:
            exif.load(image.info["exif"])
        return exif.get(EXIF_ORIENTATION)
    return image.getexif().get(EXIF_ORIENTATION)


def _decode(image: Image.Image) -> list[tuple[str, str]]:
    try:
        image.load()
    except Exception as exc:  # a broken entropy-coded segment surfaces as OSError, SyntaxError, ...
        return [("image.corrupt", f"the pixel data does not decode: {exc}")]
    return []
