"""`yolopipe remote check`: prove before a long job that the remote is reachable, the credentials are
accepted and the bucket exists, with one readable line per finding.

gcsfs falls back to anonymous access when it finds no credentials, and DVC reports a bad key file as
`'refresh_token'`; so credentials are looked at first, offline, the way gcsfs and botocore would find them.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from yolopipe.remote import PLACEHOLDER_BUCKET, Remote, explain, open_remote, proxied, remote_env_hint

KEY_FIELDS = {"service_account": ("client_email", "private_key", "token_uri"),
              "authorized_user": ("client_id", "client_secret", "refresh_token")}


@dataclass(frozen=True)
class CheckLine:
    """One line of the check's report: passed or failed, and what was checked."""

    ok: bool
    what: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what}"


@dataclass
class RemoteCheck:
    remote: str
    lines: list[CheckLine] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(line.ok for line in self.lines)

    def add(self, ok: bool, what: str) -> bool:
        self.lines.append(CheckLine(ok, what))
        return ok

    @property
    def report(self) -> str:
        lines = [str(line) for line in self.lines]
        verdict = "ready" if self.passed else "NOT ready"
        return "\n".join([*lines, f"remote '{self.remote}' is {verdict} for dvc pull/push"])


def check_remote(project: Path, name: str | None = None, write: bool = True) -> RemoteCheck:
    """Configuration, credentials, reachability, bucket, and (unless `write` is off) a write-and-delete probe."""
    remote = open_remote(project, name)
    check = RemoteCheck(remote.name)
    check.add(True, f"remote '{remote.name}' -> {remote.url}")
    if remote.bucket == PLACEHOLDER_BUCKET:
        check.add(False, f"'{remote.url}' is the placeholder shipped in .dvc/config; set your bucket: "
                         f"dvc remote modify {remote.name} url {remote.protocol}://BUCKET/yolopipe")
        return check
    if remote.protocol == "local":
        return _check_local(check, remote, write)
    credentials_ok = _check_credentials(check, remote)
    if not (credentials_ok and _check_reachable(check, remote)):
        return check
    try:
        entries = remote.fs.ls(remote.bucket, detail=False)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
        check.add(False, explain(exc, remote))
        return check
    check.add(True, f"bucket '{remote.bucket}' exists and the credentials can list it ({len(entries)} entries)")
    if write:
        _check_write(check, remote)
    return check


def _check_local(check: RemoteCheck, remote: Remote, write: bool) -> RemoteCheck:
    root = Path(remote.path)
    if not check.add(root.is_dir(), f"directory {root} {'exists' if root.is_dir() else 'does not exist'}"):
        return check
    if write:
        check.add(os.access(root, os.W_OK), f"directory {root} is {'' if os.access(root, os.W_OK) else 'not '}"
                                            "writable")
    return check


def _check_credentials(check: RemoteCheck, remote: Remote) -> bool:
    if remote.options.get("allow_anonymous_login"):
        return check.add(True, "credentials: anonymous access (allow_anonymous_login is set)")
    if remote.protocol == "gs":
        return _check_gcs_credentials(check, remote)
    return _check_aws_credentials(check, remote)


def _check_gcs_credentials(check: RemoteCheck, remote: Remote) -> bool:
    adc = _gcloud_adc_file()  # used only if there: a configured path, by contrast, must exist
    candidates = [(remote.options.get("credentialpath"), "credentialpath in the DVC config"),
                  (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"), "$GOOGLE_APPLICATION_CREDENTIALS"),
                  (str(adc) if adc.is_file() else None, "gcloud application-default login")]
    for path, source in candidates:
        if path:
            return _check_key_file(check, Path(path).expanduser(), source)
    if _on_google_cloud():
        return check.add(True, "credentials: this VM's service account (metadata server)")
    return check.add(False, "no GCS credentials found; gcsfs would silently fall back to anonymous access, "
                            f"which private buckets refuse. Set them: {remote_env_hint(remote)}")


def _check_key_file(check: RemoteCheck, path: Path, source: str) -> bool:
    if not path.is_file():
        return check.add(False, f"credential file {path} ({source}) does not exist")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return check.add(False, f"credential file {path} ({source}) is not a JSON key: {exc}")
    kind = info.get("type") if isinstance(info, dict) else None
    if kind not in KEY_FIELDS and kind != "external_account":
        return check.add(False, f"credential file {path} ({source}) has type {kind!r}; expected a service-account "
                                "key (IAM > Service accounts > Keys > JSON)")
    missing = [name for name in KEY_FIELDS.get(kind, ()) if not info.get(name)]
    if missing:
        return check.add(False, f"credential file {path} ({source}) is a {kind} key without {', '.join(missing)}")
    if kind == "service_account":
        from google.oauth2 import service_account

        try:
            service_account.Credentials.from_service_account_info(info)
        except ValueError as exc:
            return check.add(False, f"credential file {path} ({source}): the private key does not parse ({exc})")
    who = info.get("client_email") or kind
    return check.add(True, f"credentials: {who} from {path} ({source})")


def _gcloud_adc_file() -> Path:
    config_dir = os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud"
    return Path(config_dir) / "application_default_credentials.json"


def _on_google_cloud() -> bool:
    try:
        return "Google" in Path("/sys/class/dmi/id/product_name").read_text()
    except OSError:
        return False


def _check_aws_credentials(check: RemoteCheck, remote: Remote) -> bool:
    options = remote.options
    if options.get("access_key_id") and options.get("secret_access_key"):
        return check.add(True, f"credentials: access key {_masked(options['access_key_id'])} from the DVC config")
    import botocore.session

    session = botocore.session.Session(profile=options.get("profile"))
    if options.get("credentialpath"):
        session.set_config_variable("credentials_file", options["credentialpath"])
    # Look everywhere botocore would, except the instance metadata service: that is a network call.
    resolver = session.get_component("credential_provider")
    resolver.remove("iam-role")
    try:
        credentials = session.get_credentials()
    except Exception as exc:  # noqa: BLE001 - a missing profile, an unreadable file
        return check.add(False, f"AWS credentials: {exc}")
    if credentials is None:
        return check.add(True, "credentials: none in the environment, DVC config or ~/.aws; relying on an "
                               f"instance role (EC2, SageMaker). Elsewhere: {remote_env_hint(remote)}")
    return check.add(True, f"credentials: access key {_masked(credentials.access_key)} ({credentials.method})")


def _masked(key: str) -> str:
    return f"...{key[-4:]}" if len(key) > 4 else "..."


def _check_reachable(check: RemoteCheck, remote: Remote, timeout: float = 5.0) -> bool:
    if proxied():
        return check.add(True, f"reachability of {remote.endpoint}: left to the configured HTTP(S) proxy")
    parts = urlsplit(remote.endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return check.add(False, f"cannot reach {parts.hostname}:{port}: {exc} (offline, firewalled, or down)")
    return check.add(True, f"reachable: {parts.hostname}:{port}")


def _check_write(check: RemoteCheck, remote: Remote) -> bool:
    probe = f"{remote.path}/.yolopipe-check/{socket.gethostname()}-{uuid.uuid4().hex}"
    try:
        remote.fs.pipe_file(probe, b"yolopipe remote check\n")
        remote.fs.rm_file(probe)
    except Exception as exc:  # noqa: BLE001
        return check.add(False, f"cannot write under {remote.url} (read-only credentials? `dvc push` would fail): "
                                f"{explain(exc, remote)}")
    return check.add(True, f"write: created and deleted a probe object under {remote.url}")
