"""registry: versions and stages of the detector as GTO git tags (no server), fetched by stage through DVC.

`promote` registers a commit's model (the workspace's HEAD, a commit, a branch or a `dvc exp` experiment) and
assigns it a stage. Every artifact dvc.yaml declares (the weights, the ONNX export, the model card) gets the
same version and stage, so each is fetchable on its own with `dvc artifacts get REPO NAME --stage prod`, and
`fetch` gets them all from the one commit the detector's stage names. Allowed stages live in `.gto`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from yolopipe.dvchashes import file_md5
from yolopipe.errors import PipelineError
from yolopipe.registry.gates import Quality, check_promotable
from yolopipe.registry.record import CARD, DETECTOR, EXPORT_METRICS, ModelRecord, read_json_output, read_record
from yolopipe.registry.storage import describe_missing, missing_everywhere, missing_on_remote

__all__ = ["DETECTOR", "PromoteResult", "FetchResult", "StageModel", "promote", "fetch", "stage_commit",
           "find_commit", "stage_model"]


@dataclass(frozen=True)
class PromoteResult:
    commit: str
    version: str
    stage: str
    quality: Quality
    tags: list[str]
    """The git tags this promotion created (none when the version already was the stage's)."""
    pushed: bool

    @property
    def summary(self) -> str:
        what = (f"{DETECTOR} {self.version} is now {self.stage}" if self.tags
                else f"{DETECTOR} {self.version} already is {self.stage}; nothing to tag")
        text = (f"{what}: commit {self.commit[:7]}, mAP50-95 {self.quality.map50_95:.4f}, "
                f"dataset md5 {self.quality.dataset_md5}")
        if self.tags:
            text += f"\n  tags: {', '.join(self.tags)}"
            text += "\n  pushed to origin" if self.pushed else "\n  share them: git push origin --tags"
        return text


@dataclass(frozen=True)
class FetchResult:
    commit: str
    version: str | None
    files: list[Path]

    @property
    def summary(self) -> str:
        names = ", ".join(str(file) for file in self.files)
        return f"fetched {DETECTOR} {self.version or ''} (commit {self.commit[:7]}): {names}; md5s match dvc.lock"


@dataclass(frozen=True)
class StageModel:
    stage: str
    version: str | None
    commit: str
    metrics: dict[str, object]
    """The evaluate metrics its model card holds."""


def promote(project: Path, stage: str, version: str | None = None, rev: str | None = None,
            push: bool = False) -> PromoteResult:
    """Register the model of `rev` (default: the committed workspace) and assign it `stage`. Refuses an
    unknown stage, uncommitted changes (without `rev`), missing metrics, failed export parity and a model
    whose objects the default DVC remote lacks, before any tag is written."""
    from dvc.repo import Repo
    from gto.exceptions import GTOException
    from gto.registry import GitRegistry

    if version is not None:
        version = _checked_version(version)
    with GitRegistry.from_url(str(project)) as registry:
        _check_stage(registry, stage)
    with Repo(str(project)) as repo:
        commit = _resolve_commit(repo, rev)
    if rev is None:
        _check_committed(project)
    if push:
        _check_origin(project)
    with Repo(str(project), rev=commit) as repo:
        record = read_record(repo, commit)
        if rev is None:
            _check_workspace_outputs(project, record)
        missing = missing_on_remote(repo, record.artifacts)
        if missing:
            raise PipelineError(describe_missing(repo, missing, commit),
                                hint=f"`dvc push` at {commit[:7]} (an experiment: `dvc exp push origin NAME`)")
        quality = check_promotable(record, read_json_output(repo, record, CARD),
                                   read_json_output(repo, record, EXPORT_METRICS))
    try:
        with GitRegistry.from_url(str(project)) as registry:
            assigned_version, tags = _assign_all(registry, record, stage, version, push)
    except GTOException as exc:
        raise PipelineError(f"GTO refused: {exc.msg}", hint="`gto show` lists the registered versions") from None
    return PromoteResult(commit, assigned_version, stage, quality, tags, push and bool(tags))


def stage_commit(repo_url: str, stage: str | None = None, version: str | None = None) -> str:
    """The commit `stage` (or `version`, or else the latest version) of the detector names, resolved as
    `dvc artifacts get` resolves it."""
    commit = find_commit(repo_url, stage, version)
    if commit is None:
        which = f"in stage {stage}" if stage else f"version {version}" if version else "registered"
        raise PipelineError(f"no {DETECTOR} {which} in {repo_url}",
                            hint="`gto show` lists the registry; `yolopipe promote` fills it")
    return commit


def find_commit(repo_url: str, stage: str | None = None, version: str | None = None) -> str | None:
    """stage_commit, or None when the registry has no such version or stage."""
    from dvc.exceptions import ArtifactNotFoundError
    from dvc.repo import Repo

    with Repo.open(repo_url, uninitialized=False) as repo:
        try:
            return repo.artifacts.get_rev(DETECTOR, version=version, stage=stage)
        except ArtifactNotFoundError:
            return None


def stage_model(repo_url: str, stage: str) -> StageModel | None:
    """The detector that `stage` names and the evaluate metrics of its card (read from the cache or the DVC
    remote); None when no version is in that stage."""
    from dvc.repo import Repo

    commit = find_commit(repo_url, stage)
    if commit is None:
        return None
    with Repo.open(repo_url, rev=commit, uninitialized=False) as repo:
        card = read_json_output(repo, read_record(repo, commit), CARD) or {}
        return StageModel(stage, _version_at(repo.scm, commit), commit, card.get("metrics") or {})


def fetch(repo_url: str, out: Path, stage: str | None = None, version: str | None = None,
          force: bool = False) -> FetchResult:
    """Download the weights, the ONNX export and the card (every declared artifact) that `stage` or `version`
    names in `repo_url` (a project path or a git URL) into `out`, and check each against dvc.lock's md5."""
    from dvc.repo import Repo

    commit = stage_commit(repo_url, stage, version)
    with Repo.open(repo_url, rev=commit, uninitialized=False) as repo:
        record = read_record(repo, commit)
        missing = missing_everywhere(repo, record.artifacts)
        if missing:
            raise PipelineError(describe_missing(repo, missing, commit),
                                hint=f"on the machine that trained it: `git checkout {commit[:7]} && dvc push`")
        targets = {file.path: out / Path(file.path).name for file in record.artifacts}
        existing = [str(target) for target in targets.values() if target.exists()]
        if existing and not force:
            raise PipelineError(f"would overwrite {', '.join(existing)}", hint="pass --force, or another -o DIR")
        out.mkdir(parents=True, exist_ok=True)
        for file in record.artifacts:
            partial = targets[file.path].with_name(targets[file.path].name + ".partial")
            repo.dvcfs.get_file(file.path, str(partial))
            if file_md5(partial) != file.md5:
                partial.unlink()
                raise PipelineError(f"{file.path} from the remote does not match dvc.lock's md5 {file.md5}",
                                    hint="the remote object is damaged: push it again from a good copy")
            partial.replace(targets[file.path])
        fetched_version = _version_at(repo.scm, commit)
    return FetchResult(commit, fetched_version, list(targets.values()))


def _assign_all(registry, record: ModelRecord, stage: str, version: str | None, push: bool) -> tuple[str, list]:
    """Give every artifact of the commit the detector's version and `stage`; returns the version and the new
    tags. A version that held the stage before is assigned again (a rollback: GTO's force)."""
    existing = _registered_version(registry, DETECTOR, record.commit)
    if version and existing and version != existing:
        raise PipelineError(f"commit {record.short} is registered as {DETECTOR} {existing} already, not {version}",
                            hint=f"promote it without --version (it stays {existing})")
    before = set(registry.scm.list_tags())
    target_version = existing or version
    for file in record.artifacts:
        if _stage_commit_in(registry, file.name, stage) == record.commit:
            continue
        registered = _registered_version(registry, file.name, record.commit)
        registry.assign(file.name, stage, rev=record.commit, name_version=None if registered else target_version,
                        force=True, push=push)
        target_version = target_version or _registered_version(registry, DETECTOR, record.commit)
    created = sorted(set(registry.scm.list_tags()) - before)
    return target_version or _registered_version(registry, DETECTOR, record.commit), created


def _stage_commit_in(registry, name: str, stage: str) -> str | None:
    """The commit of the stage's newest assignment: what `dvc artifacts get --stage` fetches. (GTO's own
    `gto show` picks the highest version in a stage unless given `--sort timestamp`.)"""
    from gto.constants import VersionSort

    assigned = registry.find_artifact(name, create_new=True).get_vstages(sort=VersionSort.Timestamp)
    return assigned[stage][0].commit_hexsha if assigned.get(stage) else None


def _registered_version(registry, name: str, commit: str) -> str | None:
    found = registry.find_artifact(name, create_new=True).find_version(commit_hexsha=commit)
    return found.version if found is not None and found.is_registered and found.is_active else None


def _version_at(scm, commit: str) -> str | None:
    from gto.registry import GitRegistry

    with GitRegistry.from_scm(scm) as registry:
        return _registered_version(registry, DETECTOR, commit)


def _check_stage(registry, stage: str) -> None:
    from gto.exceptions import GTOException

    allowed = registry.config.stages
    try:
        registry.config.assert_stage(stage)
    except GTOException:
        raise PipelineError(f"unknown stage '{stage}'; allowed: {', '.join(allowed or [])}", path=".gto",
                            hint="pick one of those, or add the stage to `stages:` in .gto") from None


def _checked_version(version: str) -> str:
    from gto.versions import SemVer

    if not SemVer.is_valid(version):
        raise PipelineError(f"--version {version} is not a semantic version like v1.2.3")
    return version


def _resolve_commit(repo, rev: str | None) -> str:
    from dvc.repo.experiments.utils import resolve_name
    from scmrepo.exceptions import SCMError

    try:
        return repo.scm.resolve_rev(rev or "HEAD")
    except SCMError:
        pass
    ref = resolve_name(repo.scm, rev).get(rev) if rev else None
    if ref is None:
        raise PipelineError(f"unknown revision '{rev or 'HEAD'}': not a commit, branch, tag or `dvc exp` name",
                            hint="`git log --oneline` and `dvc exp show` list what exists")
    return repo.scm.get_ref(str(ref))


def _check_committed(project: Path) -> None:
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project,
                             capture_output=True, text=True, check=True).stdout.splitlines()
    if changed:
        shown = ", ".join(line[3:] for line in changed[:5]) + (" ..." if len(changed) > 5 else "")
        raise PipelineError(f"uncommitted changes ({shown}): the registry names a commit, and this workspace "
                            "is not one", hint="commit them (and `dvc push`), or promote a commit with --rev")


def _check_origin(project: Path) -> None:
    found = subprocess.run(["git", "remote", "get-url", "origin"], cwd=project, capture_output=True, text=True)
    if found.returncode != 0:
        raise PipelineError("--push needs a git remote named origin; this repository has none",
                            hint="git remote add origin URL, or promote without --push and push the tags later")


def _check_workspace_outputs(project: Path, record: ModelRecord) -> None:
    """The committed dvc.lock must describe the workspace's model: a `yolopipe train` run outside `dvc repro`
    leaves new weights that git does not see."""
    for file in record.artifacts:
        path = project / file.path
        if path.is_file() and file_md5(path) != file.md5:
            raise PipelineError(f"{file.path} in the workspace is not the one dvc.lock records at "
                                f"{record.short} (md5 {file.md5})", path=file.path,
                                hint="`dvc repro`, commit dvc.lock and `dvc push`; or `dvc checkout` to go back")
