"""Benchmark: `dvc push` of a dataset to a local-directory remote, to moto (S3) and to the GCS emulator, with
`cp -r` of the same files as the baseline measured in the same run.

    python bench/remote.py                      # 10,000 files of 20 KiB, dvc push -j 8
    python bench/remote.py --files 2000 --jobs 4

The servers are the test fixtures' (tests/objstore.py) on 127.0.0.1, so the figures are those of the
fixtures, not of GCS or S3: they say what the test suite can afford and how the protocols compare here.
The GCS emulator runs with its index written lazily: the stock emulator rewrites it after every upload,
which makes 10,000 files take about 18 minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from objstore import GcsEmulator, MotoS3  # noqa: E402

DVC = [sys.executable, "-m", "dvc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=20 * 1024, help="bytes per file")
    parser.add_argument("--jobs", type=int, default=8, help="dvc push -j")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="yolopipe-bench-remote-"))
    try:
        project = _project(work / "project", args.files, args.size)
        megabytes = args.files * args.size / 1e6
        rows = [("cp -r (baseline)", timed(["cp", "-r", str(project / "data"), str(work / "copy")], work))]
        local = work / "local-remote"
        local.mkdir()
        rows.append(("dvc push, local directory", _push(project, "local", str(local), {}, args.jobs)))
        servers = (("dvc push, moto (S3)", MotoS3(work)),
                   ("dvc push, GCS emulator", GcsEmulator(work, lazy_index=True)))
        for name, server in servers:
            server.start()
            try:
                bucket = server.make_bucket()
                server.configure(project, bucket)
                remote = "s3" if isinstance(server, MotoS3) else "gcs"
                rows.append((name, _push(project, remote, None, server.client_env(), args.jobs)))
            finally:
                server.stop()
        baseline = rows[0][1]
        print(f"\n{args.files} files of {args.size} bytes ({megabytes:.0f} MB), dvc push -j {args.jobs}")
        print(f"{'':28} {'seconds':>8} {'files/s':>9} {'MB/s':>7} {'x cp -r':>8}")
        for name, seconds in rows:
            print(f"{name:28} {seconds:8.1f} {args.files / seconds:9.0f} {megabytes / seconds:7.1f} "
                  f"{seconds / baseline:8.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _project(root: Path, files: int, size: int) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*DVC, "init", "-q"], cwd=root, check=True)
    data = root / "data"
    for index in range(files):
        path = data / f"{index % 100:02d}" / f"{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    subprocess.run([*DVC, "add", "-q", "data"], cwd=root, check=True)
    return root


def _push(project: Path, remote: str, url: str | None, env: dict, jobs: int) -> float:
    if url:
        subprocess.run([*DVC, "remote", "add", "-f", remote, url], cwd=project, check=True)
    return timed([*DVC, "push", "-q", "-r", remote, "-j", str(jobs)], project, env)


def timed(command: list[str], cwd: Path, env: dict | None = None) -> float:
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
