"""Benchmark: `yolopipe stage` against `cp -r` and `rsync -a`, DVC's check of the copy, and pre-resizing.

    python bench/stage.py                      # 20,000 640x480 JPEGs (reused from bench/validate.py if there)
    python bench/stage.py --images 2000 --loader-images 200 --dir /tmp/bench-2k --rounds 2

On the same disk as the dataset, from a warm page cache: yolopipe's plain copy, `cp -r` and `rsync -a`, each
into an empty directory after `sync`, for --rounds rounds in rotating order (the machine's load drifts; a
ratio is the median of the per-round ratios); the no-op restage of an intact copy; the linked stage of a
read-only source (as DVC leaves a dataset linked from its cache) against `cp -al`; the pre-resize
(stage.max_side); `dvc repro` and `dvc status` of a one-stage DVC project whose `cache: false` output is
the staged copy, as in dvc.yaml. Then Ultralytics' training data loader (no model) on 1920x1080 images at
imgsz 640, from the full-size copy and from a copy pre-resized to 640.

Leave a few minutes between runs: the run deletes its copies at the end, and on ext4 without a journal
(this development machine's disk) creating files right after deleting many is several times slower.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from yolopipe.params import StageParams
from yolopipe.stage import stage
from yolopipe.synth import synthesize
from yolopipe.ultra import load_ultralytics

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="640x480 JPEGs in the copy benchmark")
    parser.add_argument("--dir", type=Path, help="dataset directory; generated if missing, reused if present")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the copy comparison")
    parser.add_argument("--loader-images", type=int, default=800, help="1920x1080 JPEGs for the loader")
    parser.add_argument("--max-side", type=int, default=320, help="pre-resize of the copy benchmark")
    parser.add_argument("--skip-loader", action="store_true")
    parser.add_argument("--skip-dvc", action="store_true", help="leave out `dvc repro` and `dvc status`")
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
    print(f"dataset: {files} files, {size / 1e6:.0f} MB, {os.cpu_count()} CPU cores, target {work}, "
          f"load average {os.getloadavg()[0]:.1f}")

    copies = {"cp -r": lambda to: _sh("cp", "-r", source, to)}
    if shutil.which("rsync"):
        copies["rsync -a"] = lambda to: _sh("rsync", "-a", f"{source}/", to)
    else:
        print("rsync is not installed here: its row is left out")
    copies["yolopipe plain copy"] = lambda to: stage(source, to, StageParams(link=False))
    runs = {name: [] for name in copies}
    for round_ in range(args.rounds):
        order = list(copies)[round_ % len(copies):] + list(copies)[:round_ % len(copies)]
        for name in order:
            runs[name].append(_time(copies[name], work / f"{name.split()[0]}-{round_}"))
    print(f"copies done, load average {os.getloadavg()[0]:.1f}")
    plain = work / "yolopipe-0"
    rows = {name: statistics.median(seconds) for name, seconds in runs.items()}
    rows["yolopipe no-op restage"] = _time(lambda: stage(source, plain, StageParams(link=False)))
    # A read-only source, as DVC's cache links are: what yolopipe hard-links.
    _sh("chmod", "-R", "a-w", work / "cp-0")
    ro_source = work / "cp-0"
    rows["cp -al"] = _time(lambda: _sh("cp", "-al", ro_source, work / "cpal"))
    rows["yolopipe linked stage"] = _time(lambda: stage(ro_source, work / "linked"))
    rows[f"yolopipe pre-resize to {args.max_side}"] = _time(
        lambda: stage(source, work / "resized", StageParams(link=False, max_side=args.max_side)))
    if not args.skip_dvc:
        rows.update(_dvc(source, work / "dvc"))

    # A copy's ratio is the median of its per-round ratios (same round, same load); other rows ran once.
    ratios = {name: statistics.median(c / t for c, t in zip(runs["cp -r"], times, strict=True))
              for name, times in runs.items()}
    print(f"\n{'':28s} {'seconds':>8s} {'files/s':>9s} {'MB/s':>8s}  vs cp -r")
    for name, seconds in rows.items():
        print(f"{name:28s} {seconds:8.2f} {files / seconds:9.0f} {size / 1e6 / seconds:8.0f}  "
              f"{ratios.get(name, rows['cp -r'] / seconds):5.2f}x")
    print(f"(copies: the median of {args.rounds} rounds, in rotating order; the other rows ran once)")
    for baseline in [name for name in copies if not name.startswith("yolopipe")]:
        per_round = [b / y for b, y in zip(runs[baseline], runs["yolopipe plain copy"], strict=True)]
        print(f"yolopipe plain copy vs {baseline}: {statistics.median(per_round):.2f}x (per round "
              f"{', '.join(f'{r:.2f}x' for r in per_round)}; seconds {_seconds(runs['yolopipe plain copy'])} vs "
              f"{_seconds(runs[baseline])})")
    print(f"no-op restage: {rows['yolopipe no-op restage'] / files * 1e4:.2f} s per 10k files (target <= 2)")
    for name in [name for name in ("dvc status, first", "dvc status, second") if name in rows]:
        startup = rows["dvc status, empty project"]
        print(f"{name}: {rows[name]:.2f} s for the {files}-file copy, {rows[name] / files * 2e4:.2f} s per 20k "
              f"files, {rows[name] / files * 1e4:.2f} s per 10k; {startup:.2f} s of it is DVC's start-up (its "
              f"status of an empty project), the rest {(rows[name] - startup) / files * 1e4:.2f} s per 10k files; "
              f"{rows[name] / rows['yolopipe no-op restage']:.1f}x yolopipe's no-op restage")
    _, resized = _count(work / "resized")
    print(f"pre-resized copy: {resized / 1e6:.0f} MB ({resized / size:.0%} of the source)")
    _sh("chmod", "-R", "u+w", work)
    shutil.rmtree(work)
    if not args.skip_loader:
        _loader(source.parent / f"yolopipe-bench-stage-1080p-{args.loader_images}", args.loader_images)


def _dvc(source: Path, repo: Path) -> dict[str, float]:
    """`dvc repro` and two `dvc status` runs of a project whose one stage stages `source` into data/staged,
    a `cache: false` output as in dvc.yaml: DVC hashes it through its state database (inode, mtime, size)."""
    if not (shutil.which("dvc") and shutil.which("yolopipe")):
        print("dvc or yolopipe is not on PATH: the dvc rows are left out")
        return {}
    repo.mkdir()
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")  # the marker stays out of the hash, as in the project
    (repo / "params.yaml").write_text(yaml.safe_dump({"data": {"root": str(source)}, "stage": {"link": False}}))
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"stage": {
        "cmd": "yolopipe stage", "params": ["data", "stage"],
        "outs": [{"data/staged": {"cache": False, "persist": True}}]}}}, sort_keys=False))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def dvc(*args: str, cwd: Path = repo) -> str:
        return subprocess.run(["dvc", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout

    dvc("init", "--no-scm", "-q")
    rows = {"dvc repro (copy + hash)": _time(dvc, "repro")}
    for name in ("dvc status, first", "dvc status, second"):
        out = []
        rows[name] = _time(lambda out: out.append(dvc("status")), out)
        if "up to date" not in out[0]:
            print(f"{name} did not report the copy up to date:\n{out[0]}")
    empty = repo.parent / "dvc-empty"  # DVC's fixed cost: start-up and reading a project
    empty.mkdir()
    dvc("init", "--no-scm", "-q", cwd=empty)
    rows["dvc status, empty project"] = _time(dvc, "status", cwd=empty)
    return rows


def _seconds(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


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


def _time(work, *args, **kwargs) -> float:
    subprocess.run(["sync"], check=True)  # each contender starts without the previous one's dirty pages
    started = time.perf_counter()
    work(*args, **kwargs)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
