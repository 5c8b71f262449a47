"""Optional pre-resize for `stage.max_side`: images whose long side is at most N, with EXIF orientation
applied, written with fixed encoder settings so the same input and params give the same bytes.

Labels are normalised to the image size, so they are staged unchanged.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from yolopipe.stage.placement import Job, create, is_image, mark_complete, place

JPEG_QUALITY = 95  # high enough that training sees what the full-size image shows at that size
_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "TIFF"}  # re-encoded; anything else is staged as it is


def place_resized(job: Job, max_side: int) -> bool:
    """Stage one file: an image larger than max_side (or EXIF-rotated) resized, anything else as `place` does."""
    src, dst, mtime_ns = job.source, job.target, job.mtime_ns
    if not is_image(dst):  # the staged name: a packed member is read from a temporary file
        return place(job)
    with Image.open(src) as image:
        orientation = image.getexif().get(0x0112, 1)
        if image.format not in _FORMATS or (max(image.size) <= max_side and orientation == 1):
            return place(job)
        fmt = image.format
        scale = max_side / max(image.size)
        if scale < 1 and fmt == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale where that still leaves >= max_side: much faster, deterministic.
            image.draft(image.mode, (int(image.width * scale) + 1, int(image.height * scale) + 1))
        picture = ImageOps.exif_transpose(image)
        if max(picture.size) > max_side:
            scale = max_side / max(picture.size)
            size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
            picture = picture.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
        with open(create(dst), "wb") as out:
            picture.save(out, format=fmt, **options)  # no EXIF: the orientation is applied
            out.flush()
            mark_complete(out.fileno(), mtime_ns)  # the source's mtime only once every byte is written
    return False
