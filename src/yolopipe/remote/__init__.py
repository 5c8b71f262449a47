"""The project's DVC remote, opened through DVC's own config and filesystem (one set of credentials, DVC's).

Also turns the errors object stores raise into one readable line: DVC passes them on as they come
(`'refresh_token'`, `b/nosuchbucket/o`, `Forbidden`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yolopipe.errors import PipelineError

# Where each protocol's service answers when the remote sets no `endpointurl`.
DEFAULT_ENDPOINTS = {"gs": "https://storage.googleapis.com", "s3": "https://s3.amazonaws.com"}
PLACEHOLDER_BUCKET = "your-team-bucket"  # what .dvc/config ships until a team sets its bucket
CREATE_BUCKET = {"gs": "gcloud storage buckets create gs://{bucket}", "s3": "aws s3 mb s3://{bucket}"}


@dataclass(frozen=True)
class Remote:
    """A configured DVC remote: its name, URL, merged options (config.local included) and fsspec filesystem."""

    name: str
    url: str
    options: dict[str, Any]
    dvc_fs: Any  # DVC's wrapper; it reads the credentials only when `fs` is first used
    path: str  # the remote's root as `fs` spells it: `bucket/prefix` for object stores

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (gcsfs, s3fs, ...) configured exactly as DVC configures it."""
        return self.dvc_fs.fs

    @property
    def protocol(self) -> str:
        return urlsplit(self.url).scheme or "local"

    @property
    def bucket(self) -> str | None:
        return urlsplit(self.url).netloc if self.protocol in DEFAULT_ENDPOINTS else None

    @property
    def endpoint(self) -> str | None:
        return self.options.get("endpointurl") or DEFAULT_ENDPOINTS.get(self.protocol)


def open_remote(project: Path, name: str | None = None) -> Remote:
    """The remote `name`, or the project's default remote, as DVC itself would open it."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        configured = repo.config["remote"]
        name = name or repo.config["core"].get("remote")
        if not name:
            raise PipelineError("no default DVC remote is set",
                                hint="dvc remote default gcs (or: dvc remote add -d NAME URL)")
        if name not in configured:
            known = ", ".join(sorted(configured)) or "none"
            raise PipelineError(f"no DVC remote named '{name}' (configured: {known})",
                                hint=f"dvc remote add {name} gs://BUCKET/PREFIX")
        dvc_remote = repo.cloud.get_remote(name)
        return Remote(name, configured[name]["url"], dict(configured[name]), dvc_remote.fs, dvc_remote.path)


def explain(exc: BaseException, remote: Remote) -> str:
    """One line for an error from the remote's filesystem: what is wrong, and what to do about it."""
    text = f"{exc}".strip() or type(exc).__name__
    lowered = f"{type(exc).__name__} {text}".lower()
    where = remote.endpoint or remote.url
    if _is_unreachable(exc, lowered):
        return f"cannot reach {where}: {text} (offline, firewalled, or the server is down)"
    if isinstance(exc, FileNotFoundError) and remote.bucket and _names_bucket(lowered, remote.bucket):
        create = CREATE_BUCKET[remote.protocol].format(bucket=remote.bucket)
        return f"bucket '{remote.bucket}' does not exist at {where}; DVC never creates buckets: {create}"
    if "nocredentials" in lowered or "unable to locate credentials" in lowered:
        return f"no credentials found for remote '{remote.name}' ({remote.url}); see `yolopipe remote check`"
    if isinstance(exc, KeyError):  # google-auth reading a key file of the wrong kind
        return f"the credential file lacks the field {text}: is it a service-account JSON key?"
    if isinstance(exc, PermissionError) or any(word in lowered for word in _REJECTED):
        return f"{where} rejected the credentials for '{remote.url}': {text}"
    return f"{remote.url}: {type(exc).__name__}: {text}"


_REJECTED = ("forbidden", "accessdenied", "access denied", "invalidaccesskeyid", "signaturedoesnotmatch",
             "invalid_grant", "unauthorized", "401", "403", "invalid credentials")


def _names_bucket(lowered: str, bucket: str) -> bool:
    return "bucket" in lowered or f"b/{bucket.lower()}/o" in lowered or bucket.lower() in lowered


def _is_unreachable(exc: BaseException, lowered: str) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
        return True
    return any(word in lowered for word in ("cannot connect", "could not connect", "connection refused",
                                            "name or service not known", "temporary failure in name resolution",
                                            "connecttimeout", "endpointconnectionerror"))


def remote_env_hint(remote: Remote) -> str:
    """Where this remote's credentials are meant to live (never in a tracked file)."""
    if remote.protocol == "gs":
        return (f"dvc remote modify --local {remote.name} credentialpath /path/to/key.json "
                "(or export GOOGLE_APPLICATION_CREDENTIALS=/path/to/key.json)")
    if remote.protocol == "s3":
        return ("export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... (or AWS_PROFILE=NAME, or "
                f"dvc remote modify --local {remote.name} profile NAME)")
    return "no credentials needed"


def proxied() -> bool:
    return any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"))
