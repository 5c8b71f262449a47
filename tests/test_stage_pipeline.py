"""The stage inside `dvc repro`: a second machine restages without retraining, and damage is noticed.

The two machines share the project's remote on a real server on 127.0.0.1: once GCS (the default), once S3.
"""

import os
import shutil
import uuid

import pytest

from conftest import GIT, TINY_TRAIN, copy_project, guarded_env, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["gcs", "s3"])
def machines(request, tmp_path_factory):
    """A project with a `dvc add`-ed dataset, reproduced and pushed (data and weights) to the remote, and a
    second clone of it after `dvc pull` with its own staging directory (another machine's local disk), as the
    README's "Put your dataset in GCS" guide does it."""
    store = request.getfixturevalue(f"{request.param}_server")
    first = copy_project(tmp_path_factory.mktemp("first"), {"train": TINY_TRAIN, "data": {"root": "data/dataset-v1"}})
    shutil.copytree(first / "data" / "sample", first / "data" / "dataset-v1")
    env, _ = guarded_env(tmp_path_factory.mktemp("netguard"))
    # A secret that must not reach any file but .dvc/config.local: the run's outputs are scanned for it.
    secret = f"never-in-a-file-{uuid.uuid4().hex}"
    env = {**env, **store.client_env(), "AWS_SECRET_ACCESS_KEY": secret}
    bucket = store.make_bucket()
    store.configure(first, bucket)
    run(["dvc", "add", "-q", "data/dataset-v1"], first, env)
    run(["dvc", "repro"], first, env)
    run(["dvc", "push", "-q"], first, env)
    run(["git", "add", "-A"], first)
    run([*GIT, "commit", "-q", "-m", "reproduced"], first)
    second = tmp_path_factory.mktemp("second") / "clone"
    run(["git", "clone", "-q", str(first), str(second)], first)
    store.configure(second, bucket)  # each machine sets its own credentials (here: the endpoint)
    run(["dvc", "pull", "-q"], second, env)
    second_env = {**env, "YOLOPIPE_STAGE_DIR": str(tmp_path_factory.mktemp("nvme"))}
    out = run(["dvc", "repro"], second, second_env).stdout
    return first, second, second_env, out, secret


def test_secrets_stay_out_of_outputs_and_git(machines):
    first, *_, secret = machines
    leaked = [str(path.relative_to(first)) for path in first.rglob("*")
              if path.is_file() and ".git" not in path.parts and path.name != "config.local"
              and secret.encode() in path.read_bytes()]
    assert leaked == []


def test_new_machine_stages_and_does_not_retrain(machines):
    _, second, env, out, _ = machines
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
    _, second, env, _, _ = machines
    staged = second / "data" / "staged"
    image = sorted((staged / "images" / "train").iterdir())[0]
    # Truncated as a half-finished copy is: a new file. (Writing in place would write through the hard link
    # into the DVC cache: the tests run as root, whom read-only permissions do not stop.)
    head = image.read_bytes()[:50]
    image.unlink()
    image.write_bytes(head)
    sorted((staged / "labels" / "val").glob("*.txt"))[0].unlink()  # missing
    assert "modified" in run(["dvc", "status", "stage"], second, env).stdout
    out = run(["dvc", "repro"], second, env).stdout
    assert "Running stage 'stage'" in out and "2 written" in out
    assert "Running stage 'train'" not in out  # the repaired copy has the recorded hash
    assert run(["git", "status", "--porcelain"], second).stdout == ""
    again = run(["dvc", "repro"], second, env).stdout
    assert "Running stage" not in again
