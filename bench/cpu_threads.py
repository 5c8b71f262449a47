"""How many torch threads should CPU training use? Times epochs of the real sample training at 1 and 2
threads (Ultralytics picks cores-1 on its own) and prints seconds per epoch and the ratio.

    python bench/cpu_threads.py [--epochs 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from yolopipe.params import TrainParams
from yolopipe.stage import stage
from yolopipe.train import train

REPO = Path(__file__).resolve().parents[1]


def seconds_per_epoch(threads: int, epochs: int, data_yaml: Path, work: Path) -> float:
    import torch
    from ultralytics import YOLO

    epoch_times: list[float] = []
    started = {}

    def pin_threads(trainer):
        torch.set_num_threads(threads)  # after Ultralytics' own select_device() reset

    def epoch_start(trainer):
        started["t"] = time.perf_counter()

    def epoch_end(trainer):
        epoch_times.append(time.perf_counter() - started["t"])

    original = YOLO.train

    def train_with_callbacks(self, **kwargs):
        self.add_callback("on_pretrain_routine_end", pin_threads)
        self.add_callback("on_train_epoch_start", epoch_start)
        self.add_callback("on_train_epoch_end", epoch_end)
        return original(self, **kwargs)

    YOLO.train = train_with_callbacks
    try:
        params = TrainParams(epochs=epochs, imgsz=160, batch=8)
        train(params, data_yaml, work / f"models{threads}", work / f"live{threads}", work / "scratch")
    finally:
        YOLO.train = original
    steady = epoch_times[1:] or epoch_times  # the first epoch pays for warm-up
    return sum(steady) / len(steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_yaml = stage(REPO / "data" / "sample", work / "staged").data_yaml
        import os

        os.chdir(work)
        results = {n: seconds_per_epoch(n, args.epochs, data_yaml, work) for n in args.threads}
    baseline = results[args.threads[0]]
    print(f"\nCPU training, sample dataset, imgsz 160, batch 8, {os.cpu_count()} cores")
    for threads, seconds in results.items():
        print(f"  {threads} torch thread(s): {seconds:6.2f} s/epoch   {baseline / seconds:4.2f}x vs {args.threads[0]}")


if __name__ == "__main__":
    main()
