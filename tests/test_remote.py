"""DVC remotes against real servers on 127.0.0.1: the shipped config, `yolopipe remote check`, a dataset's
round trip through GCS and S3, and what a dead or restarted server does to a push."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from objstore import GcsEmulator, MotoS3
from yolopipe.remote import PLACEHOLDER_BUCKET

from conftest import GIT, REPO, guarded_env, run, tree_digest

DVC = [sys.executable, "-m", "dvc"]


def bare_project(root: Path, dataset: Path | None = None) -> Path:
    """A git + DVC repository; with `dataset`, a copy of it `dvc add`-ed as data/dataset-v1 and committed."""
    root.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], root)
    run([*DVC, "init", "-q"], root)
    if dataset is not None:
        shutil.copytree(dataset, root / "data" / "dataset-v1")
        # One file ends in a carriage return: the byte the stock GCS emulator used to drop.
        (root / "data" / "dataset-v1" / "ends-in-cr.bin").write_bytes(b"\x89PNG\r\n\x1a\n" * 3 + b"\r")
        run([*DVC, "add", "-q", "data/dataset-v1"], root)
    run(["git", "add", "-A"], root)
    run([*GIT, "commit", "-q", "-m", "dataset"], root)
    return root


def server_env(store, tmp_path: Path) -> tuple[dict, Path]:
    env, log = guarded_env(tmp_path)
    return {**env, **store.client_env()}, log


def check_lines(project: Path, env: dict, *args: str) -> tuple[int, str]:
    result = run([sys.executable, "-m", "yolopipe.cli", "remote", "check", *args], project, env, check=False)
    return result.returncode, result.stdout + result.stderr


# --- the shipped configuration ------------------------------------------------------------------------------

def test_project_ships_gcs_default_and_s3_with_placeholders(tmp_path):
    listed = run([*DVC, "remote", "list"], REPO).stdout
    assert re.search(rf"^gcs\s+gs://{PLACEHOLDER_BUCKET}/\S+\s+\(default\)$", listed, re.M), listed
    assert re.search(rf"^s3\s+s3://{PLACEHOLDER_BUCKET}/\S+$", listed, re.M), listed
    code, out = check_lines(REPO, dict(os.environ))
    assert code == 1 and "placeholder" in out and "dvc remote modify gcs url" in out


def test_credentials_set_with_local_go_to_an_ignored_file(tmp_path):
    project = bare_project(tmp_path / "p")
    run([*DVC, "remote", "add", "-d", "s3", "s3://bucket/yolopipe"], project)
    run(["git", "add", "-A"], project)
    run([*GIT, "commit", "-q", "-m", "remote"], project)
    secret = "wJalrXUtnFEMI" + "K7MDENGbPxRfiCYEXAMPLEKEY"
    run([*DVC, "remote", "modify", "--local", "s3", "secret_access_key", secret], project)
    assert secret in (project / ".dvc" / "config.local").read_text()
    assert run(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout == ""


CREDENTIAL_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key assignment": re.compile(r"(?i)(aws_secret_access_key|secret_access_key)\s*[=:]\s*['\"]?"
                                            r"[A-Za-z0-9/+]{40}"),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "service-account key file": re.compile(r"\"private_key_id\"\s*:\s*\"[0-9a-f]{40}\""),
    "OAuth refresh token": re.compile(r"\"refresh_token\"\s*:\s*\"1//"),
}


def credential_findings(text: str) -> list[str]:
    return [name for name, pattern in CREDENTIAL_PATTERNS.items() if pattern.search(text)]


def test_credential_scan_finds_planted_secrets():
    planted = {
        "AWS access key id": "key = AKIA" + "Z" * 16,
        "AWS secret key assignment": "aws_secret_access_key = " + "a1B2" * 10,
        "private key block": "-----BEGIN " + "PRIVATE KEY-----\nMIIE",
        "service-account key file": '{"private_key' + '_id": "' + "0a" * 20 + '"}',
        "OAuth refresh token": '{"refresh_token": "1/' + '/0abc"}',
    }
    for name, text in planted.items():
        assert credential_findings(text) == [name]


def test_no_tracked_file_looks_like_a_credential():
    tracked = run(["git", "ls-files", "-z"], REPO).stdout.split("\0")
    leaks = {}
    for name in filter(None, tracked):
        path = REPO / name
        if path.is_file() and path.stat().st_size < 5_000_000:
            found = credential_findings(path.read_text(errors="ignore"))
            if found:
                leaks[name] = found
    assert leaks == {}
    assert run(["git", "check-ignore", ".dvc/config.local"], REPO).returncode == 0


# --- yolopipe remote check ----------------------------------------------------------------------------------

def test_check_passes_and_leaves_no_probe_behind(object_store, tmp_path):
    project = bare_project(tmp_path / "p")
    bucket = object_store.make_bucket()
    object_store.configure(project, bucket)
    env, log = server_env(object_store, tmp_path)
    code, out = check_lines(project, env)
    assert code == 0, out
    assert f"bucket '{bucket}' exists" in out and "write: created and deleted" in out
    assert _remote_files(project, env) == []  # the probe was deleted
    assert log.read_text() == ""


def test_missing_bucket_says_to_create_it(object_store, tmp_path):
    project = bare_project(tmp_path / "p")
    object_store.configure(project, "no-such-bucket-here")
    code, out = check_lines(project, server_env(object_store, tmp_path)[0])
    create = "gcloud storage buckets create gs://" if isinstance(object_store, GcsEmulator) else "aws s3 mb s3://"
    assert code == 1 and "bucket 'no-such-bucket-here' does not exist" in out and create + "no-such-bucket-here" in out


def test_dead_server_is_named_within_seconds(tmp_path):
    server = MotoS3(tmp_path).start()
    project = bare_project(tmp_path / "p")
    server.configure(project, server.make_bucket())
    server.kill()
    started = time.monotonic()
    code, out = check_lines(project, server_env(server, tmp_path)[0])
    assert code == 1 and f"cannot reach 127.0.0.1:{server.port}" in out
    assert time.monotonic() - started < 60  # generous: the point is no retry storm, not speed


def test_wrong_s3_credentials_are_rejected_by_name(tmp_path):
    server = MotoS3(tmp_path, check_credentials=True).start()
    try:
        project = bare_project(tmp_path / "p")
        server.configure(project, server.make_bucket())
        env = server_env(server, tmp_path)[0]
        assert check_lines(project, env)[0] == 0
        code, out = check_lines(project, {**env, "AWS_SECRET_ACCESS_KEY": "wrong"})
        assert code == 1 and "rejected the credentials" in out, out
        assert "wrong" not in out  # the secret is never echoed
    finally:
        server.stop()


def test_no_gcs_credentials_is_not_silently_anonymous(gcs_server, tmp_path):
    project = bare_project(tmp_path / "p")
    gcs_server.configure(project, gcs_server.make_bucket())
    run([*DVC, "remote", "modify", "--local", "--unset", "gcs", "allow_anonymous_login"], project)
    env = {**server_env(gcs_server, tmp_path)[0], "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "none")}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    code, out = check_lines(project, env)
    assert code == 1 and "no GCS credentials found" in out and "anonymous" in out


@pytest.mark.parametrize("key, expected", [
    ({"type": "authorized_user", "client_id": "x", "client_secret": "y"}, "authorized_user key without refresh_token"),
    ({"type": "service_account", "client_email": "ci@p.iam.gserviceaccount.com", "token_uri": "https://t",
      "private_key": "-----BEGIN " + "PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"},
     "the private key does not parse"),
    ("{not json", "is not a JSON key"),
])
def test_bad_gcs_key_files_are_named_before_any_request(gcs_server, tmp_path, key, expected):
    project = bare_project(tmp_path / "p")
    gcs_server.configure(project, gcs_server.make_bucket())
    run([*DVC, "remote", "modify", "--local", "--unset", "gcs", "allow_anonymous_login"], project)
    key_file = tmp_path / "key.json"
    key_file.write_text(key if isinstance(key, str) else json.dumps(key))
    run([*DVC, "remote", "modify", "--local", "gcs", "credentialpath", str(key_file)], project)
    env, log = server_env(gcs_server, tmp_path)
    code, out = check_lines(project, env)
    assert code == 1 and str(key_file) in out and expected in out, out
    assert "not a key" not in out  # key material is never echoed
    assert log.read_text() == ""


def test_valid_service_account_key_is_accepted_offline(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from yolopipe.remote.check import RemoteCheck, _check_key_file

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"type": "service_account", "client_email": "ci@p.iam.gserviceaccount.com",
                                    "token_uri": "https://oauth2.googleapis.com/token", "private_key": pem,
                                    "private_key_id": "1", "project_id": "p"}))
    check = RemoteCheck("gcs")
    assert _check_key_file(check, key_file, "test")
    assert "ci@p.iam.gserviceaccount.com" in str(check.lines[0]) and "PRIVATE" not in check.report


# --- round trip and faults ----------------------------------------------------------------------------------

def test_gcs_fixture_is_byte_exact(gcs_server, monkeypatch):
    import gcsfs

    for name, value in gcs_server.client_env().items():
        monkeypatch.setenv(name, value)
    fs = gcsfs.GCSFileSystem(endpoint_url=gcs_server.endpoint, token="anon", skip_instance_cache=True)
    bucket = gcs_server.make_bucket()
    for name, payload in {"cr": b"png\r", "crlf": b"x\r\n", "empty": b"",
                          "binary": os.urandom(4096) + b"\r\r"}.items():
        fs.pipe_file(f"{bucket}/{name}", payload)
        assert fs.cat_file(f"{bucket}/{name}") == payload, name


def test_dataset_round_trip(object_store, tiny_dataset, tmp_path):
    origin = bare_project(tmp_path / "origin", tiny_dataset)
    bucket = object_store.make_bucket()
    object_store.configure(origin, bucket)
    env, log = server_env(object_store, tmp_path)
    run([*DVC, "push", "-q"], origin, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    object_store.configure(clone, bucket)  # each machine sets its own endpoint and credentials
    run([*DVC, "pull", "-q"], clone, env)
    assert tree_digest(clone / "data" / "dataset-v1") == tree_digest(origin / "data" / "dataset-v1")
    assert "in sync" in run([*DVC, "status", "-c"], clone, env).stdout
    assert log.read_text() == ""


@pytest.mark.slow
def test_push_interrupted_by_a_server_kill_completes_on_rerun(tmp_path):
    (tmp_path / "server").mkdir()
    server = GcsEmulator(tmp_path / "server").start()
    try:
        dataset = tmp_path / "many"
        for index in range(600):
            path = dataset / f"{index % 10}" / f"{index}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(2048) + (b"\r" if index % 7 == 0 else b""))
        origin = bare_project(tmp_path / "origin", dataset)
        bucket = server.make_bucket()
        server.configure(origin, bucket)
        env = {**os.environ, **server.client_env()}
        push = subprocess.Popen([*DVC, "push", "-q"], cwd=origin, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        objects = tmp_path / "server" / "gcs-data"
        while sum(1 for _ in objects.rglob("*")) < 100 and push.poll() is None:
            time.sleep(0.05)
        assert push.poll() is None, "the push finished before the kill: make the dataset larger"
        server.kill()
        time.sleep(3)
        server.start()
        push.wait(timeout=300)
        run([*DVC, "push", "-q"], origin, env)
        assert "in sync" in run([*DVC, "status", "-c"], origin, env).stdout
        clone = tmp_path / "clone"
        run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
        server.configure(clone, bucket)
        run([*DVC, "pull", "-q"], clone, env)  # `verify true`: every pulled file is hashed again
        assert tree_digest(clone / "data" / "dataset-v1") == tree_digest(origin / "data" / "dataset-v1")
    finally:
        server.stop()


def test_push_to_a_dead_server_fails_fast_and_loses_nothing(tiny_dataset, tmp_path):
    server = MotoS3(tmp_path).start()
    origin = bare_project(tmp_path / "origin", tiny_dataset)
    bucket = server.make_bucket()
    server.configure(origin, bucket)
    server.kill()
    before = tree_digest(origin / ".dvc" / "cache"), tree_digest(origin / "data")
    env = {**os.environ, **server.client_env()}
    result = run([*DVC, "push"], origin, env, check=False)
    assert result.returncode != 0 and "Could not connect" in result.stdout + result.stderr, result
    assert (tree_digest(origin / ".dvc" / "cache"), tree_digest(origin / "data")) == before
    server.start()  # moto keeps buckets in memory: the restarted server is empty
    server.make_bucket(bucket)
    run([*DVC, "push", "-q"], origin, env)
    assert "in sync" in run([*DVC, "status", "-c"], origin, env).stdout


def _remote_files(project: Path, env: dict) -> list[str]:
    from yolopipe.remote import open_remote

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        remote = open_remote(project)
        remote.fs.invalidate_cache()
        return remote.fs.find(remote.path)
    finally:
        os.environ.clear()
        os.environ.update(saved)
