"""End to end: the real `dvc repro` of this repository, offline, in a temporary copy with tiny params."""

import csv
import io
import json

import pytest

from conftest import GIT, TINY_TRAIN, copy_project, run, tree_digest

pytestmark = pytest.mark.slow

OUTPUTS = [
    "results/validate/report.json", "results/validate/metrics.json", "results/validate/class_histogram.csv",
    "data/staged/data.yaml", "models/best.pt", "models/last.pt", "models/train_args.yaml",
    "results/train/metrics.json", "results/train/plots/metrics/val/mAP50.tsv",
    "results/evaluate/metrics.json", "results/evaluate/plots/pr_curves.json",
    "results/evaluate/plots/f1_curves.json", "results/evaluate/plots/confusion.json",
    "results/evaluate/plots/confusion_matrix.png", "results/evaluate/plots/images/test_000000.png",
    "models/best.onnx", "models/model_card.json", "results/export/metrics.json",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """This repository as a user clones it, with tiny training params, committed."""
    root = copy_project(tmp_path_factory.mktemp("project"), {"train": TINY_TRAIN})
    run(["git", "add", "-A"], root)
    run([*GIT, "commit", "-q", "-m", "tiny params"], root)
    return root


@pytest.fixture(scope="module")
def repro(project, tmp_path_factory):
    """`dvc repro` with every non-loopback connection refused and recorded."""
    from conftest import guarded_env

    env, log = guarded_env(tmp_path_factory.mktemp("netguard"))
    dataset_before = tree_digest(project / "data" / "sample")
    dvc_yaml_before = (project / "dvc.yaml").read_text()
    result = run(["dvc", "repro"], project, env)
    return env, log, result, dataset_before, dvc_yaml_before


def test_repro_writes_every_output(project, repro):
    for name in OUTPUTS:
        assert (project / name).is_file(), name
    evaluation = json.loads((project / "results/evaluate/metrics.json").read_text())
    assert {"mAP50", "mAP50-95", "mAP75", "precision", "recall", "AP50/circle"} <= set(evaluation)
    exported = json.loads((project / "results/export/metrics.json").read_text())
    assert exported["onnx/max_abs_diff"] < 1e-4 and exported["onnx/mismatched_images"] == 0
    speed = json.loads((project / "results/export/speed.json").read_text())
    assert speed["onnx/latency_ms"] > 0 and speed["pytorch/latency_ms"] > 0
    assert json.loads((project / "results/evaluate/speed.json").read_text())["speed/inference_ms"] > 0
    steps = (project / "results/train/plots/metrics/val/mAP50.tsv").read_text().splitlines()
    assert len(steps) == 1 + TINY_TRAIN["epochs"]


def test_repro_made_no_network_attempt(repro):
    _, log, _, _, _ = repro
    assert log.read_text() == ""


def test_repro_left_the_dataset_and_dvc_yaml_alone(project, repro):
    _, _, _, dataset_before, dvc_yaml_before = repro
    assert tree_digest(project / "data" / "sample") == dataset_before
    assert not list((project / "data" / "sample").rglob("*.cache"))
    # Ultralytics' own DVC callback would have appended sections to dvc.yaml.
    assert (project / "dvc.yaml").read_text() == dvc_yaml_before
    assert list((project / "data" / "staged" / "labels").glob("*.cache"))  # caches went to the copy


def test_lockdiff_names_what_was_retrained(project, repro):
    """The committed dvc.lock records the full-size training; this copy trained with tiny params, so its
    weights differ from the record (as a fresh clone's on another CPU do) and lockdiff says which."""
    out = run(["yolopipe", "lockdiff"], project, repro[0]).stdout
    assert "models/best.pt" in out and "git checkout dvc.lock" in out
    assert "data/staged" not in out  # the same dataset stages to the same bytes


def test_second_repro_is_a_no_op_and_everything_is_clean(project, repro):
    env = repro[0]
    again = run(["dvc", "repro"], project, env)
    assert "Running stage" not in again.stdout
    assert "up to date" in run(["dvc", "status"], project, env).stdout
    # Every generated file is a DVC output or git-ignored: only the lock file (new hashes) changed.
    changes = run(["git", "status", "--porcelain"], project).stdout.splitlines()
    # (core.autostage stages the lock, as it stages the .gitignore files DVC writes.)
    assert changes in ([], [" M dvc.lock"], ["M  dvc.lock"])


def test_metrics_and_plots_work_without_flags(project, repro):
    env = repro[0]
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], project, env).stdout)
    files = next(iter(metrics.values()))["data"]
    assert {"results/evaluate/metrics.json", "results/train/metrics.json", "results/export/metrics.json",
            "results/validate/metrics.json", "results/evaluate/speed.json", "results/export/speed.json"} <= set(files)
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project, env).stdout)
    assert not plots.get("errors")
    shown = set(plots["data"])
    for plot in ("results/evaluate/plots/pr_curves.json", "results/evaluate/plots/f1_curves.json",
                 "results/evaluate/plots/confusion.json", "results/validate/class_histogram.csv",
                 "results/evaluate/plots/confusion_matrix.png", "results/evaluate/plots/images/test_000000.png"):
        assert plot in shown, plot
    # The per-class curves use the committed template, which colours by class.
    curves = plots["data"]["results/evaluate/plots/pr_curves.json"][0]["content"]
    assert curves["encoding"]["color"]["field"] == "class"


def test_experiment_with_a_changed_param(project, repro):
    env = repro[0]
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-q", "-m", "baseline"], project)
    trained = run(["dvc", "exp", "run", "-n", "one-epoch", "-S", "train.epochs=1"], project, env).stdout
    assert "Running stage 'train'" in trained
    assert "Running stage 'validate'" not in trained  # a train param never re-validates the dataset
    shown = run(["dvc", "exp", "show", "--csv"], project, env).stdout
    # The columns open with the held-out metrics; the dataset's counts are not among them.
    header = next(csv.reader(io.StringIO(shown)))
    # DVC's own columns come first; which of them it prints (State, Executor) depends on the experiments' state.
    dvc_columns = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    metrics_start = next(i for i, column in enumerate(header) if column not in dvc_columns)
    assert header[metrics_start:metrics_start + 4] == ["mAP50-95", "mAP50", "precision", "recall"], header
    assert "validate.passed" in header and "images" not in header and "train_images" not in header
    table = list(csv.DictReader(io.StringIO(shown)))
    experiment = next(row for row in table if row["Experiment"] == "one-epoch")
    assert experiment["train.epochs"] == "1"
    # DVC prefixes a metric with its file only when another file has the same key.
    assert experiment.get("results/evaluate/metrics.json:mAP50", experiment.get("mAP50")) not in ("", None)
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], project, env).stdout)
    epochs = params_diff["params.yaml"]["train.epochs"]
    assert (epochs["old"], epochs["new"]) == (2, 1)
    metrics_diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project, env).stdout)
    assert "results/train/metrics.json" in metrics_diff


def test_validate_params_rerun_validate_but_not_training(project, repro):
    env = repro[0]
    out = run(["dvc", "exp", "run", "-n", "lenient", "-S", "validate.max_bad_fraction=0.5"], project, env).stdout
    assert "Running stage 'validate'" in out
    assert "Running stage 'train'" not in out  # the staged copy is the same bytes, so training is not rerun


def test_forced_rerun_reproduces_every_recorded_hash(project, repro):
    """Running every stage again on the same machine writes the same bytes, so dvc.lock does not change:
    a fresh clone's `dvc repro` leaves `git status` clean (timings live outside DVC's hashes)."""
    env = repro[0]
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-q", "--allow-empty", "-m", "lock"], project)
    rerun = run(["dvc", "repro", "--force"], project, env).stdout
    assert rerun.count("Running stage") == 5
    assert run(["git", "status", "--porcelain"], project).stdout == ""


def test_the_trained_model_is_promoted_and_fetched_by_stage(project, repro, tmp_path):
    """The registry on the pipeline's real outputs: the card and parity figures it checks, and a fetched ONNX
    model that runs in ONNX Runtime with the shapes its card states."""
    import numpy as np
    import onnxruntime

    env = repro[0]
    run(["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], project, env)
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-q", "--allow-empty", "-m", "a local remote"], project)
    run(["dvc", "push", "-q"], project, env)
    promoted = run(["yolopipe", "promote", "--stage", "prod"], project, env).stdout
    card = json.loads((project / "models" / "model_card.json").read_text())
    assert f"mAP50-95 {card['metrics']['mAP50-95']:.4f}, dataset md5 {card['dataset']['md5']}" in promoted

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["yolopipe", "fetch", "--repo", str(clone), "--stage", "prod", "-o", str(tmp_path / "deploy")], tmp_path, env)
    fetched = json.loads((tmp_path / "deploy" / "model_card.json").read_text())
    assert fetched == card
    session = onnxruntime.InferenceSession(str(tmp_path / "deploy" / "best.onnx"))
    (output,) = session.run(None, {session.get_inputs()[0].name: np.zeros(card["input"]["shape"], np.float32)})
    assert list(output.shape) == card["exports"]["onnx"]["output_shape"]
