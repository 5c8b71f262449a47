"""Pick YOLOPIPE_STAGE_DIR on a fresh machine: the local disk with the most free space, NVMe first.

Reads the mount table (/proc/mounts) and asks each mount point for its free space. Network and user-space
file systems (NFS, SMB, FUSE bucket mounts) are what staging exists to avoid, and memory file systems
(tmpfs) would hold a dataset in RAM, so only mounts of local block devices count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "9p",
              "afs", "davfs", "sshfs", "virtiofs"}
MEMORY_FS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}
SYSTEM_MOUNTS = ("/boot", "/snap", "/efi")  # small or read-only by design
SUBDIR = "yolopipe-stage"
ROOT_STAGE_DIR = Path("/var/tmp") / SUBDIR  # on the root file system, outside / itself (and /tmp may be tmpfs)


@dataclass(frozen=True)
class Space:
    free_bytes: int
    is_dir: bool = True
    writable: bool = True


@dataclass(frozen=True)
class Mount:
    source: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]

    @property
    def is_nvme(self) -> bool:
        return self.source.startswith("/dev/nvme")


@dataclass(frozen=True)
class StageDirChoice:
    path: Path | None
    """The directory for YOLOPIPE_STAGE_DIR, or None: no local disk found, stage inside the repository."""
    reason: str
    skipped: list[str] = field(default_factory=list)
    """One line per mount left out, and why."""

    @property
    def report(self) -> str:
        return "\n".join([self.reason, *(f"  skipped {line}" for line in self.skipped)])


def parse_mounts(text: str) -> list[Mount]:
    """The lines of /proc/mounts (or /etc/mtab); octal escapes such as \\040 (space) decoded."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            source, mountpoint, fstype, options = (_unescape(value) for value in fields[:4])
            mounts.append(Mount(source, mountpoint, fstype, tuple(options.split(","))))
    return mounts


def pick_stage_dir(mounts_text: str, probe: Callable[[str], Space | None]) -> StageDirChoice:
    """The best local mount for the staged copy, from the mount table's text; `probe` gives a mount point's
    free space (None if it cannot be read). NVMe devices come first, then the most free space."""
    candidates: list[tuple[Mount, Space]] = []
    skipped: list[str] = []
    for mount in parse_mounts(mounts_text):
        why = _excluded(mount)
        space = None if why else probe(mount.mountpoint)
        if not why and space is None:
            why = "cannot be read"
        elif not why and not space.is_dir:
            why = "a file, not a directory (a bind mount)"
        elif not why and not space.writable:
            why = "not writable by this user"
        if why:
            if not _is_pseudo(mount):  # proc, sysfs, cgroup...: noise in the report
                skipped.append(f"{mount.mountpoint} ({mount.fstype}, {mount.source}): {why}")
            continue
        candidates.append((mount, space))
    if not candidates:
        return StageDirChoice(None, "no local disk mount found: staging inside the repository (data/staged)",
                              skipped)
    # Ties (one device mounted twice) go to a dedicated mount rather than /.
    mount, space = max(candidates, key=lambda c: (c[0].is_nvme, c[1].free_bytes, c[0].mountpoint != "/"))
    path = ROOT_STAGE_DIR if mount.mountpoint == "/" else Path(mount.mountpoint) / SUBDIR
    kind = "NVMe" if mount.is_nvme else "local"
    others = "" if len(candidates) == 1 else f" of {len(candidates)} local mounts"
    reason = (f"staging on {mount.mountpoint} ({mount.source}, {mount.fstype}, {space.free_bytes / 1e9:.0f} GB "
              f"free): the {kind} mount with the most free space{others}; YOLOPIPE_STAGE_DIR={path}")
    return StageDirChoice(path, reason, skipped)


def probe_mount(mountpoint: str) -> Space | None:
    """The free space of a real mount point, for pick_stage_dir."""
    try:
        stats = os.statvfs(mountpoint)
    except OSError:
        return None
    return Space(stats.f_bavail * stats.f_frsize, os.path.isdir(mountpoint), os.access(mountpoint, os.W_OK))


def _excluded(mount: Mount) -> str | None:
    fstype = mount.fstype
    if fstype in NETWORK_FS:
        return "a network file system"
    if fstype == "fuse" or fstype.startswith("fuse."):
        return "a FUSE mount (a bucket or network mount, or user-space)"
    if fstype in MEMORY_FS:
        return "in memory"
    if not mount.source.startswith("/dev/"):
        return "not a local block device"
    if "ro" in mount.options:
        return "read-only"
    if any(mount.mountpoint == p or mount.mountpoint.startswith(f"{p}/") for p in SYSTEM_MOUNTS):
        return "a system mount"
    return None


def _is_pseudo(mount: Mount) -> bool:
    """Kernel and runtime mounts (proc, cgroups, /dev/shm, /run): never a candidate, and noise in the report."""
    if mount.mountpoint == "/":  # a container's overlay root: worth saying why it is not used
        return False
    if any(mount.mountpoint == p or mount.mountpoint.startswith(f"{p}/") for p in ("/proc", "/sys", "/dev", "/run")):
        return True
    is_fuse = mount.fstype == "fuse" or mount.fstype.startswith("fuse.")
    return not (mount.source.startswith("/dev/") or is_fuse or mount.fstype in NETWORK_FS | MEMORY_FS)


def _unescape(value: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as \\040, \\011, \\012, \\134."""
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and value[i + 1:i + 4].isdigit() and len(value[i + 1:i + 4]) == 3:
            out.append(chr(int(value[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


if __name__ == "__main__":  # `python3 -m yolopipe.box.stagedir`: bootstrap.sh before the venv exists (stdlib only)
    import sys

    picked = pick_stage_dir(Path("/proc/mounts").read_text(), probe_mount)
    print(picked.report, file=sys.stderr)
    print(picked.path or "")
