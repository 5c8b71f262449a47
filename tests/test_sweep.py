"""`yolopipe sweep`: the space is checked before any trial, then real sweeps on a local Ray (2 CPUs) whose
trials are real `dvc exp run`s of this project on a tiny dataset."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from yolopipe.errors import PipelineError
from yolopipe.sweep.config import load_sweep
from yolopipe.sweep.trial import read_series

from conftest import GIT, TINY_TRAIN, copy_project, guarded_env, run

YOLOPIPE = [sys.executable, "-m", "yolopipe.cli"]


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_unknown_key_fails_before_any_trial_naming_it(tmp_path):
    sweep = _write(tmp_path / "sweep.yaml", {"space": {"train.lr0": {"loguniform": [1e-4, 0.1]},
                                                       "train.lr00": {"choice": [0.1]}}})
    with pytest.raises(PipelineError, match=r"(?s)space\.train\.lr00 .*unknown key; did you mean 'lr0'"):
        load_sweep(sweep, Path("params.yaml"))


@pytest.mark.parametrize(("space", "message"), [
    ({"trian.lr0": {"grid": [0.1]}}, r"trian: unknown key"),
    ({"train.imgsz": {"grid": [64, 100]}}, r"(?s)train\.imgsz = 100 .*multiple of 32"),
    ({"train.epochs": {"uniform": [2, 8]}}, r"(?s)train\.epochs = .*valid integer"),  # a draw would be 4.22
    ({"train.lr0": {"loguniform": [0, 1]}}, r"low must be above 0"),
    ({"train.lr0": {"normal": [0, 1]}}, r"exactly one of grid, choice, uniform, loguniform"),
    ({"lr0": {"grid": [0.1]}}, r"expected section\.key"),
])
def test_bad_space_names_the_key(tmp_path, space, message):
    with pytest.raises(PipelineError, match=message):
        load_sweep(_write(tmp_path / "sweep.yaml", {"space": space}), Path("params.yaml"))


def test_bad_metric_or_searcher_mix_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="metric 'mAP50-95' is not a per-epoch"):
        load_sweep(_write(tmp_path / "a.yaml", {"space": {"train.lr0": {"grid": [0.1]}}, "metric": "mAP50-95"}))
    with pytest.raises(PipelineError, match="optuna cannot take"):
        load_sweep(_write(tmp_path / "b.yaml", {"space": {"train.lr0": {"grid": [0.1]}}, "searcher": "optuna"}))


def test_cli_reports_the_error_without_traceback(tmp_path):
    sweep = _write(tmp_path / "sweep.yaml", {"space": {"train.epoch": {"grid": [1]}}})
    result = run([*YOLOPIPE, "sweep", str(sweep)], Path(__file__).parents[1], check=False)
    assert result.returncode == 1
    assert "train.epoch: unknown key; did you mean 'epochs'" in result.stderr
    assert "Traceback" not in result.stderr


def test_read_series_skips_the_line_being_written(tmp_path):
    tsv = tmp_path / "pg0.tsv"
    tsv.write_text("timestamp\tstep\tpg0\n1\t0\t0.5\n2\t1\t0.25\n3\t2\t0.1")  # the last row has no newline yet
    assert read_series(tsv) == [(1, 0.5), (2, 0.25)]
    assert read_series(tmp_path / "missing.tsv") == []


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """This repository with a tiny dataset in git, 4 SGD epochs at imgsz 64, committed."""
    env, log = guarded_env(tmp_path_factory.mktemp("netguard"))
    root = copy_project(tmp_path_factory.mktemp("sweep"),
                        {"train": {**TINY_TRAIN, "epochs": 4, "optimizer": "SGD"}, "data": {"root": "data/tiny"}})
    run([*YOLOPIPE, "synth", "data/tiny", "--train", "16", "--val", "8", "--test", "8",
         "--width", "64", "--height", "64", "--seed", "1"], root, env)
    # This repository's dvc.lock names outputs this copy's cache does not have (`dvc exp show` would look for
    # them on the placeholder remote): the baseline is a commit that was never reproduced.
    (root / "dvc.lock").unlink()
    run(["git", "add", "-A"], root)
    run([*GIT, "commit", "-q", "-m", "tiny sweep project"], root)
    return root, env, log


# Ray's usage-stats module (the one process include_dashboard=False still starts) asks the cloud metadata
# servers which cloud it is on, even with usage stats off; it sends nothing and fails harmlessly offline.
RAY_CLOUD_PROBES = {"getaddrinfo 169.254.169.254", "getaddrinfo metadata.google.internal"}


def _refused(log: Path) -> set[str]:
    return {line.split(" ", 1)[1] for line in log.read_text().splitlines()}


def _experiments(root: Path, env: dict) -> dict[str, dict]:
    """name -> {params, metrics} of every experiment `dvc exp show` lists."""
    rows = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    found = {}
    for row in rows:
        for exp in row.get("experiments") or []:
            rev = exp["revs"][0]
            data = rev.get("data") or {}
            params = data.get("params", {}).get("params.yaml", {}).get("data", {})
            metrics = {path: value.get("data", {}) for path, value in (data.get("metrics") or {}).items()}
            found[exp.get("name") or rev["name"]] = {"params": params, "metrics": metrics}
    return found


@pytest.mark.slow
def test_asha_stops_two_of_four_trials_and_all_four_are_experiments(project):
    """The metric is the weight group's learning rate, lr/pg0, which during warmup is train.lr0 times a
    factor that depends only on the iteration: a real per-epoch dvclive series whose ranking is known in
    advance, so ASHA's decisions are too. The grid crosses lr0 with train.deterministic (which leaves the
    schedule alone); Tune varies the first key fastest, so the two lr0=0.01 trials run side by side first and
    tie at epoch 1 (ASHA stops only below the median), then the two lr0=0.0005 trials fall below it and are
    stopped at epoch 1. Training waits at each epoch for ASHA's decision, so they end after exactly 1 epoch
    however loaded the machine is."""
    root, env, log = project
    sweep = _write(root / "sweep.yaml", {
        "name": "lr", "space": {"train.deterministic": {"grid": [True, False]},
                                "train.lr0": {"grid": [0.01, 0.0005]}},
        "searcher": "grid", "metric": "lr/pg0", "mode": "max", "scheduler": "asha", "grace_period": 1,
        "reduction_factor": 2, "max_concurrent": 2, "cpus_per_trial": 1})
    result = run([*YOLOPIPE, "sweep", str(sweep)], root, env)
    printed = result.stdout
    experiments = _experiments(root, env)
    ours = [exp for name, exp in experiments.items() if name.startswith("lr-")]
    assert len(ours) == 4, (printed, experiments)
    assert sorted((exp["params"]["train"]["lr0"], exp["params"]["train"]["deterministic"]) for exp in ours) == \
        [(0.0005, False), (0.0005, True), (0.01, False), (0.01, True)]
    for exp in ours:
        lr, summary = exp["params"]["train"]["lr0"], exp["metrics"]["results/train/metrics.json"]
        if lr == 0.01:
            assert summary["epochs_completed"] == 4 and summary["stopped_early"] == 0, (lr, summary)
        else:
            assert summary["epochs_completed"] == 1 and summary["stopped_early"] == 1, (lr, summary)
        assert "mAP50-95" in exp["metrics"]["results/evaluate/metrics.json"]  # evaluate ran: a whole experiment
    summary = printed[printed.index("sweep lr: 4 trials"):]  # after Tune's progress tables
    assert summary.count(" stopped early ") == 2 and summary.count(" completed ") == 2, summary
    assert "train.lr0=0.01" in summary.split("best:")[1], summary
    assert _refused(log) <= RAY_CLOUD_PROBES, "a trial tried to reach the network"


def _parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
def test_a_crash_is_recorded_failed_and_a_killed_worker_is_retried_and_the_sweep_goes_on(project):
    """Two bad trials in one sweep (one Ray start-up for both): one crashes (a model file that does not exist)
    and is recorded failed with its log path; the Ray worker of the other is SIGKILLed while it trains, and
    Tune retries it (max_failures 1): the retry stops the orphaned `dvc exp run` first, and the project holds
    exactly one whole experiment, the retried one's."""
    root, env, _ = project
    sweep = _write(root / "bad.yaml", {
        "name": "bad", "space": {"train.model": {"grid": ["yolo11n.yaml", "no-such-model.yaml"]},
                                 "train.epochs": {"grid": [2]}},
        "searcher": "grid", "metric": "val/mAP50", "max_concurrent": 2, "max_failures": 1})
    process = subprocess.Popen([*YOLOPIPE, "sweep", str(sweep)], cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    trials = root / ".yolopipe" / "sweeps" / "bad"
    deadline, killed = time.monotonic() + 300, None
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        for pgid_file in trials.glob("*/pgid"):
            series = pgid_file.parent / "repo" / "results" / "train" / "plots" / "metrics"
            if series.is_dir():  # an epoch is on disk: the good trial's training is under way
                dvc = int(pgid_file.read_text())
                killed = (_parent_pid(dvc), dvc)
                os.kill(killed[0], signal.SIGKILL)
        time.sleep(0.2)
    printed, _ = process.communicate(timeout=900)
    assert killed is not None, printed[-3000:]
    assert process.returncode == 0, printed[-3000:]
    assert not Path(f"/proc/{killed[1]}").exists()  # the first attempt's dvc exp run was stopped, not left running
    summary = printed[printed.index("sweep bad: 2 trials"):]
    failed = [line for line in summary.splitlines() if " failed " in line]
    assert len(failed) == 1 and "no-such-model.yaml" in failed[0] and "dvc exp run exited" in failed[0], summary
    log = Path(failed[0].split("(log: ")[1].rstrip(")"))
    assert log.is_file() and "no-such-model.yaml" in log.read_text()
    assert summary.count(" completed ") == 1 and "model=yolo11n.yaml" in summary.split("best:")[1], summary
    names = [name for name in _experiments(root, env) if name.startswith("bad-")]
    assert len(names) == 1, names  # the retried trial; the crashed one left none
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], root).stdout.split()
    assert sum(ref.endswith("/" + names[0]) for ref in refs) == 1, refs


@pytest.mark.slow
def test_trials_from_a_git_remote_push_refs_and_outputs_that_a_new_clone_pulls(project, tmp_path):
    """As on a cluster's other nodes: the trial clones the commit from `git_remote`, pulls its data from the DVC
    remote, and pushes its experiment ref to the git remote and its outputs to the DVC remote; a fresh clone
    elsewhere then lists it after `dvc exp pull` and restores its weights."""
    root, env, _ = project
    origin, work, store = tmp_path / "origin.git", tmp_path / "work", tmp_path / "dvc-store"
    run(["git", "clone", "-q", "--bare", str(root), str(origin)], tmp_path)
    run(["git", "clone", "-q", str(origin), str(work)], tmp_path)
    run(["dvc", "remote", "add", "-d", "-f", "store", str(store)], work, env)  # in .dvc/config: every node has it
    run(["git", "add", ".dvc/config"], work)
    run([*GIT, "commit", "-q", "-m", "a DVC remote every node reaches"], work)
    run(["git", "push", "-q", "origin", "HEAD"], work)
    sweep = _write(work / "remote.yaml", {"name": "remote", "space": {"train.epochs": {"grid": [1]}},
                                          "searcher": "grid", "metric": "val/mAP50", "git_remote": "origin"})
    printed = run([*YOLOPIPE, "sweep", str(sweep)], work, env).stdout
    assert printed[printed.index("sweep remote: 1 trials"):].count(" completed ") == 1, printed[-3000:]
    refs = run(["git", "ls-remote", str(origin), "refs/exps/*"], tmp_path).stdout
    assert "/remote-" in refs, refs
    name = refs.split("/")[-1].strip()
    assert any(p.is_file() for p in store.rglob("*"))  # the outputs went to the DVC remote

    elsewhere = tmp_path / "elsewhere"
    run(["git", "clone", "-q", str(origin), str(elsewhere)], tmp_path)
    run(["dvc", "exp", "pull", "origin", name], elsewhere, env)
    assert name in _experiments(elsewhere, env)
    run(["dvc", "exp", "apply", name], elsewhere, env)
    assert (elsewhere / "models" / "best.pt").stat().st_size > 100_000  # restored from the DVC remote
