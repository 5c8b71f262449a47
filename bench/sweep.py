"""What a sweep on 2 workers buys over running the same trials one after another, and what Ray costs per trial.

Builds a copy of this project on a tiny synthetic dataset, then runs the same N trials (train.lr0 grid, one
epoch each) three ways and prints each wall time:
  sequential  one `dvc exp run -S train.lr0=...` after another, no Ray (what a user does by hand: the baseline)
  sweep x1    `yolopipe sweep` with max_concurrent 1 (the same trials through Ray, one at a time)
  sweep xW    `yolopipe sweep` with max_concurrent W (default 2)
and the ratios: sequential / sweep xW (the speed-up), and (sweep x1 - sequential) / N, the scheduling overhead
per trial, split from the trial logs' time stamps into what each trial adds (the clone of the project, its
checkout, the experiment push) and what the sweep pays once (Ray's start and stop, Tune). Every trial trains on
cores / max_concurrent threads, so sweep x1 and sequential use the same threads; an untimed warm-up run goes
first.

    python bench/sweep.py [--trials 8] [--workers 2] [--epochs 1] [--keep]

Each trial is a whole experiment (validate, stage, train, evaluate, export), as in a real sweep. On a box
with fewer cores than workers the trials share them, so the speed-up measures the machine as much as the
sweep: the figures come with the core count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
YOLOPIPE = [sys.executable, "-m", "yolopipe.cli"]
GIT = ["git", "-c", "user.name=yolopipe bench", "-c", "user.email=bench@yolopipe.invalid"]


def sh(command: list[str], cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def make_project(root: Path, epochs: int) -> Path:
    """This repository's tracked files, a 24-image dataset in git, tiny params; committed, never reproduced."""
    files = sh(["git", "ls-files", "-z"], REPO).split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "dvc.lock").unlink(missing_ok=True)  # names outputs this copy's cache does not have
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update({"epochs": epochs, "imgsz": 64, "batch": 8, "optimizer": "SGD"})
    params["data"]["root"] = "data/tiny"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh([*YOLOPIPE, "synth", "data/tiny", "--train", "16", "--val", "8", "--test", "8", "--width", "64",
        "--height", "64", "--seed", "1"], root)
    sh(["git", "init", "-q", "-b", "main"], root)
    sh(["git", "add", "-A"], root)
    sh([*GIT, "commit", "-q", "-m", "bench project"], root)
    return root


def lr_values(trials: int) -> list[float]:
    return [round(0.001 * (index + 1), 4) for index in range(trials)]


def forget_run_cache(project: Path) -> None:
    """Every run below trains: DVC's run cache would restore a stage run before with the same params and deps
    (the three runs train the same trials) instead of running it."""
    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)


def sequential(project: Path, values: list[float]) -> float:
    forget_run_cache(project)
    started = time.monotonic()
    for index, lr in enumerate(values):
        sh(["dvc", "exp", "run", "-n", f"seq-{index}", "-S", f"train.lr0={lr}"], project)
    return time.monotonic() - started


def sweep(project: Path, values: list[float], workers: int) -> float:
    cpus = max(1, (os.cpu_count() or 1) // workers)  # the cores shared out: x1 trains on all, as sequential does
    config = {"name": f"x{workers}", "space": {"train.lr0": {"grid": values}}, "searcher": "grid",
              "metric": "val/mAP50", "max_concurrent": workers, "cpus_per_trial": cpus}
    sweep_file = project / f"sweep-x{workers}.yaml"
    sweep_file.write_text(yaml.safe_dump(config, sort_keys=False))
    forget_run_cache(project)
    started = time.monotonic()
    printed = sh([*YOLOPIPE, "sweep", str(sweep_file)], project)
    seconds = time.monotonic() - started
    summary = printed[printed.index(f"sweep x{workers}:"):]
    finished = summary.count(" completed ")
    if finished != len(values):
        raise SystemExit(f"sweep x{workers}: {finished} of {len(values)} trials completed\n{summary}")
    return seconds


def trial_seconds(sweep_dir: Path) -> float:
    """The trials' own wall time, summed: first to last time stamp of each trial log (1 s resolution)."""
    total = 0.0
    for log in sweep_dir.glob("*/log.txt"):
        stamps = [line[:8] for line in log.read_text().splitlines() if line[:2].isdigit() and line[2:3] == ":"]
        first, last = (datetime.strptime(stamp, "%H:%M:%S") for stamp in (stamps[0], stamps[-1]))
        total += (last - first).total_seconds() % 86400  # across midnight
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the bench project (path printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="yolopipe-bench-sweep-"))
    try:
        project = make_project(work / "project", args.epochs)
        values = lr_values(args.trials)
        print(f"{args.trials} trials of {args.epochs} epoch(s), tiny dataset, {os.cpu_count()} cores; "
              f"{args.workers} workers", flush=True)
        sh(["dvc", "exp", "run", "-n", "warm-up"], project)  # first-run costs (imports, caches) out of the timing
        base = sequential(project, values)
        print(f"sequential  (dvc exp run x{args.trials}, no Ray): {base:7.1f} s  "
              f"({base / args.trials:.1f} s per trial)", flush=True)
        one = sweep(project, values, 1)
        print(f"sweep x1    (yolopipe sweep, max_concurrent 1): {one:7.1f} s", flush=True)
        many = sweep(project, values, args.workers)
        print(f"sweep x{args.workers}    (yolopipe sweep, max_concurrent {args.workers}): {many:7.1f} s", flush=True)
        in_trials = trial_seconds(project / ".yolopipe" / "sweeps" / "x1")
        print(f"speed-up of {args.workers} workers over sequential: {base / many:.2f}x; sweep x1 / sequential: "
              f"{one / base:.2f}x, {(one - base) / args.trials:+.1f} s per trial, of which "
              f"{(in_trials - base) / args.trials:+.1f} s inside each trial (clone, checkout, exp push; from the "
              f"trial logs) and {one - in_trials:.1f} s once per sweep (Ray's start and stop, Tune)")
        listed = sh(["dvc", "exp", "list", "--name-only"], project).split()
        print(f"experiments recorded: {len(listed)} (expected {3 * args.trials + 1})")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
