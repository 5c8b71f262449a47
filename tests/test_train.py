import json
import socket

import pytest
import torch

from yolopipe.errors import PipelineError
from yolopipe.params import TrainParams
from yolopipe.train import resolve_model


def test_trained_model_and_dvclive_logs(trained):
    assert trained.result.best.is_file() and trained.result.last.is_file()
    assert trained.result.epochs == 2
    metrics = json.loads((trained.live_dir / "metrics.json").read_text())
    assert metrics["step"] == 1  # dvclive counts steps from 0
    assert {"mAP50", "mAP50-95", "precision", "recall"} <= set(metrics["val"])
    for curve in ("train/box_loss.tsv", "val/mAP50.tsv", "lr/pg0.tsv"):
        rows = (trained.live_dir / "plots" / "metrics" / curve).read_text().splitlines()
        assert rows[0].startswith("step\t") and len(rows) == 3, curve  # header + one row per epoch
    args = (trained.models_dir / "train_args.yaml").read_text()
    assert "epochs: 2" in args


def test_ultralytics_touches_nothing_outside_our_directories(trained):
    # Its DVC callback would have written dvc.yaml and dvclive/ into the working directory.
    assert sorted(p.name for p in trained.workdir.iterdir()) == ["live", "models", "scratch", "staged"]
    # Label caches go into the staged copy, which is the only dataset training saw.
    assert list((trained.workdir / "staged" / "labels").glob("*.cache"))


def test_same_seed_same_weights(trained, tmp_path, monkeypatch):
    """On CPU with train.deterministic, a rerun reproduces the weights exactly."""
    from yolopipe.train import train

    monkeypatch.chdir(tmp_path)

    again = train(trained.params, trained.data_yaml, tmp_path / "models", tmp_path / "live", trained.scratch)
    ours, theirs = (torch.load(p, weights_only=False)["model"].state_dict() for p in
                    (trained.result.best, again.best))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert again.metrics == trained.result.metrics


def test_missing_pretrained_weights_fail_without_a_download(tmp_path, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(PipelineError) as error:
        resolve_model(str(tmp_path / "yolo11n.pt"))
    assert "dvc add" in str(error.value) and "never downloads" in str(error.value)
    with pytest.raises(PipelineError, match="model .yaml or a local .pt"):
        resolve_model("yolo11n")
    assert attempts == []


def test_model_yaml_is_built_from_scratch():
    assert resolve_model(TrainParams().model) == "yolo11n.yaml"


def test_checkpoints_hold_no_absolute_paths_of_this_machine(trained):
    """An absolute path inside best.pt would change its hash in every clone and dirty dvc.lock."""
    for weights in (trained.result.best, trained.result.last):
        assert str(trained.workdir).encode() not in weights.read_bytes(), weights.name
        checkpoint = torch.load(weights, weights_only=False)
        assert "date" not in checkpoint and "git" not in checkpoint
        assert "time" not in checkpoint["train_results"]
