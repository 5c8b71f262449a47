"""Benchmark: `yolopipe validate` against Ultralytics' own dataset scan, on the same data, in one run.

    python bench/validate.py               # 20,000 640x480 JPEGs with labels (generated once, ~4 min)
    python bench/validate.py --images 2000 --dir /tmp/bench-2k

Ultralytics' scan is the `verify_image_label` pass YOLODataset.cache_labels runs when no labels.cache
exists: the same glob, label mapping and ThreadPool(NUM_THREADS), without writing the cache. Both runs
read from a warm page cache (the dataset was just written or read), so the figures compare CPU work.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from itertools import repeat
from multiprocessing.pool import ThreadPool
from pathlib import Path

from yolopipe.params import ValidateParams
from yolopipe.synth import synthesize
from yolopipe.ultra import load_ultralytics
from yolopipe.validate import validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="images in the dataset (80%% train)")
    parser.add_argument("--dir", type=Path, help="dataset directory; generated if missing, reused if present")
    parser.add_argument("--repeat", type=int, default=1, help="time each scan this many times, keep the best")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.gettempdir()) / f"yolopipe-bench-validate-{args.images}"
    if not (root / "data.yaml").exists():
        train = args.images * 4 // 5
        print(f"generating {args.images} 640x480 JPEGs into {root} ...", flush=True)
        started = time.perf_counter()
        synthesize(root, {"train": train, "val": args.images - train}, width=640, height=480)
        print(f"  generated in {time.perf_counter() - started:.1f} s")
    _read_all(root)  # warm the page cache for both contenders alike

    load_ultralytics(Path(tempfile.gettempdir()) / "yolopipe-bench-ultralytics")  # offline, no user settings
    from ultralytics.utils import NUM_THREADS

    theirs = min(_time(lambda: _ultralytics_scan(root, NUM_THREADS)) for _ in range(args.repeat))
    theirs_all = min(_time(lambda: _ultralytics_scan(root, os.cpu_count() or 1)) for _ in range(args.repeat))
    ours, result = min((_timed_validate(root) for _ in range(args.repeat)), key=lambda r: r[0])
    images = result.counts["images"]
    print(f"dataset: {images} images, {_megabytes(root):.0f} MB, {os.cpu_count()} CPU cores")
    print(f"yolopipe validate:            {ours:6.2f} s  {images / ours:7.0f} images/s  ({result.summary})")
    print(f"ultralytics scan ({NUM_THREADS} thread{'s' if NUM_THREADS > 1 else ''}):  "
          f"{theirs:6.2f} s  {images / theirs:7.0f} images/s  (YOLODataset's default NUM_THREADS)")
    print(f"ultralytics scan ({os.cpu_count()} threads): "
          f"{theirs_all:6.2f} s  {images / theirs_all:7.0f} images/s")
    print(f"speed-up: {theirs / ours:.2f}x against Ultralytics' scan as it runs, "
          f"{theirs_all / ours:.2f}x against it on every core")


def _timed_validate(root: Path):
    started = time.perf_counter()
    result = validate(root, ValidateParams())
    return time.perf_counter() - started, result


def _ultralytics_scan(root: Path, threads: int) -> int:
    """What YOLODataset.cache_labels does with no labels.cache present, minus writing the cache."""
    from ultralytics.data.utils import IMG_FORMATS, img2label_paths, verify_image_label

    found = 0
    for split in ("train", "val"):
        files = glob.glob(str(root / "images" / split / "**" / "*.*"), recursive=True)
        im_files = sorted(f for f in files if f.rpartition(".")[-1].lower() in IMG_FORMATS)
        label_files = img2label_paths(im_files)
        args = zip(im_files, label_files, repeat(""), repeat(False), repeat(3), repeat(0), repeat(0),
                   repeat(False), strict=False)
        with ThreadPool(threads) as pool:
            for result in pool.imap(verify_image_label, args):
                found += result[6]
    return found


def _time(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _read_all(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            path.read_bytes()


def _megabytes(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


if __name__ == "__main__":
    main()
