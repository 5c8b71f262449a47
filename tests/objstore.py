"""Real object-storage servers on 127.0.0.1 for the remote tests: moto (S3) and gcp-storage-emulator (GCS)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from yolopipe.train.checkpoints import PREFIX as CHECKPOINT_PREFIX

# A dead server must fail a push in seconds, not after botocore's retries.
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_MAX_ATTEMPTS": "1"}
# Otherwise gcsfs stalls about 60 s per call on a gRPC probe for zonal buckets.
GCS_TEST_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
GCS_EMULATOR = Path(__file__).with_name("gcs_emulator.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server started as a child process on a fixed port, so it can be killed and restarted in place."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict | None = None, cwd: Path | None = None):
        self.argv, self.port, self.log, self.server_env, self.cwd = argv, port, log, env, cwd
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "ServerProcess":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                            env={**os.environ, **(self.server_env or {})})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.argv[0]} did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: what a crash or a dropped machine looks like to the client."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class MotoS3(ServerProcess):
    """moto_server: S3 in memory. With `check_credentials`, only the access key made by `credentials()` is
    accepted (moto's IAM enforcement after its first unauthenticated calls)."""

    def __init__(self, workdir: Path, check_credentials: bool = False):
        port = free_port()
        env = {"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if check_credentials else {}
        super().__init__([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                         port, workdir / "moto.log", env=env, cwd=workdir)
        self.check_credentials = check_credentials
        self.access: dict[str, str] = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    def _client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.access["AWS_SECRET_ACCESS_KEY"])

    def start(self, timeout: float = 30) -> "MotoS3":
        super().start(timeout)
        if self.check_credentials:  # the three unauthenticated calls moto allows: a user, its key, its policy
            iam = self._client("iam")
            iam.create_user(UserName="ci")
            key = iam.create_access_key(UserName="ci")["AccessKey"]
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            iam.put_user_policy(UserName="ci", PolicyName="all", PolicyDocument=json.dumps(policy))
            self.access = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        return self

    def client_env(self) -> dict[str, str]:
        """The environment a DVC command needs to reach this server."""
        return {**S3_TEST_ENV, **self.access}

    def make_bucket(self, name: str | None = None) -> str:
        name = name or _bucket_name()
        self._client("s3").create_bucket(Bucket=name)
        return name

    def checkpoint_keys(self, bucket: str) -> list[str]:
        """The training checkpoints (yolopipe.train.checkpoints) on the remote `configure` set up."""
        listed = self._client("s3").list_objects_v2(Bucket=bucket, Prefix=f"yolopipe/{CHECKPOINT_PREFIX}/")
        return [item["Key"] for item in listed.get("Contents", [])]

    def configure(self, project: Path, bucket: str, remote: str = "s3") -> None:
        """Point `remote` at this server as a team would (the endpoint goes to config.local: it is per machine)."""
        _set_url(project, remote, f"s3://{bucket}/yolopipe")
        _dvc(project, "remote", "modify", "--local", remote, "endpointurl", self.endpoint)


class GcsEmulator(ServerProcess):
    """gcp-storage-emulator with the byte-exact upload fix, storing objects on disk so they outlive a restart."""

    def __init__(self, workdir: Path, lazy_index: bool = False):
        port = free_port()
        storage = workdir / "gcs-data"
        storage.mkdir(parents=True, exist_ok=True)
        lazy = ["--lazy-index"] if lazy_index else []  # faster, but not crash-safe: benchmarks only
        super().__init__([sys.executable, str(GCS_EMULATOR), *lazy, "--data-dir", str(storage), "start",
                          "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                         port, workdir / "gcs.log", cwd=workdir)

    def client_env(self) -> dict[str, str]:
        return dict(GCS_TEST_ENV)

    def make_bucket(self, name: str | None = None) -> str:
        name = name or _bucket_name()
        request = urllib.request.Request(f"{self.endpoint}/storage/v1/b?project=test", method="POST",
                                         data=json.dumps({"name": name}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()
        return name

    def configure(self, project: Path, bucket: str, remote: str = "gcs") -> None:
        _set_url(project, remote, f"gs://{bucket}/yolopipe")
        _dvc(project, "remote", "modify", "--local", remote, "endpointurl", self.endpoint)
        _dvc(project, "remote", "modify", "--local", remote, "allow_anonymous_login", "true")
        # Every pulled file is hashed again: a server that corrupts bytes fails the pull instead of passing.
        _dvc(project, "remote", "modify", remote, "verify", "true")


def _set_url(project: Path, remote: str, url: str) -> None:
    """The README's one-liner where the project ships the remote; `dvc remote add` in a bare repository."""
    if remote in [line.split()[0] for line in _dvc(project, "remote", "list").splitlines() if line.strip()]:
        _dvc(project, "remote", "modify", remote, "url", url)
        _dvc(project, "remote", "default", remote)
    else:
        _dvc(project, "remote", "add", "-d", remote, url)


def _dvc(project: Path, *args: str) -> str:
    command = [sys.executable, "-m", "dvc", *args]
    return subprocess.run(command, cwd=project, check=True, capture_output=True, text=True).stdout


def _bucket_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"
