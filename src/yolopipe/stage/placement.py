"""Placing one staged file: reflink, hard link or copy, and the rule that marks a file complete.

Every file is written under its final name and given the source's mtime only after its last byte
(`mark_complete`), so after a `kill -9` a file with the source's size and mtime is complete and a partial
one still has the time it was written. `copy_engine` (the whole copy) and `resize` (pre-resized images) both place
files through here.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import NamedTuple

from yolopipe.dataset import IMAGE_SUFFIXES

_FICLONE = 0x40049409  # ioctl: copy-on-write clone (btrfs, xfs); fails fast elsewhere
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


class Job(NamedTuple):
    """One file to stage, with the source's metadata a complete copy must match. A tuple of plain values,
    so thousands of them cross to worker processes cheaply."""

    source: str
    target: str
    same_fs: bool
    """Source and target are on one file system: reflinks and hard links are possible."""
    mode: int
    mtime_ns: int
    size: int


def place(job: Job) -> bool:
    """Put one file at its staged path; True when it was hard-linked."""
    src, dst, same_fs, mode, mtime_ns, size = job
    if same_fs and _reflink(src, dst, mtime_ns):
        return False
    if same_fs and not mode & _WRITE_BITS and not _rewritten_by_ultralytics(src):
        # Only files nobody may write (DVC's protected cache links) are hard-linked: the link shares the
        # source's inode, and a read-only inode makes a writer fail instead of changing the source.
        try:
            if os.path.lexists(dst):
                os.unlink(dst)
            os.link(src, dst, follow_symlinks=True)  # atomic: complete under its final name at once
            return True
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                raise
    copy(src, dst, mtime_ns, size)
    return False


def copy(src: str, dst: str, mtime_ns: int, size: int) -> None:
    """Write the `size` bytes of src to dst, then give dst the source's mtime: the mark of a complete file."""
    fin = os.open(src, os.O_RDONLY)
    try:
        fout = create(dst)
        try:
            _copy_bytes(fin, fout, size)
            mark_complete(fout, mtime_ns)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def create(dst: str) -> int:
    """A new, empty file at dst, opened for writing (its mtime is now: not yet a complete file)."""
    try:
        return os.open(dst, _CREATE, 0o666)
    except FileExistsError:
        # A damaged file of an earlier run: replace it, never write into it, as it may be a hard link
        # into the source (DVC's cache).
        os.unlink(dst)
        return os.open(dst, _CREATE, 0o666)


def mark_complete(fd: int, mtime_ns: int) -> None:
    """Give a fully written file the source's mtime (call it last, after the final byte)."""
    os.utime(fd, ns=(mtime_ns, mtime_ns))


_sendfile_works = True


def _copy_bytes(fin: int, fout: int, size: int) -> None:
    global _sendfile_works
    done = 0
    if _sendfile_works:
        try:
            while done < size:  # in the kernel, GIL released; `size` spares the final zero-length call
                sent = os.sendfile(fout, fin, None, size - done)
                if not sent:
                    break
                done += sent
            return
        except OSError as exc:
            if done or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            _sendfile_works = False  # a file system without sendfile: read and write from now on
    while done < size and (chunk := os.read(fin, min(size - done, 1 << 20))):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fout, view):]
        done += len(chunk)


_reflink_works = True


def _reflink(src: str, dst: str, mtime_ns: int) -> bool:
    global _reflink_works
    if not _reflink_works:
        return False
    fin = os.open(src, os.O_RDONLY)
    try:
        fout = create(dst)
        try:
            fcntl.ioctl(fout, _FICLONE, fin)
            mark_complete(fout, mtime_ns)
            return True
        except OSError:
            _reflink_works = False  # ext4 and friends: don't ask again for every file
        finally:
            os.close(fout)
    finally:
        os.close(fin)
    os.unlink(dst)
    return False


def _rewritten_by_ultralytics(path: str) -> bool:
    """Ultralytics rewrites, in place, a JPEG without its end marker ("corrupt JPEG restored and saved"):
    such a file is copied, never linked."""
    if os.path.splitext(path)[1].lower() not in (".jpg", ".jpeg"):
        return False
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 2:
            return True
        f.seek(-2, os.SEEK_END)
        return f.read() != b"\xff\xd9"


def is_image(rel: str) -> bool:
    return os.path.splitext(rel)[1].lower() in IMAGE_SUFFIXES
