"""Benchmark: `yolopipe stage` against `cp -r` and `rsync -a`, and what pre-resizing buys the data loader.

    python bench/stage.py                      # 20,000 640x480 JPEGs (reused from bench/validate.py if there)
    python bench/stage.py --images 2000 --loader-images 200 --dir /tmp/bench-2k

In one run, on the same disk as the dataset: yolopipe's plain copy, `cp -r` and `rsync -a` (each into an
empty directory, after `sync`, from a warm page cache); the no-op restage of an intact copy; the linked
stage of a read-only source (as DVC leaves a dataset linked from its cache) against `cp -al`; the
pre-resize (stage.max_side). Then Ultralytics' training data loader (no model) on 1920x1080 images at
imgsz 640, from the full-size copy and from a copy pre-resized to 640.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from yolopipe.params import StageParams
from yolopipe.stage import stage
from yolopipe.synth import synthesize
from yolopipe.ultra import load_ultralytics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="640x480 JPEGs in the copy benchmark")
    parser.add_argument("--dir", type=Path, help="dataset directory; generated if missing, reused if present")
    parser.add_argument("--loader-images", type=int, default=800, help="1920x1080 JPEGs for the loader")
    parser.add_argument("--max-side", type=int, default=320, help="pre-resize of the copy benchmark")
    parser.add_argument("--skip-loader", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.gettempdir())
    source = args.dir or tmp / f"yolopipe-bench-validate-{args.images}"
    if not (source / "data.yaml").exists():
        print(f"generating {args.images} 640x480 JPEGs into {source} ...", flush=True)
        train = args.images * 4 // 5
        synthesize(source, {"train": train, "val": args.images - train}, width=640, height=480)
    work = source.parent / f"{source.name}-stage-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    files, size = _count(source)
    _read_all(source)
    print(f"dataset: {files} files, {size / 1e6:.0f} MB, {os.cpu_count()} CPU cores, target {work}")

    rows = {}
    rows["cp -r"] = _time(lambda: _sh("cp", "-r", source, work / "cp"))
    if shutil.which("rsync"):
        rows["rsync -a"] = _time(lambda: _sh("rsync", "-a", f"{source}/", work / "rsync"))
    else:
        print("rsync is not installed here: its row is left out")
    rows["yolopipe plain copy"] = _time(lambda: stage(source, work / "plain", StageParams(link=False)))
    rows["yolopipe no-op restage"] = _time(lambda: stage(source, work / "plain", StageParams(link=False)))
    # A read-only source, as DVC's cache links are: what yolopipe hard-links.
    _sh("chmod", "-R", "a-w", work / "cp")
    ro_source = work / "cp"
    rows["cp -al"] = _time(lambda: _sh("cp", "-al", ro_source, work / "cpal"))
    rows["yolopipe linked stage"] = _time(lambda: stage(ro_source, work / "linked"))
    rows[f"yolopipe pre-resize to {args.max_side}"] = _time(
        lambda: stage(source, work / "resized", StageParams(link=False, max_side=args.max_side)))
    print(f"\n{'':28s} {'seconds':>8s} {'files/s':>9s} {'MB/s':>8s}  vs cp -r")
    for name, seconds in rows.items():
        print(f"{name:28s} {seconds:8.2f} {files / seconds:9.0f} {size / 1e6 / seconds:8.0f}  "
              f"{rows['cp -r'] / seconds:5.2f}x")
    print(f"no-op restage: {rows['yolopipe no-op restage'] / files * 1e4:.2f} s per 10k files (target <= 2)")
    _, resized = _count(work / "resized")
    print(f"pre-resized copy: {resized / 1e6:.0f} MB ({resized / size:.0%} of the source)")
    _sh("chmod", "-R", "u+w", work)
    shutil.rmtree(work)
    if not args.skip_loader:
        _loader(source.parent / f"yolopipe-bench-stage-1080p-{args.loader_images}", args.loader_images)


def _loader(root: Path, images: int) -> None:
    if not (root / "data.yaml").exists():
        print(f"\ngenerating {images} 1920x1080 JPEGs into {root} ...", flush=True)
        synthesize(root, {"train": images, "val": max(1, images // 10)}, width=1920, height=1080)
    work = root.parent / f"{root.name}-staged"
    shutil.rmtree(work, ignore_errors=True)
    full = stage(root, work / "full", StageParams(link=False))
    small = stage(root, work / "640", StageParams(link=False, max_side=640))
    print(f"\nUltralytics training data loader, imgsz 640, batch 16, {min(os.cpu_count() or 1, 8)} workers:")
    for name, result in (("1920x1080 copy", full), ("pre-resized to 640", small)):
        _read_all(result.staged_root)
        rate = _loader_rate(result.data_yaml)
        print(f"  {name:20s} {rate:7.1f} images/s  ({_count(result.staged_root / 'images')[1] / 1e6:.0f} MB of images)")
    shutil.rmtree(work)


def _loader_rate(data_yaml: Path) -> float:
    load_ultralytics(Path(tempfile.gettempdir()) / "yolopipe-bench-ultralytics")
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    cfg = get_cfg(overrides={"imgsz": 640, "cache": False, "mode": "train"})
    dataset = build_yolo_dataset(cfg, data["train"], 16, data, mode="train")
    loader = build_dataloader(dataset, 16, min(os.cpu_count() or 1, 8), shuffle=False, pin_memory=False,
                              device="cpu")
    batches = iter(loader)
    next(batches)  # worker start-up is not the loader's steady rate
    started, seen = time.perf_counter(), 0
    for _ in range(len(loader) - 1):
        seen += len(next(batches)["img"])
    return seen / (time.perf_counter() - started)


def _count(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".cache")]
    return len(files), sum(p.stat().st_size for p in files)


def _read_all(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            p.read_bytes()


def _sh(*cmd) -> None:
    subprocess.run([str(c) for c in cmd], check=True)


def _time(work) -> float:
    subprocess.run(["sync"], check=True)  # each contender starts without the previous one's dirty pages
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
