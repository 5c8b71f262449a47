"""A deterministic synthetic YOLO dataset: coloured shapes on noisy backgrounds.

The bundled sample under data/sample is made by this module, and benchmarks use it to make 20k+ images
(at 1920x1080 too). Each image is drawn from its own seed, so scaling a split up keeps the first images
byte-identical.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from yolopipe.errors import PipelineError

CLASS_NAMES = ("circle", "square", "triangle")
SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000}


@dataclass(frozen=True)
class SynthResult:
    root: Path
    images: dict[str, int]
    instances: int


def synthesize(root: Path, counts: dict[str, int], width: int = 256, height: int = 256, seed: int = 0,
               background_fraction: float = 0.05, quality: int = 80, jobs: int | None = None) -> SynthResult:
    """Write a YOLO dataset (images/, labels/, data.yaml) into the empty or missing directory `root`."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise PipelineError("refusing to write into a non-empty directory", path=root,
                            hint="choose a new directory; synth never overwrites data")
    if min(width, height) < 32:
        raise PipelineError(f"images of {width}x{height} are too small to draw shapes on; use at least 32x32")
    tasks = []
    for split, count in counts.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            tasks.append((root, split, index, width, height, seed + SPLIT_SEED_OFFSET[split] + index,
                          background_fraction, quality))
    jobs = jobs or os.cpu_count() or 1
    if jobs > 1 and len(tasks) > 200:
        with ProcessPoolExecutor(jobs) as pool:
            instances = sum(pool.map(_write_one, tasks, chunksize=64))
    else:
        instances = sum(map(_write_one, tasks))
    description = {
        "train": "images/train", "val": "images/val",
        **({"test": "images/test"} if counts.get("test") else {}),
        "nc": len(CLASS_NAMES), "names": dict(enumerate(CLASS_NAMES)),
    }
    header = f"# Synthetic shapes, made by `yolopipe synth` (seed {seed}, {width}x{height}).\n"
    (root / "data.yaml").write_text(header + yaml.safe_dump(description, sort_keys=False))
    return SynthResult(root, dict(counts), instances)


def _write_one(task: tuple) -> int:
    root, split, index, width, height, seed, background_fraction, quality = task
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    image = _noisy_background(rng, base, width, height)
    rows = [] if rng.random() < background_fraction else _draw_shapes(rng, image, base, width, height)
    stem = f"{split}_{index:06d}"
    image.save(root / "images" / split / f"{stem}.jpg", quality=quality)
    (root / "labels" / split / f"{stem}.txt").write_text("".join(rows))
    return len(rows)


def _noisy_background(rng: np.random.Generator, base: np.ndarray, width: int, height: int) -> Image.Image:
    ramp = np.linspace(-30, 30, width)[None, :, None] * rng.choice([-1, 1], size=3)
    noise = rng.normal(0, 10, size=(height, width, 3))
    pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _draw_shapes(rng: np.random.Generator, image: Image.Image, base: np.ndarray, width: int,
                 height: int) -> list[str]:
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    placed: list[tuple[float, float, float, float]] = []
    rows = []
    for _ in range(int(rng.integers(1, 5))):
        class_id = int(rng.integers(len(CLASS_NAMES)))
        side = float(rng.uniform(0.12, 0.45) * short)
        box = _free_box(rng, placed, side, width, height)
        if box is None:
            continue
        placed.append(box)
        x0, y0, x1, y1 = box
        # Shapes stand out from the background (at least 60 levels away in one channel), as real objects do.
        shift = rng.integers(60, 120, size=3) * rng.choice([-1, 1], size=3)
        colour = tuple(int(c) for c in np.clip(base + shift, 0, 255))
        if CLASS_NAMES[class_id] == "circle":
            draw.ellipse(box, fill=colour)
        elif CLASS_NAMES[class_id] == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
        rows.append(f"{class_id} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                    f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}\n")
    return rows


def _free_box(rng, placed, side, width, height, attempts=20):
    """A side x side box inside the image that does not overlap the boxes already placed."""
    for _ in range(attempts):
        x0 = float(rng.uniform(0, width - side))
        y0 = float(rng.uniform(0, height - side))
        box = (x0, y0, x0 + side, y0 + side)
        if all(box[2] <= p[0] or p[2] <= box[0] or box[3] <= p[1] or p[3] <= box[1] for p in placed):
            return box
    return None
