"""yolopipe pack and staging a packed dataset: deterministic shards, incremental packs, repack, the stage
guarantees on packed input, and every kind of bad shard or index failing with its name."""

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from yolopipe import cli
from yolopipe.errors import PipelineError
from yolopipe.pack.index import INDEX_NAME, read_index
from yolopipe.pack.writer import pack
from yolopipe.params import PackParams, StageParams
from yolopipe.paths import STAGE_MARKER
from yolopipe.stage import stage
from yolopipe.synth import synthesize

from conftest import kill_stage_midway, tree_digest


def staged_digest(root: Path) -> dict[str, str]:
    return {k: v for k, v in tree_digest(root).items() if k != STAGE_MARKER}


def dataset_files(root: Path) -> dict[str, str]:
    return {k: v for k, v in tree_digest(root).items() if k not in ("data.yaml", STAGE_MARKER)}


@pytest.fixture
def packed(tiny_dataset, tmp_path) -> Path:
    return pack(tiny_dataset, out=tmp_path / "tiny.shards").shards_dir


def test_pack_is_deterministic_and_holds_plain_files_with_fixed_owner(tiny_dataset, tmp_path):
    source = tree_digest(tiny_dataset)
    first = pack(tiny_dataset, out=tmp_path / "one.shards")
    assert tree_digest(tiny_dataset) == source  # packing only reads
    # Another checkout of the same files: other mtimes (shutil.copy keeps none), same shards byte for byte.
    copy = shutil.copytree(tiny_dataset, tmp_path / "copy", copy_function=shutil.copy)
    pack(copy, out=tmp_path / "two.shards")
    assert tree_digest(tmp_path / "one.shards") == tree_digest(tmp_path / "two.shards")
    assert first.files == len(dataset_files(tiny_dataset)) and first.shards == 1
    index = read_index(first.shards_dir)
    shard = first.shards_dir / next(iter(index.shards))
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(dataset_files(tiny_dataset))
    assert {(m.uid, m.gid, m.uname, m.gname, m.mode, m.type) for m in members} == {(0, 0, "", "", 0o644, b"0")}
    assert all(index.members[m.name].md5 == hashlib.md5(
        (tiny_dataset / m.name).read_bytes()).hexdigest() for m in members)
    assert (first.shards_dir / "data.yaml").is_file()


def test_shards_split_at_shard_mb_and_default_out_is_beside_the_dataset(tmp_path):
    source = tmp_path / "big"
    synthesize(source, {"train": 60, "val": 10}, width=320, height=320, seed=3, quality=95)
    result = pack(source, PackParams(shard_mb=1))
    assert result.shards_dir == tmp_path / "big.shards"
    sizes = [p.stat().st_size for p in result.shards_dir.glob("*.tar")]
    assert result.shards == len(sizes) >= 2
    assert max(sizes) < 1.2 * 2**20


def test_staging_a_pack_gives_the_directory_staging_bytes_and_restaging_is_a_no_op(tiny_dataset, packed, tmp_path):
    before = tree_digest(packed)
    from_pack = stage(packed, tmp_path / "from_pack")
    stage(tiny_dataset, tmp_path / "from_dir", StageParams(link=False))
    # Same bytes, data.yaml included: switching data.root to the shards keeps data/staged's DVC hash.
    assert staged_digest(tmp_path / "from_pack") == staged_digest(tmp_path / "from_dir")
    assert from_pack.written == len(dataset_files(tiny_dataset))
    assert stage(packed, tmp_path / "from_pack").written == 0
    assert tree_digest(packed) == before


def test_damage_is_repaired_and_a_changed_member_is_restaged(tiny_dataset, tmp_path):
    source = shutil.copytree(tiny_dataset, tmp_path / "source")
    shards = pack(source).shards_dir
    staged = tmp_path / "staged"
    stage(shards, staged)
    images = sorted((staged / "images" / "train").iterdir())
    head = images[0].read_bytes()[:50]
    images[0].unlink()
    images[0].write_bytes(head)
    sorted((staged / "labels" / "val").iterdir())[0].unlink()
    assert stage(shards, staged).written == 2
    assert dataset_files(staged) == dataset_files(source)
    # A member whose content changes at the same size: a new md5, so a new mtime, so it is restaged.
    label = sorted((source / "labels" / "train").iterdir())[0]
    text = label.read_text()
    label.write_text(text.replace(text[0], "2" if text[0] != "2" else "1", 1))
    pack(source)
    assert stage(shards, staged).written == 1
    assert dataset_files(staged) == dataset_files(source)


def test_adding_one_percent_keeps_old_shards_and_writes_few_bytes(tmp_path):
    source = tmp_path / "ds"
    synthesize(source, {"train": 200, "val": 50}, width=64, height=64, seed=4)
    shards = pack(source, PackParams(shard_mb=1)).shards_dir
    old = {p.name: p.read_bytes() for p in shards.glob("*.tar")}
    for i in range(3):  # 3 images + 3 labels: 1.2% of the 500 files
        for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
            folder = source / kind / "train"
            shutil.copy(folder / f"train_{i:06d}{suffix}", folder / f"extra_{i}{suffix}")
    result = pack(source, PackParams(shard_mb=1))
    assert not result.repacked and result.new_shards == 1
    assert {p.name: p.read_bytes() for p in shards.glob("*.tar") if p.name in old} == old
    total = sum(p.stat().st_size for p in shards.glob("*.tar"))
    assert result.written_bytes <= 0.03 * total, (result.written_bytes, total)
    staged = tmp_path / "staged"
    stage(shards, staged)
    assert dataset_files(staged) == dataset_files(source)


def test_removed_files_become_dead_bytes_until_the_threshold_triggers_a_repack(tmp_path):
    source = tmp_path / "ds"
    synthesize(source, {"train": 40, "val": 10}, width=64, height=64, seed=5)
    params = PackParams(repack_dead_fraction=0.3)
    shards = pack(source, params).shards_dir
    shard = next(shards.glob("*.tar"))
    before = shard.read_bytes()
    train = sorted((source / "images" / "train").iterdir())
    for image in train[:5]:
        image.unlink()
    result = pack(source, params)
    assert not result.repacked and result.dead_bytes > 0 and shard.read_bytes() == before
    staged = tmp_path / "staged"
    stage(shards, staged)
    assert dataset_files(staged) == dataset_files(source)  # the dead members are not extracted
    for image in train[5:25]:
        image.unlink()
    result = pack(source, params)
    assert result.repacked and result.dead_bytes == 0 and not shard.exists()
    assert stage(shards, staged).written == 0  # the same members: the copy is still intact
    assert dataset_files(staged) == dataset_files(source)
    # An explicit repack of a clean pack rewrites the same bytes.
    digest = tree_digest(shards)
    assert cli.main(["pack", str(source), "--repack"]) == 0
    assert tree_digest(shards) == digest


def test_pre_resize_of_a_pack_matches_the_directory_stage(tiny_dataset, packed, tmp_path):
    params = StageParams(link=False, max_side=48)
    stage(packed, tmp_path / "from_pack", params)
    stage(tiny_dataset, tmp_path / "from_dir", params)
    assert staged_digest(tmp_path / "from_pack") == staged_digest(tmp_path / "from_dir")
    with Image.open(sorted((tmp_path / "from_pack" / "images" / "train").iterdir())[0]) as image:
        assert max(image.size) == 48
    assert stage(packed, tmp_path / "from_pack", params).written == 0
    assert not list((tmp_path / "from_pack").rglob("*.yolopipe-tmp"))


def test_killed_extraction_is_never_trusted_and_the_next_run_completes_it(tmp_path):
    source = tmp_path / "source"
    synthesize(source, {"train": 3000, "val": 10}, width=32, height=32, seed=2)
    shards = pack(source, PackParams(shard_mb=1)).shards_dir
    staged = tmp_path / "staged"
    kill_stage_midway(shards, staged)
    assert not json.loads((staged / STAGE_MARKER).read_text())["complete"]
    assert len(list(staged.rglob("*.jpg"))) < 3010
    result = stage(shards, staged)
    assert 0 < result.written < result.files - 1
    assert dataset_files(staged) == dataset_files(source)


def test_no_space_is_a_clear_error_before_extracting(packed, tmp_path, monkeypatch):
    from yolopipe.stage import copy_engine

    monkeypatch.setattr(copy_engine.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 10))
    with pytest.raises(PipelineError, match=r"staging needs 0\.00 GB free in .*staged but only 0\.00 GB"):
        stage(packed, tmp_path / "staged")
    assert not list((tmp_path / "staged").rglob("*.jpg"))


def test_validate_on_packed_input_names_the_member(tiny_dataset, tmp_path, monkeypatch, capsys):
    source = shutil.copytree(tiny_dataset, tmp_path / "source")
    label = sorted((source / "labels" / "train").iterdir())[0]
    label.write_text("7 0.5 0.5 0.2 0.2\n")  # class 7 of 3
    shards = pack(source).shards_dir
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump({"data": {"root": str(shards)}}))
    monkeypatch.chdir(project)
    assert cli.main(["validate"]) == 1
    report = json.loads((project / "results" / "validate" / "report.json").read_text())
    assert f"labels/train/{label.name}" in {f["path"] for f in report["findings"]}
    assert "staged copy intact" in stage(shards, project / "data" / "staged").summary  # extracted once


# Bad input: each fails with one PipelineError naming the shard or member, and never touches the pack.

def _broken(packed: Path, tmp_path: Path) -> tuple[Path, Path]:
    broken = shutil.copytree(packed, tmp_path / "broken.shards")
    return broken, next(broken.glob("*.tar"))


def _stage_fails(shards: Path, tmp_path: Path, pattern: str) -> None:
    before = tree_digest(shards)
    with pytest.raises(PipelineError, match=pattern):
        stage(shards, tmp_path / "staged")
    assert tree_digest(shards) == before
    marker = tmp_path / "staged" / STAGE_MARKER
    assert not marker.exists() or not json.loads(marker.read_text())["complete"]


def test_truncated_shard(packed, tmp_path):
    shards, shard = _broken(packed, tmp_path)
    shard.write_bytes(shard.read_bytes()[:5000])
    _stage_fails(shards, tmp_path, rf"shard {shard.name} is 5000 bytes but the index says \d+: truncated")


def test_the_cli_shows_a_bad_shard_as_one_line_naming_it(packed, tmp_path, monkeypatch, capsys):
    shards, shard = _broken(packed, tmp_path)
    shard.write_bytes(shard.read_bytes()[:-10240])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"root": str(shards)}}))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["stage"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"yolopipe stage: error: {shard}: shard {shard.name} is ") and "Traceback" not in error


def test_shard_whose_checksum_differs_from_the_index(packed, tmp_path):
    shards, shard = _broken(packed, tmp_path)
    data = bytearray(shard.read_bytes())
    data[-1] = 1  # the last zero block of the archive: every member still reads, the shard's md5 differs
    shard.write_bytes(bytes(data))
    _stage_fails(shards, tmp_path, rf"shard {shard.name}'s md5 is [0-9a-f]+, the index says")


def test_member_whose_checksum_differs_from_the_index(packed, tmp_path):
    shards, shard = _broken(packed, tmp_path)
    index = json.loads((shards / INDEX_NAME).read_text())
    index["members"][0][2] = "0" * 32
    (shards / INDEX_NAME).write_text(json.dumps(index))
    _stage_fails(shards, tmp_path, rf"member {index['members'][0][0]} in shard {shard.name} has md5")


def test_index_naming_a_missing_shard(packed, tmp_path):
    shards, shard = _broken(packed, tmp_path)
    shard.unlink()
    _stage_fails(shards, tmp_path, rf"the index names shard {shard.name}, which is missing")


def _hostile(tmp_path: Path, packed: Path, extra: list[tarfile.TarInfo], index_rows: list | None = None) -> Path:
    """A copy of the pack whose shard also holds `extra` members (after the real ones), with an index
    that vouches for the shard's size and md5: only the member checks can catch it."""
    shards, shard = _broken(packed, tmp_path)
    with tarfile.open(shard) as tar:
        real = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in real:
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    shard.write_bytes(buffer.getvalue())
    index = json.loads((shards / INDEX_NAME).read_text())
    index["shards"][0].update(size=len(buffer.getvalue()), md5=hashlib.md5(buffer.getvalue()).hexdigest())
    index["members"] += index_rows or []
    (shards / INDEX_NAME).write_text(json.dumps(index))
    return shards


def _file(name: str, size: int = 4) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/absolute.txt", "labels/../../escaped.txt"])
def test_tar_slip_member_in_a_shard(packed, tmp_path, name):
    shards = _hostile(tmp_path, packed, [_file(name)])
    _stage_fails(shards, tmp_path, rf"member '{name}' in shard .* is not a plain relative path")
    assert not (tmp_path / "escaped.txt").exists()


def test_tar_slip_path_in_the_index(packed, tmp_path):
    shards, shard = _broken(packed, tmp_path)
    index = json.loads((shards / INDEX_NAME).read_text())
    index["members"].append(["../escaped.txt", 4, "0" * 32, shard.name])
    (shards / INDEX_NAME).write_text(json.dumps(index))
    _stage_fails(shards, tmp_path, r"member '\.\./escaped\.txt' in the index .* is not a plain relative path")


def test_symlink_member_pointing_outside(packed, tmp_path):
    link = tarfile.TarInfo("images/train/link.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    shards = _hostile(tmp_path, packed, [link])
    _stage_fails(shards, tmp_path, r"member images/train/link\.jpg in shard .* is a link to '/etc/passwd'")
    assert not (tmp_path / "staged" / "images" / "train" / "link.jpg").exists()


def test_duplicate_member_in_a_shard(packed, tmp_path):
    first = read_index(packed).members
    name = next(iter(first))
    shards = _hostile(tmp_path, packed, [_file(name, first[name].size)])
    _stage_fails(shards, tmp_path, rf"member {name} appears twice in shard")


def test_duplicate_member_in_the_index(packed, tmp_path):
    shards, _ = _broken(packed, tmp_path)
    index = json.loads((shards / INDEX_NAME).read_text())
    index["members"].append(index["members"][0])
    (shards / INDEX_NAME).write_text(json.dumps(index))
    _stage_fails(shards, tmp_path, rf"member {index['members'][0][0]} is listed twice")
