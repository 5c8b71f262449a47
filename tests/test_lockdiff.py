import yaml

from yolopipe import cli
from yolopipe.lockdiff import lock_diff

from conftest import GIT, run

LOCK = {"schema": "2.0", "stages": {
    "stage": {"cmd": "yolopipe stage", "outs": [{"path": "data/staged", "md5": "a.dir"}]},
    "train": {"cmd": "yolopipe train", "outs": [{"path": "models/best.pt", "md5": "b1"},
                                                 {"path": "models/last.pt", "md5": "c1"}]},
}}


def _committed_project(tmp_path):
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    run(["git", "init", "-q"], tmp_path)
    run(["git", "add", "dvc.lock"], tmp_path)
    run([*GIT, "commit", "-q", "-m", "lock"], tmp_path)
    return tmp_path


def test_names_the_outputs_this_machine_wrote_differently(tmp_path, capsys, monkeypatch):
    project = _committed_project(tmp_path)
    assert lock_diff(project).changed == []
    retrained = yaml.safe_load(yaml.safe_dump(LOCK))
    retrained["stages"]["train"]["outs"][0]["md5"] = "b2"
    (project / "dvc.lock").write_text(yaml.safe_dump(retrained))
    result = lock_diff(project)
    assert result.changed == ["models/best.pt"]
    assert "models/best.pt" in result.summary and "git checkout dvc.lock" in result.summary
    monkeypatch.chdir(project)
    assert cli.main(["lockdiff"]) == 0  # informational: never fails `make demo`
    assert "other bytes than the committed record for models/best.pt" in capsys.readouterr().out


def test_silent_outside_git_or_before_the_first_commit(tmp_path):
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    assert lock_diff(tmp_path).changed == []
