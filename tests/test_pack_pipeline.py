"""A packed dataset inside `dvc repro`: the shards travel through a DVC remote, and a second clone restages
from them without retraining."""

import pytest

from conftest import GIT, TINY_TRAIN, copy_project, guarded_env, run

pytestmark = pytest.mark.slow


def test_second_clone_pulls_the_shards_restages_and_does_not_retrain(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    copy_project(first, {"train": TINY_TRAIN, "data": {"root": "data/dataset-v1.shards"}})
    env, _ = guarded_env(tmp_path)
    out = run(["yolopipe", "pack", "data/sample", "--out", "data/dataset-v1.shards"], first, env).stdout
    assert "into 1 shards" in out
    run(["dvc", "add", "-q", "data/dataset-v1.shards"], first, env)
    run(["dvc", "remote", "add", "-d", "-q", "local", str(tmp_path / "remote")], first, env)
    repro = run(["dvc", "repro"], first, env).stdout
    assert "Running stage 'train'" in repro
    run(["dvc", "push", "-q"], first, env)
    run(["git", "add", "-A"], first)
    run([*GIT, "commit", "-q", "-m", "reproduced from the packed dataset"], first)

    second = tmp_path / "second"
    run(["git", "clone", "-q", str(first), str(second)], tmp_path)
    run(["dvc", "pull", "-q"], second, env)
    assert (second / "data" / "dataset-v1.shards" / "pack-index.json").is_file()
    out = run(["dvc", "repro"], second, env).stdout
    assert "Running stage 'stage'" in out
    for name in ("validate", "train", "evaluate", "export"):
        assert f"Running stage '{name}'" not in out, out
    assert (second / "data" / "staged" / "images" / "train").is_dir()
    assert run(["git", "status", "--porcelain"], second).stdout == ""  # dvc.lock: the first clone's
    assert "up to date" in run(["dvc", "status"], second, env).stdout
