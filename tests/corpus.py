"""Builders for tiny real YOLO datasets (a few KB) that the validate tests then break one way at a time."""

from __future__ import annotations

import hashlib
import io
import random
from itertools import count
from pathlib import Path

import yaml
from PIL import Image

BOX = "0 0.5 0.5 0.25 0.25\n"
_colours = count(1)


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (32, 24), mode: str = "RGB",
                orientation: int | None = None, noise: bool = False) -> bytes:
    """A small image of a colour no other call returns, so every image has its own content hash."""
    n = next(_colours)
    colour = (n * 37 % 256, n * 91 % 256, n * 53 % 256) if mode == "RGB" else n * 37 % 256
    image = Image.new(mode, size, colour)
    if noise:  # incompressible pixels, so the image data spans many bytes
        image = Image.frombytes(mode, size, random.Random(n).randbytes(len(image.tobytes())))
    buffer = io.BytesIO()
    if orientation is not None:
        exif = Image.Exif()
        exif[274] = orientation
        image.save(buffer, fmt, exif=exif)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def build(root: Path, splits: dict[str, dict[str, str | None]] | None = None,
          names: list[str] | dict[int, str] | None = None, **description) -> Path:
    """A dataset of JPEGs: split -> {image file name: label text, or None for no label file}."""
    splits = splits if splits is not None else {
        "train": {"a.jpg": BOX, "b.jpg": "1 0.3 0.3 0.2 0.1\n", "c.jpg": None},
        "val": {"d.jpg": BOX, "e.jpg": "1 0.6 0.6 0.2 0.2\n"},
    }
    for split, images in splits.items():
        for name, label in images.items():
            write(root / "images" / split / name, image_bytes())
            if label is not None:
                write(root / "labels" / split / (name.rsplit(".", 1)[0] + ".txt"), label.encode())
    data = {"train": "images/train", "val": "images/val", "names": names or ["cat", "dog"], **description}
    write(root / "data.yaml", yaml.safe_dump(data, sort_keys=False).encode())
    return root


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def tree_digest(root: Path) -> str:
    """One hash over every file's path, bytes and mtime: proves a directory was left untouched."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()
