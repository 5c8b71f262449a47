"""The model registry on real GTO tags, a real DVC pipeline and a real local-directory DVC remote.

The project's one stage writes stand-in files (bytes, not a trained network) under the paths and in the
formats yolopipe's pipeline writes: the registry only reads dvc.lock, the card and the export metrics, so
real weights would only slow these tests. dvc.yaml's `artifacts:` and `.gto` are this repository's own."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from yolopipe.cli import main
from yolopipe.errors import PipelineError
from yolopipe.registry import fetch, promote, stage_model
from yolopipe.report import write_report

from conftest import GIT, REPO, run

DVC = [sys.executable, "-m", "dvc"]
YOLOPIPE = [sys.executable, "-m", "yolopipe.cli"]

MAKE_MODEL = """\
import json, pathlib, yaml
fake = yaml.safe_load(open("fake.yaml"))
for folder in ("models", "results/export"):
    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
pathlib.Path("models/best.pt").write_bytes(b"weights %d" % fake["seed"])
pathlib.Path("models/best.onnx").write_bytes(b"onnx %d" % fake["seed"])
metrics = {} if fake["no_metrics"] else {"mAP50-95": fake["map"], "mAP50": fake["map"] + 0.1}
card = {"model": {"file": "best.pt"}, "dataset": {"md5": "7f9b8c3b5f8f38268030d5c6322e52f4.dir"},
        "metrics": metrics}
pathlib.Path("models/model_card.json").write_text(json.dumps(card))
parity = {"onnx/max_abs_diff": fake["diff"], "onnx/images": 8, "onnx/mismatched_images": fake["mismatched"]}
pathlib.Path("results/export/metrics.json").write_text(json.dumps(parity))
"""
GOOD = {"seed": 1, "map": 0.5, "diff": 1e-6, "mismatched": 0, "no_metrics": False}


def git(project, *args: str) -> str:
    return run([*GIT, *args], project).stdout.strip()


def make_project(root, remote):
    """A git + DVC project with this repository's artifacts and stages, its model made by one real stage."""
    artifacts = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]
    outs = ["models/best.pt", "models/best.onnx", "models/model_card.json", "results/export/metrics.json"]
    assert {a["path"] for a in artifacts.values()} <= set(outs)
    root.mkdir()
    run(["git", "init", "-q", "-b", "main"], root)
    run([*DVC, "init", "-q"], root)
    run([*DVC, "config", "core.analytics", "false"], root)
    (root / ".gto").write_text((REPO / ".gto").read_text())
    (root / "make_model.py").write_text(MAKE_MODEL)
    (root / "params.yaml").write_text(yaml.safe_dump({"export": {"max_abs_diff": 1e-4}}))
    (root / "dvc.yaml").write_text(yaml.safe_dump({
        "stages": {"model": {"cmd": f"{sys.executable} make_model.py", "deps": ["make_model.py"],
                             "params": [{"fake.yaml": None}], "outs": outs}},
        "artifacts": artifacts}, sort_keys=False))
    run([*DVC, "remote", "add", "-d", "-q", "local", str(remote)], root)
    return root


def new_model(project, push: bool = True, **fake) -> str:
    """Reproduce the stage with these figures, commit, push the objects; returns the commit."""
    (project / "fake.yaml").write_text(yaml.safe_dump({**GOOD, **fake}))
    run([*DVC, "repro", "-q"], project)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", f"model {fake}")
    if push:
        run([*DVC, "push", "-q"], project)
    return git(project, "rev-parse", "HEAD")


@pytest.fixture
def project(tmp_path, monkeypatch):
    project = make_project(tmp_path / "project", tmp_path / "remote")
    monkeypatch.chdir(project)
    return project


def tags(project) -> list[str]:
    return git(project, "tag").split()


def test_promote_then_fetch_by_stage_in_a_fresh_directory(project, tmp_path, netguard_env):
    env, netlog = netguard_env
    first = new_model(project)
    origin = tmp_path / "origin.git"
    run(["git", "clone", "-q", "--bare", str(project), str(origin)], tmp_path)
    git(project, "remote", "add", "origin", str(origin))

    result = run(YOLOPIPE + ["promote", "--stage", "staging", "--push"], project, env)
    assert f"yolo-detector v0.0.1 is now staging: commit {first[:7]}, mAP50-95 0.5000" in result.stdout
    assert "dataset md5 7f9b8c3b5f8f38268030d5c6322e52f4.dir" in result.stdout
    assert sorted(tags(project)) == sorted(git(project, "ls-remote", "--tags", "--refs", "-q", str(origin))
                                           .replace("refs/tags/", "").split()[1::2])  # --push pushed them
    second = new_model(project, seed=2, map=0.6)
    git(project, "push", "-q", "origin", "main")
    assert "yolo-detector v0.0.2 is now staging" in run(YOLOPIPE + ["promote", "--stage", "staging", "--push"],
                                                         project, env).stdout
    assert "v0.0.1 is now prod" in run(YOLOPIPE + ["promote", "--stage", "prod", "--rev", first, "--push"],
                                       project, env).stdout

    clean = tmp_path / "deploy"
    clean.mkdir()
    # The documented one-liner, on a machine with nothing but the repository's URL.
    run(DVC + ["artifacts", "get", str(origin), "yolo-detector", "--stage", "prod", "-o", "prod.pt"], clean, env)
    assert (clean / "prod.pt").read_bytes() == b"weights 1"
    run(DVC + ["artifacts", "get", str(origin), "yolo-detector-onnx", "--stage", "staging"], clean, env)
    assert (clean / "best.onnx").read_bytes() == b"onnx 2"
    fetched = run(YOLOPIPE + ["fetch", "--repo", str(origin), "--stage", "staging", "-o", "staging"], clean, env)
    assert f"yolo-detector v0.0.2 (commit {second[:7]})" in fetched.stdout
    assert sorted(p.name for p in (clean / "staging").iterdir()) == ["best.onnx", "best.pt", "model_card.json"]
    assert (clean / "staging" / "best.pt").read_bytes() == b"weights 2"
    assert json.loads((clean / "staging" / "model_card.json").read_text())["metrics"]["mAP50-95"] == 0.6
    assert netlog.read_text() == ""  # GTO, DVC and yolopipe stayed offline


def test_versions_bump_the_patch_and_a_stage_moves_back_on_rollback(project):
    first = new_model(project)
    assert promote(project, "prod", version="v1.2.0").version == "v1.2.0"
    new_model(project, seed=2)
    assert promote(project, "prod").version == "v1.2.1"
    again = promote(project, "prod")
    assert again.tags == [] and "already is prod" in again.summary
    rollback = promote(project, "prod", rev=first)
    assert (rollback.version, rollback.commit) == ("v1.2.0", first)
    assert fetch(".", project / "deploy", stage="prod").commit == first
    with pytest.raises(PipelineError, match="would overwrite .*best.pt"):
        fetch(".", project / "deploy", version="v1.2.1")
    assert fetch(".", project / "deploy", version="v1.2.1", force=True).version == "v1.2.1"
    assert (project / "deploy" / "best.pt").read_bytes() == b"weights 2"
    with pytest.raises(PipelineError, match="registered as yolo-detector v1.2.0 already, not v2.0.0"):
        promote(project, "dev", version="v2.0.0", rev=first)


def test_promote_an_experiment_by_name(project, tmp_path):
    new_model(project)
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    git(project, "remote", "add", "origin", str(origin))
    run(DVC + ["exp", "run", "-q", "-n", "bigger", "-S", "fake.yaml:map=0.7", "-S", "fake.yaml:seed=3"], project)
    with pytest.raises(PipelineError, match="lacks the model of commit"):
        promote(project, "dev", rev="bigger")  # its outputs are only in the local cache so far
    run(DVC + ["exp", "push", "origin", "bigger"], project)  # the git ref to origin, the outputs to the remote
    result = promote(project, "dev", rev="bigger")
    assert (result.version, result.quality.map50_95) == ("v0.0.1", 0.7)
    assert result.commit != git(project, "rev-parse", "HEAD")
    fetched = fetch(".", tmp_path / "deploy", stage="dev")
    assert (tmp_path / "deploy" / "best.pt").read_bytes() == b"weights 3" and fetched.commit == result.commit


@pytest.mark.parametrize(("fake", "message"), [
    ({"mismatched": 2}, "export parity failed at commit .*: onnx has 2 images with other detections"),
    ({"diff": 3e-4}, r"onnx .* max \|diff\| 3.00e-04 \(export.max_abs_diff 1e-04\)"),
    ({"no_metrics": True}, r"model card at commit .* has no evaluate metrics \(mAP50-95 missing\)"),
])
def test_promote_refuses_a_model_that_failed_its_checks(project, fake, message):
    new_model(project, **fake)
    with pytest.raises(PipelineError, match=message):
        promote(project, "staging")
    assert tags(project) == []


def test_promote_refuses_unknown_stages_and_uncommitted_changes(project, capsys):
    new_model(project)
    assert main(["promote", "--stage", "production"]) == 1
    assert "unknown stage 'production'; allowed: dev, staging, prod" in capsys.readouterr().err
    (project / "params.yaml").write_text(yaml.safe_dump({"export": {"max_abs_diff": 1.0}}))
    with pytest.raises(PipelineError, match=r"uncommitted changes \(params.yaml\)"):
        promote(project, "staging")
    git(project, "checkout", "params.yaml")
    with pytest.raises(PipelineError, match="--push needs a git remote named origin"):
        promote(project, "staging", push=True)
    (project / "models" / "best.pt").unlink()
    (project / "models" / "best.pt").write_bytes(b"trained outside dvc repro")
    with pytest.raises(PipelineError, match="models/best.pt in the workspace is not the one dvc.lock records"):
        promote(project, "staging")
    with pytest.raises(PipelineError, match="not a semantic version"):
        promote(project, "staging", version="1.0")
    assert tags(project) == []


def test_a_model_missing_from_the_remote_is_named_by_path_and_md5(project, tmp_path):
    new_model(project, push=False)
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["model"]["outs"]
    md5 = {out["path"]: out["md5"] for out in lock}
    with pytest.raises(PipelineError, match=f"models/best.pt \\(artifact yolo-detector, md5 {md5['models/best.pt']}"):
        promote(project, "staging")
    assert tags(project) == []

    # A tag made anyway (plain GTO, or a push of the objects that never happened) names a commit whose
    # objects are on no remote; a fresh clone has no cache to fall back on.
    run([str(Path(sys.executable).parent / "gto"), "assign", "yolo-detector", "--stage", "prod"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    with pytest.raises(PipelineError, match=f"lacks the model of commit .*md5 {md5['models/best.pt']}"):
        fetch(str(clone), tmp_path / "deploy", stage="prod")
    assert not (tmp_path / "deploy").exists()


def test_the_report_resolves_prod_through_the_registry(project, tmp_path):
    new_model(project, map=0.42)
    assert stage_model(".", "prod") is None
    assert "None: no model is in stage `prod`" in write_report(None, [], tmp_path / "r.md").path.read_text()
    promote(project, "prod")
    clone = tmp_path / "clone"  # no cache: the card comes from the DVC remote
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    deployed = stage_model(str(clone), "prod")
    assert (deployed.version, deployed.commit, deployed.metrics["mAP50-95"]) == (
        "v0.0.1", git(project, "rev-parse", "HEAD"), 0.42)
    text = write_report(None, [], tmp_path / "report.md").path.read_text()
    assert "`prod` is yolo-detector v0.0.1" in text and "| `mAP50-95` | — | 0.42 | — |" in text
