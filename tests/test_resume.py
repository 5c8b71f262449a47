"""Interrupted training continues where it stopped; anything else starts fresh and says why."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from yolopipe.params import TrainParams
from yolopipe.train.resume import (
    STAMP_KEY,
    StopOnSignal,
    TrainingInterrupted,
    drop_steps_from,
    fingerprint,
    plan_resume,
)

from conftest import run

YOLOPIPE = [sys.executable, "-m", "yolopipe.cli"]
FIVE_EPOCHS = {"epochs": 5, "imgsz": 64, "batch": 8}


def rows(live_dir: Path, curve: str = "val/mAP50.tsv") -> list[str]:
    path = live_dir / "plots" / "metrics" / curve
    return path.read_text().splitlines()[1:] if path.is_file() else []


def test_fingerprint_follows_params_and_data_but_not_the_machine(tmp_path, tiny_dataset):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    base = fingerprint(TrainParams(), data)
    assert fingerprint(TrainParams(device="cpu", workers=0, max_hours=1.0), data) == base
    assert fingerprint(TrainParams(epochs=7), data) != base
    (data / "labels" / "train" / "cache.cache").write_text("written by Ultralytics while training")
    (data / ".yolopipe-stage.json").write_text('{"mtimes": "of this machine"}')  # stage's marker
    assert fingerprint(TrainParams(), data) == base
    label = next((data / "labels" / "train").glob("*.txt"))
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    assert fingerprint(TrainParams(), data) != base


def test_fingerprint_uses_the_hash_dvc_recorded_instead_of_reading_the_data(tmp_path, tiny_dataset, monkeypatch):
    data = tmp_path / "data" / "staged"
    shutil.copytree(tiny_dataset, data)
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  stage:\n    outs:\n    - path: data/staged\n"
                    "      hash: md5\n      md5: 0123.dir\n")
    recorded = fingerprint(TrainParams(), data, lock)
    assert recorded != fingerprint(TrainParams(), data, tmp_path / "no.lock")  # hashed the files
    label = next((data / "labels" / "train").glob("*.txt"))
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    assert fingerprint(TrainParams(), data, lock) == recorded  # the files were not read
    lock.write_text(lock.read_text().replace("0123.dir", "4567.dir"))  # DVC restaged other data
    assert fingerprint(TrainParams(), data, lock) != recorded
    monkeypatch.chdir(tmp_path)  # as the stage runs it: relative paths from the project root
    assert fingerprint(TrainParams(), Path("data/staged"), Path("dvc.lock")) == fingerprint(TrainParams(), data, lock)


def test_plan_resume_continues_only_an_unfinished_checkpoint_of_the_same_run(trained, tmp_path):
    stamp = torch.load(trained.result.last, weights_only=False)[STAMP_KEY]["fingerprint"]
    assert stamp == fingerprint(trained.params, trained.data_yaml.parent)
    finished = plan_resume(trained.result.last, stamp)
    assert finished.checkpoint is None and "finished training" in finished.message
    assert plan_resume(tmp_path / "absent.pt", stamp).message == "starting a fresh training"

    checkpoint = torch.load(trained.result.last, weights_only=False)
    checkpoint.update(epoch=0, optimizer={"state": {}, "param_groups": []})  # as saved after epoch 1 of 2
    unfinished = tmp_path / "last.pt"
    torch.save(checkpoint, unfinished)
    plan = plan_resume(unfinished, stamp)
    assert (plan.checkpoint, plan.start_epoch) == (unfinished, 1)
    assert plan.message == f"resuming from {unfinished} at epoch 2"
    changed = plan_resume(unfinished, "another fingerprint")
    assert changed.checkpoint is None and "params or data changed" in changed.message
    unfinished.write_bytes(b"torn")
    assert "unreadable" in plan_resume(unfinished, stamp).message


def test_drop_steps_from_keeps_earlier_rows(tmp_path):
    curve = tmp_path / "plots" / "metrics" / "val" / "mAP50.tsv"
    curve.parent.mkdir(parents=True)
    curve.write_text("step\tmAP50\n0\t0.1\n1\t0.2\n2\t0.3\n")
    drop_steps_from(tmp_path, 2)
    assert curve.read_text() == "step\tmAP50\n0\t0.1\n1\t0.2\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_at_the_next_boundary_with_a_resumable_message(sig):
    stopper = StopOnSignal(completed=2)
    with stopper.installed():
        os.kill(os.getpid(), sig)
        time.sleep(0.1)  # the handler only sets a flag; nothing is raised here
        trainer = type("Trainer", (), {"epoch": 2, "epochs": 5})()
        with pytest.raises(TrainingInterrupted) as stop:
            stopper.check(trainer)
    assert stop.value.exit_code == 128 + sig  # 143 for SIGTERM, 130 for SIGINT
    assert str(stop.value) == (f"training interrupted by {signal.Signals(sig).name} after 2/5 epochs "
                               "(kept in models/last.pt); run `dvc repro` again to resume")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handlers are back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_then_rerun_resumes_with_continuous_steps(trained, tmp_path, monkeypatch):
    """In process: SIGTERM after epoch 2 of 5 stops training; the rerun trains epochs 3-5 only."""
    from yolopipe.train import train

    monkeypatch.chdir(tmp_path)
    params = TrainParams(**FIVE_EPOCHS)
    models, live = tmp_path / "models", tmp_path / "live"

    def send_sigterm_after_two_epochs():
        while len(rows(live)) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send_sigterm_after_two_epochs, daemon=True).start()
    with pytest.raises(TrainingInterrupted) as stop:
        train(params, trained.data_yaml, models, live, trained.scratch)
    completed = stop.value.completed
    assert 2 <= completed < 5  # the signal lands during epoch 3 (on a very slow box, later)
    assert torch.load(models / "last.pt", weights_only=False)["epoch"] == completed - 1

    result = train(params, trained.data_yaml, models, live, trained.scratch)
    assert result.resumed_from == completed + 1 and result.epochs == 5
    assert [row.split("\t")[0] for row in rows(live)] == ["0", "1", "2", "3", "4"]
    assert json.loads((live / "metrics.json").read_text())["step"] == 4
    assert torch.load(models / "last.pt", weights_only=False)["epoch"] == -1  # finished: never resumed again

    # The same params again: the finished last.pt is not resumed, training starts over from epoch 1.
    again = train(params, trained.data_yaml, models, live, trained.scratch)
    assert again.resumed_from is None and len(rows(live)) == 5


def test_max_hours_stops_cleanly_and_says_so(trained, tmp_path, monkeypatch):
    from yolopipe.train import train

    monkeypatch.chdir(tmp_path)
    params = TrainParams(**{**FIVE_EPOCHS, "epochs": 50, "max_hours": 0.0002})  # 0.7 s: one epoch
    result = train(params, trained.data_yaml, tmp_path / "models", tmp_path / "live", trained.scratch)
    assert result.stopped_early and result.epochs < 50 and result.best.is_file()
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["stopped_early"] == 1 and metrics["epochs_completed"] == result.epochs


def start_training(project: Path) -> subprocess.Popen:
    return subprocess.Popen([*YOLOPIPE, "train"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_epochs(process: subprocess.Popen, live: Path, count: int) -> None:
    deadline = time.monotonic() + 300
    while len(rows(live)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def cli_project(tmp_path, tiny_dataset) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"root": str(tiny_dataset)},
                                                         "train": FIVE_EPOCHS}))
    run([*YOLOPIPE, "stage"], tmp_path)
    return tmp_path


@pytest.mark.slow
def test_cli_sigterm_then_kill_9_then_changed_params(cli_project):
    """`yolopipe train` as DVC runs it: SIGTERM exits resumably, kill -9 loses at most the epoch in progress,
    and a checkpoint of other params is not continued."""
    live = cli_project / "results" / "train"
    process = start_training(cli_project)
    wait_for_epochs(process, live, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    assert "yolopipe train: training interrupted by SIGTERM after " in stderr
    assert "run `dvc repro` again to resume" in stderr and "Traceback" not in stderr
    done = torch.load(cli_project / "models" / "last.pt", weights_only=False)["epoch"] + 1

    process = start_training(cli_project)  # resumes, then is killed without warning
    wait_for_epochs(process, live, done + 1)
    process.kill()
    stdout, _ = process.communicate()
    assert f"yolopipe train: resuming from models/last.pt at epoch {done + 1}" in stdout
    saved = torch.load(cli_project / "models" / "last.pt", weights_only=False)["epoch"] + 1
    assert saved >= done + 1
    interrupted = cli_project / "interrupted.pt"
    shutil.copyfile(cli_project / "models" / "last.pt", interrupted)

    resumed = run([*YOLOPIPE, "train"], cli_project)
    assert f"resuming from models/last.pt at epoch {saved + 1}" in resumed.stdout
    assert "trained 5 epochs (resumed at epoch" in resumed.stdout
    assert [row.split("\t")[0] for row in rows(live)] == ["0", "1", "2", "3", "4"]
    assert len(rows(live, "train/box_loss.tsv")) == 5

    shutil.copyfile(interrupted, cli_project / "models" / "last.pt")
    params = yaml.safe_load((cli_project / "params.yaml").read_text())
    params["train"]["epochs"] = 1
    (cli_project / "params.yaml").write_text(yaml.safe_dump(params))
    fresh = run([*YOLOPIPE, "train"], cli_project)
    assert ("starting a fresh training: params or data changed since models/last.pt was written"
            in fresh.stdout)
    assert "trained 1 epochs:" in fresh.stdout and len(rows(live)) == 1
