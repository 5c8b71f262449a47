"""Does the MLflow mirror slow training? Times the same tiny training without the mirror and with it, against a
real `mlflow server` on 127.0.0.1 (sqlite store, local artifacts), in pairs of alternating order after one
warm-up run, and prints each run's seconds, the median of the per-pair ratios (1.0: no cost), and the time the
training thread itself spent in the mirror's calls (the rest runs in its background thread).

    python bench/mlflow_mirror.py [--rounds 4] [--epochs 4] [--imgsz 64]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from yolopipe.params import TrainParams
from yolopipe.stage import stage
from yolopipe.synth import synthesize
from yolopipe.train import train
from yolopipe.train.mlflow_mirror import MlflowMirror

FOREGROUND: dict[str, float] = {"log_epoch": 0.0, "close": 0.0}  # seconds the training thread spent there


def clocked(name: str, method):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            FOREGROUND[name] += time.perf_counter() - started

    return timed


def start_server(work: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
         "--artifacts-destination", str(work / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return server, uri
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit("mlflow server did not start in 120 s")


def spread(seconds: list[float]) -> str:
    return f"{min(seconds):.1f}-{max(seconds):.1f} s (median {statistics.median(seconds):.1f})"


def timed_training(data_yaml: Path, work: Path, run: str, params: TrainParams) -> float:
    started = time.perf_counter()
    train(params, data_yaml, work / run / "models", work / run / "live", work / "scratch")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--imgsz", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yolopipe-bench-mlflow-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # Ultralytics and dvclive write relative to the working directory
        synthesize(work / "dataset", {"train": 48, "val": 16, "test": 8}, 96, 96, seed=1)
        data_yaml = stage(work / "dataset", work / "staged").data_yaml
        server, uri = start_server(work)
        MlflowMirror.log_epoch = clocked("log_epoch", MlflowMirror.log_epoch)
        MlflowMirror.close = clocked("close", MlflowMirror.close)
        try:
            base = {"epochs": args.epochs, "imgsz": args.imgsz, "batch": 8}
            timed_training(data_yaml, work, "warm-up", TrainParams(**base))  # imports, first-run caches
            times: dict[str, list[float]] = {"without": [], "with": []}
            for round_ in range(args.rounds):
                order = ["without", "with"] if round_ % 2 == 0 else ["with", "without"]
                for mode in order:
                    params = TrainParams(**base, mlflow_uri=uri if mode == "with" else None)
                    seconds = timed_training(data_yaml, work, f"{mode}-{round_}", params)
                    times[mode].append(seconds)
                    print(f"round {round_ + 1} {mode:>7} mirror: {seconds:.1f} s", flush=True)
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    ratios = [w / wo for w, wo in zip(times["with"], times["without"], strict=True)]
    runs = len(times["with"])
    print(f"{args.epochs} epochs at imgsz {args.imgsz}, {runs} pairs: without the mirror {spread(times['without'])},"
          f" with it {spread(times['with'])}")
    print(f"with/without per pair {', '.join(f'{r:.2f}' for r in ratios)}: median {statistics.median(ratios):.2f}")
    print(f"training thread inside the mirror, per run: log_epoch {1000 * FOREGROUND['log_epoch'] / runs:.2f} ms "
          f"in total, close (waiting for the last uploads, best.pt included) {FOREGROUND['close'] / runs:.2f} s")


if __name__ == "__main__":
    main()
