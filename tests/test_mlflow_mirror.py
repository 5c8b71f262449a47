"""The MLflow mirror against a real `mlflow server` on 127.0.0.1 (sqlite store, local artifact directory), and
against a port nothing listens on."""

import csv
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from yolopipe.errors import PipelineError
from yolopipe.params import TrainParams
from yolopipe.train.mlflow_mirror import EXPERIMENT, MlflowMirror

from conftest import TINY_TRAIN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` in its own process group, so teardown stops it and its uvicorn worker together. Shared by
    the module: each test looks only at its own run."""
    tmp_path = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (tmp_path / "mlflow.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", str(tmp_path / "mlflow-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start:\n{(tmp_path / 'mlflow.log').read_text()}") from None
            time.sleep(0.5)
    yield uri
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:  # uvicorn's graceful shutdown can take 20 s on busy cores
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    log.close()


def train_tiny(workdir: Path, dataset: Path, **params):
    from yolopipe.stage import stage
    from yolopipe.train import train

    data_yaml = stage(dataset, workdir / "staged").data_yaml
    return train(TrainParams(**TINY_TRAIN, **params), data_yaml, workdir / "models", workdir / "live",
                 workdir / "scratch")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_training_mirrors_params_epochs_and_weights(mlflow_server, tiny_dataset, tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    result = train_tiny(tmp_path, tiny_dataset, mlflow_uri=mlflow_server)
    assert f"mirrored to MLflow at {mlflow_server}" in capsys.readouterr().out

    client = MlflowClient(tracking_uri=mlflow_server)
    # Only our experiment (and MLflow's Default): Ultralytics' own MLflow callback stayed off.
    assert sorted(e.name for e in client.search_experiments()) == ["Default", EXPERIMENT]
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                                "tags.`yolopipe.resumed_at_epoch` = '0'")
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["imgsz"] == "64"
    assert "mlflow_uri" not in run.data.params
    for name in ("train/box_loss", "val/mAP50-95"):  # every epoch, the figures dvclive logged
        history = client.get_metric_history(run.info.run_id, name)
        with (tmp_path / "live" / "plots" / "metrics" / f"{name}.tsv").open() as tsv:
            logged = [(int(row["step"]), float(row[name.split("/")[1]])) for row in csv.DictReader(tsv, delimiter="\t")]
        assert len(logged) == result.epochs and [m.step for m in history] == [step for step, _ in logged]
        assert [m.value for m in history] == pytest.approx([value for _, value in logged])
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "model")) == [
        "model/best.pt", "model/train_args.yaml"]
    downloaded = Path(client.download_artifacts(run.info.run_id, "model/best.pt", str(tmp_path / "dl")))
    assert md5(downloaded) == md5(result.best)


@pytest.mark.slow
def test_a_dead_server_warns_and_the_training_completes(tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = train_tiny(tmp_path, tiny_dataset, mlflow_uri=dead)
    out = capsys.readouterr().out
    assert f"warning: MLflow mirror at {dead} off for this run" in out and "Connection refused" in out
    assert result.best.is_file() and result.epochs == 2


def test_a_server_that_fails_mid_run_costs_one_warning(mlflow_server, tmp_path, capsys):
    mirror = MlflowMirror.open(mlflow_server, {"epochs": 3}, {})
    mirror.log_epoch({"val/mAP50": 0.5}, 0)
    mirror.log_epoch({"bad key?": float("nan")}, 1)  # MLflow rejects the name: the mirror stops, quietly after
    mirror.log_epoch({"val/mAP50": 0.6}, 2)
    started = time.monotonic()
    mirror.close([tmp_path / "absent.pt"], "FINISHED")
    assert time.monotonic() - started < 60
    out = capsys.readouterr().out
    assert out.count("warning: MLflow mirror") == 1 and mirror.failure
    assert "mirrored to MLflow" not in out


def test_the_uri_holds_no_password():
    with pytest.raises(ValueError, match="must not hold a password"):
        TrainParams(mlflow_uri="http://user:secret@mlflow.internal:5000")
    assert TrainParams().mlflow_uri is None


def test_params_yaml_sets_the_uri(tmp_path):
    from yolopipe.params import load_params

    (tmp_path / "params.yaml").write_text("train:\n  mlflow_uri: http://127.0.0.1:5000\n")
    assert load_params(tmp_path / "params.yaml").train.mlflow_uri == "http://127.0.0.1:5000"
    (tmp_path / "params.yaml").write_text("train:\n  mlflow_uri: https://u:p@host\n")
    with pytest.raises(PipelineError, match="train.mlflow_uri: must not hold a password"):
        load_params(tmp_path / "params.yaml")
