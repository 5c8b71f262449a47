"""Checkpoints off the box: uploaded to the DVC remote while training, resumed by a second machine."""

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch
import yaml

from yolopipe.errors import PipelineError
from yolopipe.train.checkpoints import PREFIX, RemoteCheckpoints

from conftest import GIT, run

DVC = [sys.executable, "-m", "dvc"]
YOLOPIPE = [sys.executable, "-m", "yolopipe.cli"]
FIVE_EPOCHS = {"epochs": 5, "imgsz": 64, "batch": 8}


def origin_project(root, params: dict):
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q", "-b", "main"], root)
    run([*DVC, "init", "-q"], root)
    return root


def commit(project) -> None:
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-q", "-m", "project"], project)


def test_checkpoints_need_a_real_remote_before_training_starts(tmp_path):
    project = origin_project(tmp_path / "p", {})
    with pytest.raises(PipelineError, match="checkpoint_every is 2, but no default DVC remote is set"):
        RemoteCheckpoints.open(project, "f" * 64, 2, tmp_path)
    run([*DVC, "remote", "add", "-d", "gcs", "gs://your-team-bucket/yolopipe"], project)
    with pytest.raises(PipelineError, match="is the placeholder"):
        RemoteCheckpoints.open(project, "f" * 64, 2, tmp_path)
    assert RemoteCheckpoints.open(project, "f" * 64, 0, tmp_path) is None  # off: no remote needed


@pytest.mark.slow
def test_killed_machine_resumes_on_a_second_one_through_the_remote(s3_server, tiny_dataset, tmp_path):
    origin = origin_project(tmp_path / "origin", {"data": {"root": str(tiny_dataset)},
                                                  "train": {**FIVE_EPOCHS, "checkpoint_every": 1}})
    bucket = s3_server.make_bucket()
    s3_server.configure(origin, bucket)
    commit(origin)
    env = {**os.environ, **s3_server.client_env()}
    first, second = tmp_path / "first", tmp_path / "second"
    for machine in (first, second):
        run(["git", "clone", "-q", str(origin), str(machine)], tmp_path)
        s3_server.configure(machine, bucket)  # per-machine settings (config.local) are not cloned
        run([*YOLOPIPE, "stage"], machine, env)

    training = subprocess.Popen([*YOLOPIPE, "train"], cwd=first, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []  # read in a thread: the line comes just after the object lands on the remote
    reader = threading.Thread(target=lambda: lines.extend(training.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("checkpoint uploaded to s3://" in line for line in list(lines)):
        assert training.poll() is None or reader.is_alive(), "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.2)
    assert any(key.endswith("/last.pt") for key in s3_server.checkpoint_keys(bucket))
    training.kill()  # kill -9, and the machine's disk goes with it
    training.wait()
    reader.join()
    shutil.rmtree(first)

    resumed = run([*YOLOPIPE, "train"], second, env).stdout
    assert f"fetched this run's checkpoint from s3://{bucket}/yolopipe/{PREFIX}/" in resumed
    assert "resuming from models/last.pt at epoch " in resumed and "trained 5 epochs (resumed at epoch" in resumed
    steps = (second / "results" / "train" / "plots" / "metrics" / "val" / "mAP50.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[0] for row in steps] == ["0", "1", "2", "3", "4"]  # the first machine's curves too
    assert torch.load(second / "models" / "last.pt", weights_only=False)["epoch"] == -1  # finished
    assert s3_server.checkpoint_keys(bucket) == []  # a finished run's checkpoint is deleted
