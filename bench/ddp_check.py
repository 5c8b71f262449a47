"""The multi-GPU part of bench/gpu_check.sh: `train.device: auto` on a box with 2+ GPUs trains on all of them.

    python bench/ddp_check.py WORK/coco-like WORK --epochs 3 --batch 32

1. The same training on GPU 0 alone, then with device auto (torch DDP on every GPU, the same global batch):
   the epoch time of each from Ultralytics' results.csv (rank 0's clock, validation included) and the ratio.
2. The DDP run's outputs are complete and written once, by rank 0: models/ holds best.pt, last.pt (with our
   stamp) and train_args.yaml, dvclive one row per epoch; Ultralytics' DDP files are gone.
3. SIGTERM during epoch 2 of a small training stops every rank; the rerun resumes at the right epoch.
With fewer than 2 GPUs it says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

from yolopipe.params import StageParams, TrainParams
from yolopipe.stage import stage


def fail(message: str) -> None:
    print(f"ddp_check: FAILED: {message}", flush=True)
    sys.exit(1)


def epoch_seconds(run_dir: Path) -> list[float]:
    """Each epoch's wall time from Ultralytics' results.csv (its `time` column is cumulative)."""
    with (run_dir / "results.csv").open() as handle:
        times = [float(row["time"]) for row in csv.DictReader(handle, skipinitialspace=True)]
    return [b - a for a, b in zip([0.0, *times], times, strict=False)]


def dvclive_steps(live: Path) -> list[str]:
    return [row.split("\t")[0] for row in (live / "plots/metrics/val/mAP50.tsv").read_text().splitlines()[1:]]


def timed_training(params: TrainParams, data_yaml: Path, work: Path) -> tuple[object, list[float]]:
    from yolopipe.train import train

    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # train() keeps its resume fingerprint relative to the working directory
    result = train(params, data_yaml, work / "models", work / "live", work / "scratch")
    return result, epoch_seconds(work / "scratch" / "runs" / "train")


def speed_check(data_yaml: Path, work: Path, epochs: int, batch: int, workers: int, imgsz: int, gpus: int) -> None:
    from ultralytics.utils import USER_CONFIG_DIR

    from yolopipe.train.ranks import training_device

    base = {"epochs": epochs, "batch": batch, "workers": workers, "imgsz": imgsz}
    _, one = timed_training(TrainParams(**base, device="0"), data_yaml, work / "one-gpu")
    result, every = timed_training(TrainParams(**base, device="auto"), data_yaml, work / "every-gpu")
    models, live = work / "every-gpu" / "models", work / "every-gpu" / "live"
    import torch

    if sorted(p.name for p in models.iterdir()) != ["best.pt", "last.pt", "train_args.yaml"]:
        fail(f"models/ holds {sorted(p.name for p in models.iterdir())}")
    if not torch.load(models / "last.pt", weights_only=False).get("yolopipe"):
        fail("models/last.pt has no yolopipe stamp")
    if dvclive_steps(live) != [str(step) for step in range(epochs)]:
        fail(f"dvclive steps {dvclive_steps(live)}, expected one per epoch (0..{epochs - 1})")
    summary = json.loads((live / "metrics.json").read_text())
    if summary.get("epochs_completed") != epochs or result.epochs != epochs:
        fail(f"epochs_completed {summary.get('epochs_completed')}, result {result.epochs}, expected {epochs}")
    leftovers = list((USER_CONFIG_DIR / "DDP").glob("*"))
    if leftovers:
        fail(f"Ultralytics' DDP files left behind: {leftovers}")
    device = training_device("auto", batch, gpus)
    one_s, every_s = statistics.mean(one[1:] or one), statistics.mean(every[1:] or every)
    listed = {name: ", ".join(f"{s:.1f}" for s in series) for name, series in (("one", one), ("every", every))}
    print(f"outputs: rank 0's, complete (models/ best.pt last.pt train_args.yaml, {epochs} dvclive steps)")
    print(f"epoch time, epochs 2-{epochs} (results.csv, validation included), global batch {batch}, device "
          f"{device}: 1 GPU {one_s:.1f} s, {gpus} GPUs {every_s:.1f} s: {one_s / every_s:.2f}x "
          f"(per epoch: 1 GPU {listed['one']}; {gpus} GPUs {listed['every']})")
    print(f"{gpus} GPUs: {result.summary}")


def sigterm_check(work: Path) -> None:
    from yolopipe.synth import synthesize
    from yolopipe.train.resume import TrainingInterrupted

    synthesize(work / "small", {"train": 256, "val": 32, "test": 0}, width=320, height=240, seed=3)
    data_yaml = stage(work / "small", work / "small-staged", StageParams(link=False)).data_yaml
    params = TrainParams(epochs=4, imgsz=160, batch=32, device="auto", workers=4)
    live = work / "sigterm" / "live"
    sent: list[float] = []

    def sigterm_in_epoch_2() -> None:
        while not (live / "plots/metrics/val/mAP50.tsv").is_file() or not dvclive_steps(live):
            time.sleep(0.05)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=sigterm_in_epoch_2, daemon=True).start()
    try:
        timed_training(params, data_yaml, work / "sigterm")
        fail("SIGTERM did not stop the training")
    except TrainingInterrupted as stop:
        completed, stop_s = stop.completed, time.monotonic() - sent[0]
    if not 1 <= completed < 4:
        fail(f"stopped after {completed} epochs, expected 1-3")
    result, _ = timed_training(params, data_yaml, work / "sigterm")
    if result.resumed_from != completed + 1 or dvclive_steps(live) != ["0", "1", "2", "3"]:
        fail(f"rerun resumed at {result.resumed_from} with steps {dvclive_steps(live)}; expected {completed + 1}")
    print(f"SIGTERM: every rank stopped {stop_s:.1f} s after the signal, after {completed} epochs; the rerun "
          f"resumed at epoch {completed + 1} and finished with dvclive steps 0-3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    parser.add_argument("--imgsz", type=int, default=640)
    args = parser.parse_args()
    from yolopipe.train.ranks import training_device, visible_gpus
    from yolopipe.ultra import load_ultralytics

    gpus = visible_gpus()
    if gpus < 2:
        print(f"ddp_check: skipped: {gpus} GPU(s) visible; device auto trains on every GPU only with 2 or more")
        return
    work = args.work.resolve() / "ddp"
    load_ultralytics(work / "scratch" / "ultralytics")
    print(f"ddp_check: {gpus} GPUs; device auto -> {training_device('auto', args.batch, gpus)}", flush=True)
    staged = stage(args.dataset.resolve(), work / "staged")
    speed_check(staged.data_yaml, work, args.epochs, args.batch, args.workers, args.imgsz, gpus)
    sigterm_check(work)


if __name__ == "__main__":
    main()
