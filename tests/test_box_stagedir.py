"""Picking YOLOPIPE_STAGE_DIR from the mount table: local NVMe first, then the most free space."""

import sys
from pathlib import Path

from yolopipe.box.stagedir import Space, parse_mounts, pick_stage_dir

from conftest import run

TB = 10**12
# A rented box: NVMe root and scratch, a big spinning disk, a home on NFS, a bucket through gcsfuse, the usual
# kernel mounts, Docker-style bind mounts of single files, a read-only disk and the EFI partition.
RENTED_BOX = r"""proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
devtmpfs /dev devtmpfs rw,nosuid,size=65536k,mode=755 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
tmpfs /run tmpfs rw,nosuid,nodev,mode=755 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
/dev/nvme0n1p1 / ext4 rw,relatime,discard 0 0
/dev/nvme0n1p15 /boot/efi vfat rw,relatime,fmask=0077 0 0
/dev/nvme1n1 /ephemeral xfs rw,relatime,attr2,inode64 0 0
/dev/sdb1 /mnt/hdd ext4 rw,relatime 0 0
/dev/sdc1 /mnt/archive ext4 ro,relatime 0 0
10.0.0.5:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
bucket /mnt/bucket fuse.gcsfuse rw,nosuid,nodev,relatime,user_id=0 0 0
/dev/nvme0n1p1 /etc/hosts ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev 0 0
/dev/sdd1 /mnt/my\040disk ext4 rw,relatime 0 0
"""
FREE = {"/": 0.1 * TB, "/boot/efi": 0.0001 * TB, "/ephemeral": 3.5 * TB, "/mnt/hdd": 8 * TB,
        "/mnt/archive": 10 * TB, "/home": 20 * TB, "/mnt/bucket": 1000 * TB, "/etc/hosts": 0.1 * TB,
        "/tmp": 0.06 * TB, "/mnt/my disk": 0.5 * TB}


def probe(free: dict, files=("/etc/hosts",), unwritable=()):
    def space(mountpoint: str) -> Space | None:
        if free.get(mountpoint) is None:
            return None
        return Space(int(free[mountpoint]), mountpoint not in files, mountpoint not in unwritable)
    return space


def test_local_nvme_with_the_most_free_space_wins_and_the_rest_is_explained():
    choice = pick_stage_dir(RENTED_BOX, probe(FREE))
    assert choice.path == Path("/ephemeral/yolopipe-stage")
    assert choice.reason == ("staging on /ephemeral (/dev/nvme1n1, xfs, 3500 GB free): the NVMe mount with the most "
                             "free space of 4 local mounts; YOLOPIPE_STAGE_DIR=/ephemeral/yolopipe-stage")
    assert choice.skipped == [
        "/boot/efi (vfat, /dev/nvme0n1p15): a system mount",
        "/mnt/archive (ext4, /dev/sdc1): read-only",
        "/home (nfs4, 10.0.0.5:/export/home): a network file system",
        "/mnt/bucket (fuse.gcsfuse, bucket): a FUSE mount (a bucket or network mount, or user-space)",
        "/etc/hosts (ext4, /dev/nvme0n1p1): a file, not a directory (a bind mount)",
        "/tmp (tmpfs, tmpfs): in memory",
    ]
    assert choice.report.splitlines()[1] == "  skipped /boot/efi (vfat, /dev/nvme0n1p15): a system mount"


def test_without_nvme_the_largest_local_disk_wins():
    no_nvme = RENTED_BOX.replace("/dev/nvme", "/dev/xvd")
    choice = pick_stage_dir(no_nvme, probe(FREE))
    assert choice.path == Path("/mnt/hdd/yolopipe-stage")
    assert "the local mount with the most free space" in choice.reason


def test_unwritable_and_unreadable_mounts_are_skipped():
    choice = pick_stage_dir(RENTED_BOX, probe({**FREE, "/ephemeral": None}, unwritable=("/mnt/hdd",)))
    assert choice.path == Path("/var/tmp/yolopipe-stage")  # the NVMe root: beats the larger non-NVMe disk
    assert "/ephemeral (xfs, /dev/nvme1n1): cannot be read" in choice.skipped
    assert "/mnt/hdd (ext4, /dev/sdb1): not writable by this user" in choice.skipped


def test_a_container_with_only_an_overlay_root_stages_in_the_repository():
    container = "overlay / overlay rw,relatime,lowerdir=/l,upperdir=/u 0 0\nproc /proc proc rw 0 0\n"
    choice = pick_stage_dir(container, probe({"/": TB}))
    assert choice.path is None and "staging inside the repository" in choice.reason
    assert choice.skipped == ["/ (overlay, overlay): not a local block device"]


def test_mount_points_with_spaces_are_decoded():
    mount = next(m for m in parse_mounts(RENTED_BOX) if m.source == "/dev/sdd1")
    assert mount.mountpoint == "/mnt/my disk" and mount.options == ("rw", "relatime")


def test_cli_prints_the_directory_on_stdout_and_why_on_stderr(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/nvme9n1 {tmp_path} ext4 rw 0 0\nserver:/x /net nfs rw 0 0\n")
    result = run([sys.executable, "-m", "yolopipe.cli", "box", "pick-stage-dir", "--mounts", str(mounts)], tmp_path)
    assert result.stdout == f"{tmp_path / 'yolopipe-stage'}\n"
    assert result.stderr.startswith(f"staging on {tmp_path} (/dev/nvme9n1, ext4, ")
    assert "skipped /net (nfs, server:/x): a network file system" in result.stderr
