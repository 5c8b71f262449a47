"""The SageMaker Training Job entry against a fake /opt/ml tree: hyperparameters, channels, the spot resume
from /opt/ml/checkpoints, and what lands in /opt/ml/model. Real DVC, real training, real ONNX Runtime; only
SageMaker itself (which would create the tree and sync it with S3) is not here."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from yolopipe.box.sagemaker import Layout, max_runtime_seconds, overrides, read_hyperparameters
from yolopipe.errors import PipelineError

from conftest import GIT, REPO, copy_project, guarded_env, run

JOB_JSON = REPO / "sagemaker" / "create-training-job.json"
TINY_JOB = {"train.epochs": "5", "train.imgsz": "64", "train.batch": "8", "evaluate.batch": "8"}


def test_layout_follows_the_root_and_sagemakers_variables(tmp_path):
    layout = Layout.from_env({"YOLOPIPE_OPT_ML": str(tmp_path)})
    assert layout == Layout(tmp_path / "input/config/hyperparameters.json", tmp_path / "input/data/dataset",
                            tmp_path / "checkpoints", tmp_path / "model")
    moved = Layout.from_env({"SM_MODEL_DIR": "/m", "SM_CHANNEL_IMAGES": "/d", "YOLOPIPE_CHECKPOINT_DIR": "/c"},
                            channel="images")
    assert (moved.model, moved.dataset, moved.checkpoints) == (Path("/m"), Path("/d"), Path("/c"))
    assert moved.hyperparameters == Path("/opt/ml/input/config/hyperparameters.json")


def test_hyperparameters_become_checked_overrides(tmp_path):
    source = tmp_path / "hyperparameters.json"
    params = REPO / "params.yaml"
    given = {"train.epochs": "7", "train.device": "[0, 1]", "export.formats": '["onnx", "torchscript"]',
             "sagemaker_region": '"eu-west-1"'}
    assert overrides(given, params, source, Path("/opt/ml/input/data/dataset")) == [
        'export.formats=["onnx", "torchscript"]', "train.device=[0, 1]", "train.epochs=7",
        "data.root=/opt/ml/input/data/dataset"]
    assert overrides({"train.max_hours": 2.5}, params, source) == ["train.max_hours=2.5"]  # JSON numbers too
    with pytest.raises(PipelineError, match=r"hyperparameters.json: invalid parameters\n  train.epochs: Input "
                                            r"should be greater than or equal to 1 \(got 0\)"):
        overrides({"train.epochs": "0"}, params, source)
    with pytest.raises(PipelineError, match="train.epoch: unknown key; did you mean 'epochs'"):
        overrides({"train.epoch": "3"}, params, source)
    with pytest.raises(PipelineError, match=r"hyperparameter 'train.device=0,1' is a sweep for `dvc exp run -S`"):
        overrides({"train.device": "0,1"}, params, source)  # DVC would queue two experiments
    with pytest.raises(PipelineError, match="hyperparameter 'epochs' is not a params.yaml key") as bad:
        overrides({"epochs": "3"}, params, source)
    assert bad.value.hint == "name keys section.key, e.g. train.epochs"


def test_hyperparameters_file_absent_or_broken(tmp_path):
    assert read_hyperparameters(tmp_path / "absent.json") == {}
    broken = tmp_path / "hyperparameters.json"
    broken.write_text('{"train.epochs": ')
    with pytest.raises(PipelineError, match=r"hyperparameters.json:1: not valid JSON"):
        read_hyperparameters(broken)


def test_example_job_has_managed_spot_and_a_runtime_that_fits_the_training_budget():
    job = json.loads(JOB_JSON.read_text())
    hours = float(job["HyperParameters"]["train.max_hours"])
    stopping = job["StoppingCondition"]
    assert stopping["MaxRuntimeInSeconds"] == max_runtime_seconds(hours) == 2.5 * 3600 + 1800
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert job["CheckpointConfig"]["S3Uri"].startswith("s3://")
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["dataset"]  # the entry's default channel
    assert overrides(job["HyperParameters"], REPO / "params.yaml", JOB_JSON)  # passes the schema


def _instance(tmp_path: Path, name: str, remote: Path) -> Path:
    """A fresh container's workspace: the repository as the image holds it, no models, a local DVC remote. The
    image was built from a working tree with an uncommitted edit, so `dvc exp run` stashes it, which needs a git
    identity the container does not have."""
    project = copy_project(tmp_path / name, {})
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-q", "-m", "the image's clone"], project)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("patience: 100", "patience: 50"))
    run(["dvc", "remote", "add", "--local", "-d", "box", str(remote)], project)
    return project


def _start(project: Path, env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # a file, not a pipe: DVC and Ultralytics write a lot
        return subprocess.Popen([sys.executable, "-m", "yolopipe.cli", "box", "sagemaker"], cwd=project, env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_spot_interrupted_job_resumes_from_opt_ml_checkpoints(tmp_path, tiny_dataset):
    opt_ml = tmp_path / "opt_ml"
    (opt_ml / "input" / "config").mkdir(parents=True)
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(TINY_JOB))
    shutil.copytree(tiny_dataset, opt_ml / "input" / "data" / "dataset")
    remote = tmp_path / "remote"
    env, netlog = guarded_env(tmp_path)
    env["YOLOPIPE_OPT_ML"] = str(opt_ml)
    (tmp_path / "home").mkdir()  # a fresh container: no git identity for the experiment's commit
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home"), GIT_CONFIG_NOSYSTEM="1")
    mirrored = opt_ml / "checkpoints" / "last.pt"

    first = _instance(tmp_path, "instance-1", remote)
    job = _start(first, env, tmp_path / "job-1.log")
    deadline = time.monotonic() + 600
    while not mirrored.is_file():
        assert job.poll() is None, (tmp_path / "job-1.log").read_text()[-4000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    job.send_signal(signal.SIGTERM)  # SageMaker's spot interruption notice
    assert job.wait(timeout=200) == 143
    log = (tmp_path / "job-1.log").read_text()
    assert "yolopipe train: training interrupted by SIGTERM after" in log
    kept = torch.load(mirrored, weights_only=False)["epoch"] + 1  # epochs the checkpoint holds
    assert 1 <= kept < 5
    assert not (opt_ml / "model").exists()

    second = _instance(tmp_path, "instance-2", remote)  # a new instance: only /opt/ml/checkpoints came back
    assert not (second / "models" / "last.pt").exists()
    job = _start(second, env, tmp_path / "job-2.log")
    assert job.wait(timeout=900) == 0, (tmp_path / "job-2.log").read_text()[-4000:]
    log = (tmp_path / "job-2.log").read_text()
    assert f"yolopipe train: restored models/last.pt from {opt_ml / 'checkpoints'}" in log
    assert f"yolopipe train: resuming from models/last.pt at epoch {kept + 1}" in log
    assert f"trained 5 epochs (resumed at epoch {kept + 1})" in log
    curve = (second / "results/train/plots/metrics/val/mAP50.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[0] for row in curve] == ["0", "1", "2", "3", "4"]  # the curves came back too

    model = opt_ml / "model"
    assert sorted(p.name for p in model.iterdir()) == ["best.onnx", "best.pt", "dvc.lock", "model_card.json",
                                                       "params.yaml"]
    card = json.loads((model / "model_card.json").read_text())
    assert card["model"]["imgsz"] == 64
    assert yaml.safe_load((model / "params.yaml").read_text())["train"]["epochs"] == 5  # the overrides applied
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model / "best.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 64]
    lock = yaml.safe_load((model / "dvc.lock").read_text())
    onnx_md5 = next(o["md5"] for o in lock["stages"]["export"]["outs"] if o["path"] == "models/best.onnx")
    assert (remote / "files" / "md5" / onnx_md5[:2] / onnx_md5[2:]).is_file()  # dvc push ran
    assert netlog.read_text() == ""  # offline: nothing but loopback was tried
