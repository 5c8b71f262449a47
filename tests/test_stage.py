import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from yolopipe.dataset import load_dataset
from yolopipe.errors import PipelineError
from yolopipe.params import StageParams
from yolopipe.paths import STAGE_MARKER as MARKER
from yolopipe.stage import stage
from yolopipe.stage.copy_engine import check_free_space
from yolopipe.synth import synthesize

from conftest import kill_stage_midway, tree_digest

COPY = StageParams(link=False)


def staged_digest(root: Path) -> dict[str, str]:
    """tree_digest without the trust marker (machine-specific mtimes; .dvcignore keeps it out of DVC's hash)."""
    return {k: v for k, v in tree_digest(root).items() if k != MARKER}


def test_staged_copy_is_complete_and_self_contained(tiny_dataset, tmp_path):
    before = tree_digest(tiny_dataset)
    result = stage(tiny_dataset, tmp_path / "staged")
    assert tree_digest(tiny_dataset) == before  # the source is never written
    staged = staged_digest(tmp_path / "staged")
    assert {k: v for k, v in staged.items() if k != "data.yaml"} == \
        {k: v for k, v in before.items() if k != "data.yaml"}
    description = yaml.safe_load(result.data_yaml.read_text())
    # No `path:` key: Ultralytics then resolves splits against the yaml's own directory, wherever it lives.
    assert "path" not in description
    copy = load_dataset(result.data_yaml)
    assert copy.names == load_dataset(tiny_dataset).names
    assert [p.name for p in copy.images("train")] == [p.name for p in load_dataset(tiny_dataset).images("train")]


def test_restaging_gives_identical_bytes(tiny_dataset, tmp_path):
    stage(tiny_dataset, tmp_path / "one", COPY)
    stage(tiny_dataset, tmp_path / "two", COPY)
    assert staged_digest(tmp_path / "one") == staged_digest(tmp_path / "two")


def test_label_caches_and_dvc_files_are_not_copied(tiny_dataset, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_dataset, source)
    (source / "labels" / "train.cache").write_bytes(b"stale")
    (source / ".gitignore").write_text("x\n")
    stage(source, tmp_path / "staged")
    assert not (tmp_path / "staged" / "labels" / "train.cache").exists()
    assert not (tmp_path / "staged" / ".gitignore").exists()


def test_refuses_to_stage_into_the_dataset(tiny_dataset, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_dataset, source)
    before = tree_digest(source)
    with pytest.raises(PipelineError, match="overlaps"):
        stage(source, source / "staged")
    with pytest.raises(PipelineError, match="overlaps"):
        stage(source, source)
    assert tree_digest(source) == before


def test_staging_directory_is_linked_from_the_fixed_path(tiny_dataset, tmp_path):
    """YOLOPIPE_STAGE_DIR moves the files, not the path DVC records: data/staged links to them."""
    staged_root = tmp_path / "repo" / "data" / "staged"
    result = stage(tiny_dataset, staged_root, COPY, stage_dir=tmp_path / "nvme")
    assert staged_root.is_symlink() and result.location.parent == tmp_path / "nvme"
    assert load_dataset(staged_root / "data.yaml").names == load_dataset(tiny_dataset).names
    linked = staged_digest(staged_root)
    stage(tiny_dataset, staged_root, COPY)  # back to the default: a real directory in its place
    assert not staged_root.is_symlink() and staged_digest(staged_root) == linked


def test_copies_of_deleted_workspaces_are_removed_from_the_staging_directory(tiny_dataset, tmp_path):
    """`dvc queue start -j 2` stages in temporary workspaces DVC deletes afterwards: each has its own folder on
    the staging disk while it runs, and the next stage there removes the copies nobody links to any more,
    and nothing else on that disk."""
    nvme = tmp_path / "nvme"
    mine = tmp_path / "project" / "data" / "staged"
    queued = [tmp_path / "project" / ".dvc" / "tmp" / "exps" / name / "data" / "staged" for name in ("a", "b")]
    folders = [stage(tiny_dataset, root, COPY, stage_dir=nvme).location for root in (mine, *queued)]
    assert len(set(folders)) == 3  # concurrent workspaces never share one copy
    (nvme / "scratch").mkdir()  # the user's own things on that disk
    (nvme / "scratch" / "notes.txt").write_text("mine")
    (nvme / "other.owner").write_text(str(queued[0]))  # an owner file for a folder that is not a staged copy
    (nvme / "other").mkdir()
    shutil.rmtree(queued[0].parents[1])  # DVC removes workspace a once its experiment is recorded
    result = stage(tiny_dataset, mine, COPY, stage_dir=nvme)
    assert result.written == 0 and "removed 1 copy no checkout links to any more" in result.summary
    assert not folders[1].exists() and folders[0].is_dir() and folders[2].is_dir()
    assert (nvme / "scratch" / "notes.txt").read_text() == "mine" and (nvme / "other").is_dir()
    queued[1].unlink()
    queued[1].mkdir()  # workspace b now keeps its copy in place: its old folder is nobody's
    assert stage(tiny_dataset, mine, COPY, stage_dir=nvme).reaped.folders == 1 and not folders[2].exists()
    assert stage(tiny_dataset, mine, COPY, stage_dir=nvme).reaped.folders == 0


def test_intact_copy_is_trusted_and_damage_is_repaired(tiny_dataset, tmp_path):
    staged = tmp_path / "staged"
    stage(tiny_dataset, staged, COPY)
    expected = staged_digest(staged)
    assert stage(tiny_dataset, staged, COPY).written == 0  # verified from metadata, nothing copied
    image = sorted((staged / "images" / "train").iterdir())[0]
    image.write_bytes(image.read_bytes()[:100])  # truncated
    sorted((staged / "labels" / "val").iterdir())[0].unlink()  # missing
    (staged / "labels" / "train.cache").write_bytes(b"ultralytics")  # caches stay: they are not damage
    assert stage(tiny_dataset, staged, COPY).written == 2
    assert {k: v for k, v in staged_digest(staged).items() if not k.endswith(".cache")} == expected


def test_changed_source_is_restaged(tiny_dataset, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_dataset, source)
    stage(source, tmp_path / "staged", COPY)
    label = sorted((source / "labels" / "train").iterdir())[0]
    label.write_text("0 0.5 0.5 0.1 0.1\n")
    stage(source, tmp_path / "staged", COPY)
    assert (tmp_path / "staged" / "labels" / "train" / label.name).read_text() == "0 0.5 0.5 0.1 0.1\n"


def test_read_only_files_are_hard_linked_and_cannot_be_written_through(tiny_dataset, tmp_path):
    # tmp_path is private to root; a world-readable directory lets an unprivileged writer try.
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    base.chmod(0o755)
    tmp_path.chmod(0o755)
    source = base / "source"
    shutil.copytree(tiny_dataset, source)
    for f in source.rglob("*"):
        if f.is_file():
            f.chmod(0o444)  # as DVC leaves a dataset linked from its cache
    before = tree_digest(source)
    result = stage(source, base / "staged")
    assert result.linked > 0
    image = sorted((base / "staged" / "images" / "train").iterdir())[0]
    assert image.stat().st_ino == (source / "images" / "train" / image.name).stat().st_ino
    # Root ignores permission bits, so the write is attempted as an unprivileged user when we are root.
    attempt = ("import os\nif os.getuid() == 0: os.setgid(65534); os.setuid(65534)\n"
               f"open({str(image)!r}, 'r+b').write(b'x')")
    denied = subprocess.run([sys.executable, "-c", attempt], capture_output=True, text=True)
    assert denied.returncode != 0 and "PermissionError" in denied.stderr, denied.stderr
    assert tree_digest(source) == before


def test_truncated_jpeg_is_copied_not_linked(tiny_dataset, tmp_path):
    """Ultralytics rewrites a JPEG without its end marker in place; a link would carry that into the source."""
    source = tmp_path / "source"
    shutil.copytree(tiny_dataset, source)
    broken = sorted((source / "images" / "train").iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:-2])
    for f in source.rglob("*"):
        if f.is_file():
            f.chmod(0o444)
    stage(source, tmp_path / "staged")
    assert (tmp_path / "staged" / "images" / "train" / broken.name).stat().st_ino != broken.stat().st_ino


def test_free_space_check_names_what_is_needed_and_where(tmp_path, tiny_dataset, monkeypatch):
    def usage(path):
        return shutil._ntuple_diskusage(10**12, 10**12 - 10**3, 10**3)

    with pytest.raises(PipelineError, match=r"needs 2\.00 GB free in .*nvme/x but only 0\.00 GB"):
        check_free_space(2 * 10**9, tmp_path / "nvme" / "x", usage)
    check_free_space(10**2, tmp_path, usage)
    # From the CLI, into a staging directory that has too little room for a full copy.
    from yolopipe import cli
    from yolopipe.stage import copy_engine

    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump({"data": {"root": str(tiny_dataset)},
                                                         "stage": {"link": False}}))
    monkeypatch.chdir(project)
    monkeypatch.setattr(copy_engine.shutil, "disk_usage", usage)
    monkeypatch.setenv("YOLOPIPE_STAGE_DIR", str(tmp_path / "nvme"))
    assert cli.main(["stage"]) == 1
    assert not list((tmp_path / "nvme").rglob("*.jpg"))


def test_pre_resize_bounds_the_long_side_applies_exif_and_is_deterministic(tmp_path):
    source = tmp_path / "source"
    synthesize(source, {"train": 6, "val": 2}, width=400, height=200, seed=3)
    rotated = sorted((source / "images" / "train").glob("*.jpg"))[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    Image.open(rotated).save(rotated, exif=exif, quality=80)
    labels = tree_digest(source / "labels")
    params = StageParams(max_side=128, link=False)
    stage(source, tmp_path / "one", params)
    stage(source, tmp_path / "two", params)
    assert staged_digest(tmp_path / "one") == staged_digest(tmp_path / "two")
    for image in (tmp_path / "one" / "images").rglob("*.jpg"):
        with Image.open(image) as im:
            assert 0x0112 not in im.getexif()
            assert im.size == ((64, 128) if image.name == rotated.name else (128, 64))
    assert tree_digest(tmp_path / "one" / "labels") == labels


def test_progress_bar_on_a_terminal_nothing_in_a_short_log_and_a_summary(tiny_dataset, tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    result = stage(tiny_dataset, tmp_path / "one", COPY)
    assert f"{result.written}/{result.written}" in terminal.getvalue() and "file/s" in terminal.getvalue()
    assert f"{result.written} written in " in result.summary and "files/s)" in result.summary
    assert "checked in" in stage(tiny_dataset, tmp_path / "one", COPY).summary
    log = io.StringIO()  # not a terminal: a bar only for long work (PROGRESS_FROM files)
    monkeypatch.setattr(sys, "stderr", log)
    stage(tiny_dataset, tmp_path / "two", COPY)
    assert log.getvalue() == ""


def test_killed_staging_is_never_trusted_and_the_next_run_completes_it(tmp_path):
    source = tmp_path / "source"
    synthesize(source, {"train": 3000, "val": 10}, width=32, height=32, seed=2)
    staged = tmp_path / "staged"
    kill_stage_midway(source, staged, "link=False")
    assert not json.loads((staged / MARKER).read_text())["complete"]  # a killed copy is never trusted
    assert len(list(staged.glob("images/train/*.jpg"))) < 3000
    # What the next run keeps: files with the source's size and mtime. Each of them must be complete.
    kept = [p for p in staged.rglob("*") if p.is_file() and p.name != MARKER
            and _same_stat(p, source / p.relative_to(staged))]
    assert len(kept) >= 250
    assert all(p.read_bytes() == (source / p.relative_to(staged)).read_bytes() for p in kept)
    result = stage(source, staged, StageParams(link=False))
    assert result.written == result.files - 1 - len(kept)  # only the rest was copied (data.yaml aside)
    assert {k: v for k, v in staged_digest(staged).items() if k != "data.yaml"} == \
        {k: v for k, v in tree_digest(source).items() if k != "data.yaml"}


def test_a_partly_written_file_is_rewritten_even_at_full_size(tiny_dataset, tmp_path):
    """What a kill -9 mid-copy leaves: files under their final names, written but without the source's mtime."""
    staged = tmp_path / "staged"
    stage(tiny_dataset, staged, COPY)
    marker = json.loads((staged / MARKER).read_text())
    (staged / MARKER).write_text(json.dumps({"key": marker["key"], "complete": False}))
    images = sorted((staged / "images" / "train").iterdir())
    images[0].write_bytes(images[0].read_bytes()[:100])  # cut short
    images[1].write_bytes(bytes(images[1].stat().st_size))  # full size, but not the bytes yet
    expected = {k: v for k, v in tree_digest(tiny_dataset).items() if k != "data.yaml"}
    assert stage(tiny_dataset, staged, COPY).written == 2
    assert {k: v for k, v in staged_digest(staged).items() if k != "data.yaml"} == expected


def _same_stat(staged: Path, source: Path) -> bool:
    a, b = staged.stat(), source.stat()
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns
