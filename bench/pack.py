"""Benchmark: a dataset tracked as a directory against the same dataset packed (`yolopipe pack`), moved by
`dvc push` and `dvc pull` to a local-directory remote, to moto (S3) and to the GCS emulator; pull-plus-stage
of the pack against `cp -r` of the directory; and the bytes an incremental push uploads after adding 1%.

    python bench/pack.py                         # 40,000 files: 20,000 JPEGs of 320x240 + their labels
    python bench/pack.py --files 20000 --servers local,s3

The servers are the test fixtures' (tests/objstore.py) on 127.0.0.1, as in bench/remote.py: the figures say
how the two forms compare on the same server in the same run, not what GCS or S3 would give. Every figure
is one run with a warm page cache; pulls start from an empty DVC cache and an empty workspace copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from objstore import GcsEmulator, MotoS3  # noqa: E402
from remote import DVC, timed  # noqa: E402
from yolopipe.pack.index import read_index  # noqa: E402

STAGE = ("import sys; from pathlib import Path; from yolopipe.stage import stage; "
         "print(stage(Path(sys.argv[1]), Path(sys.argv[2])).summary)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40_000, help="images + labels (half of each)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--shard-mb", type=int, default=64, help="pack.shard_mb (small, so a bench-sized "
                                                                  "dataset has several shards to extract at once)")
    parser.add_argument("--jobs", type=int, default=8, help="dvc push/pull -j")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of pull-plus-stage against cp -r")
    parser.add_argument("--servers", default="local,s3,gcs", help="comma-separated: local, s3, gcs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="yolopipe-bench-pack-"))
    try:
        run_benchmark(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_benchmark(work: Path, args: argparse.Namespace) -> None:
    images = args.files // 2
    plain, packed = _project(work / "plain"), _project(work / "packed")
    dataset = plain / "data" / "ds"
    _run([sys.executable, "-m", "yolopipe.cli", "synth", str(dataset), "--train", str(images * 9 // 10),
          "--val", str(images - images * 9 // 10), "--test", "0", "--width", str(args.width),
          "--height", str(args.height)], work)
    files = sum(1 for p in dataset.rglob("*") if p.is_file())
    megabytes = sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file()) / 1e6
    add_plain = timed([*DVC, "add", "-q", "data/ds"], plain)
    pack_seconds = _pack(dataset, packed, args.shard_mb)
    add_packed = timed([*DVC, "add", "-q", "data/ds.shards"], packed)
    shards = len(list((packed / "data" / "ds.shards").glob("*.tar")))
    print(f"\n{files} files ({megabytes:.0f} MB, {args.width}x{args.height} JPEGs and labels); "
          f"pack: {shards} shards of <= {args.shard_mb} MiB; dvc -j {args.jobs}")
    print(f"dvc add of the directory {add_plain:.1f} s; yolopipe pack {pack_seconds:.1f} s, "
          f"then dvc add of the shards {add_packed:.1f} s")
    rows = []
    for server in args.servers.split(","):
        rows += _transfer(work, server, plain, packed, args.jobs)
    print(f"\n{'':34} {'directory':>10} {'packed':>8} {'dir/packed':>10}")
    for name, directory, pack_time in rows:
        print(f"{name:34} {directory:9.1f}s {pack_time:7.1f}s {directory / pack_time:9.1f}x")
    if "local" in args.servers.split(","):
        _pull_and_stage(work, packed, dataset, args.jobs, args.rounds)
        _incremental(work, plain, packed, dataset, args.shard_mb, args.jobs)


def _project(root: Path) -> Path:
    root.mkdir(parents=True)
    _run(["git", "init", "-q"], root)
    _run([*DVC, "init", "-q"], root)
    return root


def _pack(dataset: Path, packed: Path, shard_mb: int) -> float:
    (packed / "params.yaml").write_text(f"pack:\n  shard_mb: {shard_mb}\n")
    return timed([sys.executable, "-m", "yolopipe.cli", "pack", str(dataset), "--out", "data/ds.shards"], packed)


def _transfer(work: Path, server: str, plain: Path, packed: Path, jobs: int) -> list[tuple[str, float, float]]:
    """Push and pull (from an empty cache, with checkout) both forms to one server."""
    store = None
    env: dict[str, str] = {}
    if server == "local":
        for project in (plain, packed):
            url = work / f"remote-{project.name}"
            url.mkdir(exist_ok=True)
            _run([*DVC, "remote", "add", "-f", "local", str(url)], project)
    else:
        store = MotoS3(work) if server == "s3" else GcsEmulator(work, lazy_index=True)
        store.start()
        env = store.client_env()
        for project in (plain, packed):
            store.configure(project, store.make_bucket(), server)
    try:
        push = [timed([*DVC, "push", "-q", "-r", server, "-j", str(jobs)], p, env) for p in (plain, packed)]
        pull = [_pull(p, tracked, server, jobs, env) for p, tracked in ((plain, "ds"), (packed, "ds.shards"))]
    finally:
        if store:
            store.stop()
    label = {"local": "local directory", "s3": "moto (S3)", "gcs": "GCS emulator"}[server]
    return [(f"dvc push, {label}", *push), (f"dvc pull + checkout, {label}", *pull)]


def _pull(project: Path, tracked: str, remote: str, jobs: int, env: dict[str, str]) -> float:
    """dvc pull into an empty cache and workspace: what a new machine does."""
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / tracked)
    seconds = timed([*DVC, "pull", "-q", "-r", remote, "-j", str(jobs)], project, env)
    assert (project / "data" / tracked).is_dir()
    return seconds


def _pull_and_stage(work: Path, packed: Path, dataset: Path, jobs: int, rounds: int) -> None:
    """dvc pull of the shards (empty cache) plus stage, against cp -r of the directory; rounds in turn,
    the order alternating, so a neighbour's burst of load does not land on one side only."""
    shards, staged, copy = packed / "data" / "ds.shards", work / "staged", work / "cp-copy"
    measured = []
    for round_ in range(rounds):
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(copy, ignore_errors=True)
        both = []
        for side in ((0, 1) if round_ % 2 == 0 else (1, 0)):
            if side == 0:
                both.append(timed(["cp", "-r", str(dataset), str(copy)], work))
            else:
                pull = _pull(packed, "ds.shards", "local", jobs, {})
                both.append((pull, timed([sys.executable, "-c", STAGE, str(shards), str(staged)], work)))
        measured.append((both[0], both[1]) if round_ % 2 == 0 else (both[1], both[0]))
    restage = timed([sys.executable, "-c", STAGE, str(shards), str(staged)], work)
    ratios = sorted((pull + stage) / cp for cp, (pull, stage) in measured)
    cp_median = statistics.median(cp for cp, _ in measured)
    pull_median = statistics.median(pull for _, (pull, _) in measured)
    stage_median = statistics.median(stage for _, (_, stage) in measured)
    print(f"\npull-plus-stage of the pack from the local remote, {rounds} rounds (medians): dvc pull "
          f"{pull_median:.2f} s + stage {stage_median:.2f} s; cp -r of the directory {cp_median:.2f} s: "
          f"{statistics.median(ratios):.2f}x cp -r (rounds: {', '.join(f'{r:.2f}x' for r in ratios)}); "
          f"no-op restage {restage:.2f} s (with Python start-up)")


def _incremental(work: Path, plain: Path, packed: Path, dataset: Path, shard_mb: int, jobs: int) -> None:
    """Add 1% of the files (new images and labels), then pack, dvc add and dvc push each form again."""
    images = sorted((dataset / "images" / "train").iterdir())
    extra = max(1, len(images) * 2 // 100 // 2)  # images; with their labels, 1% of the files
    for image in images[:extra]:
        label = dataset / "labels" / "train" / f"{image.stem}.txt"
        shutil.copy(image, image.with_name(f"added_{image.name}"))
        shutil.copy(label, label.with_name(f"added_{label.name}"))
    _run([*DVC, "add", "-q", "data/ds"], plain)
    _pack(dataset, packed, shard_mb)
    _run([*DVC, "add", "-q", "data/ds.shards"], packed)
    print(f"\nincremental push after adding {2 * extra} files (1%) to the local remote:")
    for project in (plain, packed):
        remote = work / f"remote-{project.name}"
        before = _bytes(remote)
        seconds = timed([*DVC, "push", "-q", "-r", "local", "-j", str(jobs)], project)
        uploaded = _bytes(remote) - before
        total = _bytes(remote)
        print(f"  {project.name:9} {uploaded / 1e6:7.2f} MB uploaded of {total / 1e6:.1f} MB on the remote "
              f"({uploaded / total:.1%}) in {seconds:.1f} s")
    shards = packed / "data" / "ds.shards"
    index = (shards / "pack-index.json").stat().st_size
    members = len(read_index(shards).members)
    print(f"  of the packed upload, the index is {index / 1e6:.2f} MB ({index / members:.0f} bytes per member; "
          f"the directory form's DVC .dir manifest is its twin)")


def _bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _run(command: list[str], cwd: Path) -> None:
    subprocess.run(command, cwd=cwd, check=True, env={**os.environ})


if __name__ == "__main__":
    main()
