"""`yolopipe report`: the markdown and charts on their own, then a queued sweep of two tiny experiments in a
copy of this repository whose dataset is DVC-tracked and checked out as read-only links."""

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from yolopipe.registry import StageModel
from yolopipe.report import Comparison, render_markdown
from yolopipe.report.charts import EVALUATE_PLOTS, TRAIN_PLOTS, draw_charts

from conftest import GIT, TINY_TRAIN, copy_project, guarded_env, run

YOLOPIPE = [sys.executable, "-m", "yolopipe.cli"]
SWEEP = ["-S", "train.epochs=1", "-S", "train.optimizer=SGD", "-S", "train.lr0=0.001,0.01"]


def _comparison(has_base: bool = True) -> Comparison:
    revs = ["main", "exp-a"] if has_base else ["main"]
    comparison = Comparison(revs, has_base)
    comparison.params = {"train.lr0": {"main": 0.01, "exp-a": 0.001}, "train.imgsz": {"main": 64, "exp-a": 64}}
    evaluation = {"mAP50": {"main": 0.5, "exp-a": 0.625}, "recall": {"main": 0.25, "exp-a": 0.25},
                  "AP50/circle": {"main": 0.75, "exp-a": 0.5}}
    comparison.metrics = {"results/evaluate/metrics.json": evaluation}
    comparison.plots = {
        f"{TRAIN_PLOTS}/train/box_loss.tsv": [{"step": str(s), "box_loss": str(3 - s - i), "rev": rev}
                                              for i, rev in enumerate(revs) for s in range(3)],
        f"{TRAIN_PLOTS}/lr/pg0.tsv": [{"step": "0", "pg0": "0.01", "rev": "main"}],
        f"{EVALUATE_PLOTS}/pr_curves.json": [{"recall": r / 10, "precision": 1 - r / 20, "rev": rev, "class": c}
                   for rev in revs for c in ("all", "circle") for r in range(11)],
    }
    return comparison


def test_markdown_has_param_diff_deltas_and_per_class_rows(tmp_path):
    comparison = _comparison()
    charts = draw_charts(comparison.plots, comparison.revs, tmp_path / "report_charts")
    text = render_markdown(comparison, charts, tmp_path / "report.md")
    assert "| `train.lr0` | 0.01 | 0.001 |" in text
    assert "train.imgsz" not in text  # the same in both: not a difference
    assert "| `mAP50` | 0.5 | 0.625 | +0.125 |" in text
    assert "| `recall` | 0.25 | 0.25 | 0 |" in text
    assert text.index("### Per-class AP") < text.index("| `AP50/circle` | 0.75 | 0.5 | -0.25 |")
    assert "![Training curves](report_charts/training_curves.png)" in text
    assert "![Precision-recall curve](report_charts/pr_curve.png)" in text


def test_charts_are_pngs_and_deterministic(tmp_path):
    comparison = _comparison()
    first = draw_charts(comparison.plots, comparison.revs, tmp_path / "a")
    second = draw_charts(comparison.plots, comparison.revs, tmp_path / "b")
    assert set(first) == {"Training curves", "Precision-recall curve"}
    for title, path in first.items():
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, title
        assert data == second[title].read_bytes(), title


def test_one_revision_says_there_is_no_baseline(tmp_path):
    text = render_markdown(_comparison(has_base=False), {}, tmp_path / "report.md")
    assert "no baseline to compare with" in text
    assert "Δ" not in text and "| `mAP50` | 0.5 |" in text


def test_the_prod_model_stands_beside_base_and_pr(tmp_path):
    comparison = _comparison()
    comparison.registry_stage = "prod"
    comparison.deployed = StageModel("prod", "v0.0.3", "a1b2c3d4e5", {"mAP50": 0.75, "mAP50-95": 0.5})
    text = render_markdown(comparison, {}, tmp_path / "report.md")
    assert "`prod` is yolo-detector v0.0.3 (commit `a1b2c3d`)" in text
    assert "| metric | main | exp-a | prod | Δ exp-a vs prod |" in text
    assert "| `mAP50` | 0.5 | 0.625 | 0.75 | -0.125 |" in text
    comparison.deployed = None
    assert "None: no model is in stage `prod` of the registry" in render_markdown(comparison, {}, tmp_path / "r.md")
    comparison.deployed_problem = "the DVC remote lacks models/model_card.json"
    assert "Could not be read (see Problems below)" in render_markdown(comparison, {}, tmp_path / "r.md")
    comparison.registry_stage = None
    assert "## The `prod` model" not in render_markdown(comparison, {}, tmp_path / "r.md")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, s3_server):
    """A copy of this repository on a DVC-tracked synthetic dataset, linked from the cache, a baseline run by
    `dvc repro`, and two experiments run side by side from the queue (`dvc exp run --queue` +
    `dvc queue start -j 2`), as on a GPU box: the staged copies on a staging disk (YOLOPIPE_STAGE_DIR) and a
    checkpoint uploaded after every epoch to an S3 remote whose endpoint is in config.local."""
    env, log = guarded_env(tmp_path_factory.mktemp("netguard"))
    nvme = tmp_path_factory.mktemp("nvme")
    env = {**env, **s3_server.client_env(), "YOLOPIPE_STAGE_DIR": str(nvme)}
    root = copy_project(tmp_path_factory.mktemp("sweep"), {"train": {**TINY_TRAIN, "checkpoint_every": 1},
                                                           "data": {"root": "data/dataset-v1"}})
    bucket = s3_server.make_bucket()
    s3_server.configure(root, bucket)
    run(["dvc", "config", "cache.type", "reflink,hardlink,symlink"], root, env)
    run([*YOLOPIPE, "synth", "data/dataset-v1", "--train", "24", "--val", "8", "--test", "8",
         "--width", "96", "--height", "96", "--seed", "1"], root, env)
    run(["dvc", "add", "-q", "data/dataset-v1"], root, env)
    run(["dvc", "checkout", "-q", "--relink", "data/dataset-v1.dvc"], root, env)  # links, not copies
    run(["git", "add", "-A"], root)
    run([*GIT, "commit", "-q", "-m", "tiny params, DVC-tracked dataset"], root)
    cache_before = _digest(root / ".dvc" / "cache")
    run(["dvc", "repro"], root, env)
    run(["git", "add", "-A"], root)
    run([*GIT, "commit", "-q", "-m", "baseline"], root)
    queued = run(["dvc", "exp", "run", "--queue", *SWEEP], root, env).stdout
    run(["dvc", "queue", "start", "--jobs", "2"], root, env)
    status = _wait_for_queue(root, env, timeout_s=900)
    return QueuedSweep(root, env, log, cache_before, queued, status, nvme, s3_server, bucket)


@dataclass
class QueuedSweep:
    root: Path
    env: dict
    netguard_log: Path
    cache_before: dict
    queued: str
    status: str
    stage_dir: Path
    store: object
    bucket: str

    def names(self) -> list[str]:
        return re.findall(r"Queued experiment '([^']+)'", self.queued)

    def logs(self, name: str) -> str:
        return run(["dvc", "queue", "logs", name], self.root, self.env).stdout


def _wait_for_queue(root: Path, env: dict, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], root, env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(5)
    logs = run(["dvc", "queue", "logs", "--follow"], root, env, check=False)
    raise AssertionError(f"queue still busy after {timeout_s} s:\n{status}\n{logs.stdout[-3000:]}")


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "runs" not in p.parts}


@pytest.mark.slow
def test_queued_sweep_runs_on_read_only_linked_data(sweep):
    root, log, cache_before, queued, status = sweep.root, sweep.netguard_log, sweep.cache_before, sweep.queued, \
        sweep.status
    assert queued.count("Queued experiment") == 2, queued
    assert status.count("Success") == 2 and "Failed" not in status, status
    image = next((root / "data/dataset-v1/images/train").iterdir())
    assert image.is_symlink() or image.stat().st_nlink > 1  # a link into the cache, not a copy
    assert not os.access(image, os.W_OK) or os.geteuid() == 0  # DVC protects linked files read-only
    assert not image.stat().st_mode & 0o222
    cache_after = _digest(root / ".dvc" / "cache")
    assert {name: cache_after.get(name) for name in cache_before} == cache_before  # cache files unchanged
    assert not list((root / "data/dataset-v1").rglob("*.cache"))  # Ultralytics wrote into the staged copy only
    assert log.read_text() == ""  # no process of the sweep tried to reach the network


@pytest.mark.slow
def test_queue_jobs_stage_apart_upload_checkpoints_and_leave_no_copies_behind(sweep):
    """Two workers at once: each temporary workspace staged into its own folder on the staging disk and
    uploaded a checkpoint after each epoch (the S3 endpoint reached them through config.local, which DVC
    copies into its workspaces); once DVC deleted the workspaces, the next stage removes their copies."""
    names, folders, removed = sweep.names(), set(), 0
    for name in names:
        text = sweep.logs(name)
        removed += sum(int(n) for n in re.findall(r"removed (\d+) cop", text))  # a workspace that had gone
        staged = re.search(r"staged \d+ files .* -> (\S+): \d+ written", text)
        assert staged, text[-3000:]
        folders.add(Path(staged.group(1)))
        assert "checkpoint uploaded" in text, text[-3000:]
    assert len(folders) == 2 and all(folder.parent == sweep.stage_dir for folder in folders), folders
    assert sweep.store.checkpoint_keys(sweep.bucket) == []  # finished runs delete theirs
    printed = run([*YOLOPIPE, "stage"], sweep.root, sweep.env).stdout
    removed += sum(int(n) for n in re.findall(r"removed (\d+) cop", printed))
    assert removed == 2, printed
    own = (sweep.root / "data" / "staged").resolve()
    assert sorted(p.name for p in sweep.stage_dir.iterdir()) == sorted([own.name, own.name + ".owner"])


@pytest.mark.slow
def test_report_compares_the_baseline_with_both_experiments(sweep, tmp_path):
    root, env = sweep.root, sweep.env
    rows = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    names = sorted(exp["name"] for row in rows for exp in (row.get("experiments") or [])
                   for exp in [exp["revs"][0]] if exp.get("name"))
    assert len(names) == 2, rows
    out = tmp_path / "out" / "report.md"
    printed = run([*YOLOPIPE, "report", "--base", "main", "-o", str(out)], root, env).stdout  # default: its exps
    assert "compared main vs" in printed
    text = out.read_text()
    for name in names:
        assert f"`{name}`" in text and f"Δ {name}" in text
    assert "| `train.lr0` | 0.01 |" in text and "| `train.epochs` | 2 | 1 | 1 |" in text
    assert "| `train.optimizer` | auto | SGD | SGD |" in text
    for metric in ("mAP50", "mAP50-95", "precision", "recall"):
        assert f"| `{metric}` |" in text
    assert "### Per-class AP" in text
    charts = sorted((out.parent / "report_charts").glob("*.png"))
    assert [p.name for p in charts] == ["pr_curve.png", "training_curves.png"]
    assert all(p.stat().st_size > 5000 for p in charts)
    assert "dvc_plots" not in os.listdir(root)  # DVC's image copies went to a temporary directory


@pytest.mark.slow
def test_report_on_one_revision_says_so(sweep, tmp_path):
    root, env = sweep.root, sweep.env
    out = tmp_path / "single.md"
    result = run([*YOLOPIPE, "report", "--exp", "main", "-o", str(out)], root, env)
    assert "main alone (no baseline)" in result.stdout
    text = out.read_text()
    assert "no baseline to compare with" in text and "| `mAP50` |" in text and "Δ" not in text
