"""Several devices: train.device auto, and Ultralytics' own DDP path run with 2 CPU processes on gloo
(tests/ddp_cpu.py changes only the CUDA-specific device setup), through yolopipe's train()."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from yolopipe.params import TrainParams
from yolopipe.train.ranks import runs_epoch_work, training_device
from yolopipe.train.resume import TrainingInterrupted

TINY = {"imgsz": 64, "batch": 8, "device": "cpu"}  # batch is global: 4 images per rank and step


@pytest.mark.parametrize(("device", "batch", "gpus", "expected"), [
    ("auto", 8, 0, None),  # Ultralytics picks: the CPU
    ("auto", 8, 1, None),  # Ultralytics picks: the GPU
    ("auto", 16, 2, "0,1"),
    ("auto", 64, 8, "0,1,2,3,4,5,6,7"),
    ("auto", -1, 4, None),  # auto-batch works on one GPU only
    ("cpu", 8, 8, "cpu"),
    ("3", 8, 8, "3"),
    ("0,1", 8, 8, "0,1"),
])
def test_auto_means_every_visible_gpu(device, batch, gpus, expected):
    assert training_device(device, batch, gpus) == expected


def test_only_rank_0_or_a_single_process_does_the_epoch_work():
    assert [runs_epoch_work(rank) for rank in (-1, 0, 1, 7)] == [True, True, False, False]


@pytest.fixture
def gloo(tmp_path, tiny_dataset, monkeypatch):
    """A project directory whose train() launches 2 gloo ranks; yields a function that trains there."""
    from yolopipe.stage import stage
    from yolopipe.ultra import load_ultralytics

    monkeypatch.chdir(tmp_path)
    load_ultralytics(tmp_path / "scratch" / "ultralytics")  # before ddp_cpu imports Ultralytics
    import ddp_cpu
    import yolopipe.train.ddp

    monkeypatch.setattr(yolopipe.train.ddp, "Trainer", ddp_cpu.GlooTrainer)
    writes = tmp_path / "rank-writes"
    writes.mkdir()
    monkeypatch.setenv(ddp_cpu.WRITES_ENV, str(writes))
    data_yaml = stage(tiny_dataset, tmp_path / "staged").data_yaml

    def train(epochs: int):
        from yolopipe.train import train

        return train(TrainParams(**TINY, epochs=epochs), data_yaml, tmp_path / "models", tmp_path / "live",
                     tmp_path / "scratch")

    train.root, train.writes = tmp_path, writes
    return train


def rank_report(writes: Path, rank: int) -> dict:
    return json.loads((writes / f"rank{rank}.json").read_text())


def rows(live: Path) -> list[str]:
    return [row.split("\t")[0] for row in (live / "plots/metrics/val/mAP50.tsv").read_text().splitlines()[1:]]


def test_two_ranks_rank_0_alone_writes_our_outputs(gloo):
    from ultralytics.utils import USER_CONFIG_DIR

    started = time.monotonic()
    result = gloo(epochs=2)
    seconds = time.monotonic() - started
    root, models, live = gloo.root, gloo.root / "models", gloo.root / "live"
    assert result.epochs == 2 and not result.stopped_early and result.resumed_from is None
    assert set(result.metrics) >= {"val/mAP50", "train/box_loss", "lr/pg0"}
    assert sorted(p.name for p in models.iterdir()) == ["best.pt", "last.pt", "train_args.yaml"]
    assert torch.load(models / "last.pt", weights_only=False)["yolopipe"]["fingerprint"]  # our stamp
    assert rows(live) == ["0", "1"]  # one dvclive step per epoch, written once
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["epochs_completed"] == 2 and summary["stopped_early"] == 0 and summary["step"] == 1

    ours = (str(models), str(live))
    rank0, rank1 = rank_report(gloo.writes, 0), rank_report(gloo.writes, 1)
    assert any(path.startswith(ours) for path in rank0["writes"])
    assert [path for path in rank1["writes"] if path.startswith(ours)] == []  # the other rank: nothing of ours
    assert rank0["batch"] == rank1["batch"] == TINY["batch"] // 2  # train.batch is the global batch
    # Ultralytics' DDP script and state went to our Ultralytics directory, and were removed.
    assert not USER_CONFIG_DIR.is_relative_to(Path.home()) and list((USER_CONFIG_DIR / "DDP").iterdir()) == []
    assert sorted(p.name for p in root.iterdir()) == ["live", "models", "rank-writes", "scratch", "staged"]
    print(f"2 gloo ranks, 2 epochs: {seconds:.1f} s")


def test_sigterm_stops_both_ranks_and_the_rerun_resumes(gloo):
    """SIGTERM to the training process during epoch 2 of 4: both ranks stop at the same batch, rank 0 keeps
    epoch 1 in models/last.pt, and the rerun trains epochs 2-4 only, with continuous dvclive steps."""
    live = gloo.root / "live"

    def sigterm_after_the_first_epoch():
        while not (live / "plots/metrics/val/mAP50.tsv").is_file() or len(rows(live)) < 1:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=sigterm_after_the_first_epoch, daemon=True).start()
    with pytest.raises(TrainingInterrupted) as stop:
        gloo(epochs=4)
    completed = stop.value.completed
    assert stop.value.signum == signal.SIGTERM and 1 <= completed < 4
    assert torch.load(gloo.root / "models" / "last.pt", weights_only=False)["epoch"] == completed - 1
    ranks = [rank_report(gloo.writes, rank) for rank in (0, 1)]  # both ran to their exit: neither was killed
    assert [rank["exit"] for rank in ranks] == ["TrainingInterrupted", "TrainingInterrupted"]
    assert ranks[0]["batches"] == ranks[1]["batches"]  # and stopped after the same batch

    result = gloo(epochs=4)
    assert result.resumed_from == completed + 1 and result.epochs == 4
    assert rows(live) == ["0", "1", "2", "3"]
    assert torch.load(gloo.root / "models" / "last.pt", weights_only=False)["epoch"] == -1  # finished


FAKE_AGENT = """
import subprocess, sys
# like torch.distributed.run: the rank in a session of its own; the agent passes on the rank's exit code
rank = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True)
sys.exit(rank.wait())
"""
FAKE_RANK = """
import signal, sys, time
from pathlib import Path
def stop(signum, frame):
    Path(sys.argv[1]).write_text(str(signum))
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[1] + ".ready").touch()
time.sleep(60)
"""


def test_a_signal_to_the_launcher_reaches_the_ranks_once_and_not_the_agent(tmp_path):
    """The launcher's part, on fakes: SIGTERM to this process goes to the rank (a child of the agent, in a
    session of its own), the agent is left to pass on the rank's exit, and yolopipe's own handler records it."""
    from yolopipe.train.launch import run_forwarding_signals
    from yolopipe.train.resume import StopOnSignal

    received = tmp_path / "rank-got"
    rank = f"import sys; sys.argv = ['rank', {str(received)!r}]\n{FAKE_RANK}"
    cmd = [sys.executable, "-c", FAKE_AGENT, rank]

    def sigterm_when_the_rank_is_ready():
        while not received.with_name("rank-got.ready").exists():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=sigterm_when_the_rank_is_ready, daemon=True).start()
    stopper = StopOnSignal()
    with stopper.installed():
        returncode, signum = run_forwarding_signals(cmd)
    assert (returncode, signum) == (1, signal.SIGTERM)  # the agent exited on its own, with the rank's code
    assert received.read_text() == str(int(signal.SIGTERM))
    assert stopper.signum == signal.SIGTERM
