"""The stage inside `dvc repro`: a second machine restages without retraining, and damage is noticed."""

import os

import pytest

from conftest import GIT, TINY_TRAIN, copy_project, guarded_env, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """A project reproduced and pushed to a local DVC remote, and a second clone of it after `dvc pull`
    with its own staging directory (another machine's local disk)."""
    first = copy_project(tmp_path_factory.mktemp("first"), {"train": TINY_TRAIN})
    env, _ = guarded_env(tmp_path_factory.mktemp("netguard"))
    remote = tmp_path_factory.mktemp("remote")
    run(["dvc", "remote", "add", "-q", "-d", "local", str(remote)], first, env)
    run(["dvc", "repro"], first, env)
    run(["dvc", "push", "-q"], first, env)
    run(["git", "add", "-A"], first)
    run([*GIT, "commit", "-q", "-m", "reproduced"], first)
    second = tmp_path_factory.mktemp("second") / "clone"
    run(["git", "clone", "-q", str(first), str(second)], first)
    run(["dvc", "pull", "-q"], second, env)
    second_env = {**env, "YOLOPIPE_STAGE_DIR": str(tmp_path_factory.mktemp("nvme"))}
    out = run(["dvc", "repro"], second, second_env).stdout
    return first, second, second_env, out


def test_new_machine_stages_and_does_not_retrain(machines):
    _, second, env, out = machines
    assert "Running stage 'stage'" in out
    for name in ("validate", "train", "evaluate", "export"):
        assert f"Running stage '{name}'" not in out, out
    assert (second / "data" / "staged").is_symlink()
    assert os.path.realpath(second / "data" / "staged").startswith(env["YOLOPIPE_STAGE_DIR"])
    assert (second / "models" / "best.pt").is_file()  # from the remote
    # The staging directory is not recorded: dvc.lock is byte for byte the first machine's.
    assert run(["git", "status", "--porcelain"], second).stdout == ""
    assert "up to date" in run(["dvc", "status"], second, env).stdout


def test_damaged_copy_is_noticed_and_restaged_before_training(machines):
    _, second, env, _ = machines
    staged = second / "data" / "staged"
    image = sorted((staged / "images" / "train").iterdir())[0]
    image.write_bytes(image.read_bytes()[:50])  # truncated
    sorted((staged / "labels" / "val").glob("*.txt"))[0].unlink()  # missing
    assert "modified" in run(["dvc", "status", "stage"], second, env).stdout
    out = run(["dvc", "repro"], second, env).stdout
    assert "Running stage 'stage'" in out and "2 written" in out
    assert "Running stage 'train'" not in out  # the repaired copy has the recorded hash
    assert run(["git", "status", "--porcelain"], second).stdout == ""
    again = run(["dvc", "repro"], second, env).stdout
    assert "Running stage" not in again
