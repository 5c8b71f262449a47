"""Where a commit's artifacts can be fetched from: its DVC remote, or the local cache of the repository it was
opened from. DVC itself says only `No storage files available: 'models/best.pt'`; we name the md5 too."""

from __future__ import annotations

from yolopipe.errors import PipelineError
from yolopipe.registry.record import ArtifactFile


def remote_description(repo) -> tuple[str, str]:
    """The default remote's name and URL at the open revision; a PipelineError when none is set."""
    name = repo.config["core"].get("remote")
    if not name or name not in repo.config["remote"]:
        raise PipelineError("no default DVC remote is set, so nobody else could fetch a registered model",
                            hint="dvc remote add -d NAME URL, commit .dvc/config, then `dvc push`")
    return name, repo.config["remote"][name]["url"]


def missing_on_remote(repo, files: list[ArtifactFile]) -> list[ArtifactFile]:
    """The files whose object the default remote lacks (what a fresh clone could not fetch)."""
    from yolopipe.remote import Remote, explain

    name, url = remote_description(repo)
    odb = repo.cloud.get_remote_odb(name, "fetch")
    try:
        return [file for file in files if not odb.exists(file.md5)]
    except Exception as exc:  # the remote's own errors (unreachable, credentials) are not a missing object
        remote = Remote(name, url, dict(repo.config["remote"][name]), odb.fs, odb.path)
        raise PipelineError(f"cannot list the DVC remote: {explain(exc, remote)}",
                            hint="`yolopipe remote check --read-only` says what is wrong") from None


def missing_everywhere(repo, files: list[ArtifactFile]) -> list[ArtifactFile]:
    """The files whose object is neither in the opened repository's cache nor on its default remote."""
    cache = repo.cache.local  # None in a bare clone of a git URL: there everything comes from the remote
    absent = [file for file in files if cache is None or not cache.exists(file.md5)]
    return missing_on_remote(repo, absent) if absent else []


def describe_missing(repo, missing: list[ArtifactFile], commit: str) -> str:
    name, url = remote_description(repo)
    objects = "; ".join(f"{file.path} (artifact {file.name}, md5 {file.md5})" for file in missing)
    return f"the DVC remote '{name}' ({url}) lacks the model of commit {commit[:7]}: {objects}"
