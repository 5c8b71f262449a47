"""scripts/bootstrap.sh, as far as this machine allows: the dry run changes nothing, the credential step writes
the same untracked config.local however often it runs, and a re-run keeps the first run's staging directory.
(Installing Python from apt and training on a GPU box are not tried here.)"""

import os
import sys
from pathlib import Path

import pytest

from conftest import copy_project, run, tree_digest

SCRIPT = ["bash", "scripts/bootstrap.sh"]


@pytest.fixture
def box(tmp_path) -> tuple[Path, dict]:
    """A fresh clone on the box, with the shared environment standing in for the venv the script would make."""
    project = copy_project(tmp_path / "clone", {})
    env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent)}
    for name in ("YOLOPIPE_STAGE_DIR", "GOOGLE_APPLICATION_CREDENTIALS", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"):
        env.pop(name, None)
    key = tmp_path / "keys" / "yolopipe-ci.json"
    key.parent.mkdir()
    key.write_text('{"type": "service_account"}')
    return project, env


def test_dry_run_prints_the_plan_and_changes_nothing(box):
    project, env = box
    before = tree_digest(project)
    result = run([*SCRIPT, "--dry-run", "--key", "../keys/yolopipe-ci.json"], project, env)
    key = (project.parent / "keys" / "yolopipe-ci.json").resolve()
    lines = result.stdout.splitlines()
    assert lines[0] == "bootstrap: dry run: nothing is installed, written or run"
    assert f"  would run: dvc remote modify --local gcs credentialpath {key}" in lines
    assert "  would run: yolopipe remote check --read-only" in lines
    assert any(line.startswith("bootstrap: stage-dir: ") for line in lines)
    assert lines[-4:-1] == ["  would run: dvc pull --allow-missing", "  would run: dvc repro",
                            "  would run: dvc push"]
    assert tree_digest(project) == before
    assert not (project / ".dvc" / "config.local").exists() and not (project / ".yolopipe").exists()


def test_credentials_step_is_idempotent_and_writes_only_the_untracked_file(box):
    project, env = box
    tracked = (project / ".dvc" / "config").read_text()
    run([*SCRIPT, "--only", "credentials", "--key", "../keys/yolopipe-ci.json"], project, env)
    first = (project / ".dvc" / "config.local").read_text()
    run([*SCRIPT, "--only", "credentials", "--key", "../keys/yolopipe-ci.json"], project, env)
    assert (project / ".dvc" / "config.local").read_text() == first
    key = (project.parent / "keys" / "yolopipe-ci.json").resolve()
    assert first == f"['remote \"gcs\"']\n    credentialpath = {key}\n"  # absolute: any working directory
    assert (project / ".dvc" / "config").read_text() == tracked
    assert run(["git", "check-ignore", ".dvc/config.local"], project).returncode == 0


def test_a_rerun_stages_where_the_first_run_did(box):
    project, env = box
    (project / ".yolopipe").mkdir()
    (project / ".yolopipe" / "stage-dir").write_text("/mnt/nvme/yolopipe-stage\n")
    result = run([*SCRIPT, "--dry-run", "--only", "stage-dir"], project, env)
    assert result.stdout.splitlines()[1:] == [
        "bootstrap: stage-dir: /mnt/nvme/yolopipe-stage, picked by the first run (.yolopipe/stage-dir)"]


def test_bad_arguments_and_a_missing_key_fail_with_a_reason(box):
    project, env = box
    unknown = run([*SCRIPT, "--only", "training"], project, env, check=False)
    assert unknown.returncode == 2 and "unknown step 'training'; steps: system venv" in unknown.stderr
    missing = run([*SCRIPT, "--only", "credentials", "--key", "nowhere.json"], project, env, check=False)
    assert missing.returncode == 1 and "bootstrap: error: key file nowhere.json not found" in missing.stderr
    assert not (project / ".dvc" / "config.local").exists()


@pytest.mark.slow
def test_pipeline_step_twice_pushes_once_and_redoes_nothing(box, tmp_path, tiny_dataset):
    """The pipeline step for real, against a local remote, with tiny params and data: the second run (a re-run
    after a reboot) pulls, finds every stage unchanged and pushes nothing new."""
    project, env = box
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 40", "epochs: 2").replace("imgsz: 160", "imgsz: 64")
                      .replace("root: data/sample", f"root: {tiny_dataset}"))
    run(["dvc", "remote", "add", "--local", "-d", "box", str(tmp_path / "remote")], project, env)
    env["YOLOPIPE_STAGE_DIR"] = str(tmp_path / "nvme")
    first = run([*SCRIPT, "--only", "pipeline"], project, env)
    assert "+ dvc repro" in first.stdout and "Running stage 'train'" in first.stdout
    assert (project / "data" / "staged").is_symlink()
    assert Path(os.readlink(project / "data" / "staged")).is_relative_to(tmp_path / "nvme")
    pushed = sorted((tmp_path / "remote").rglob("*"))
    second = run([*SCRIPT, "--only", "pipeline"], project, env)
    assert "Running stage" not in second.stdout
    for stage in ("validate", "stage", "train", "evaluate", "export"):
        assert f"Stage '{stage}' didn't change, skipping" in second.stdout
    assert sorted((tmp_path / "remote").rglob("*")) == pushed
