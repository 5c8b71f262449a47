"""Checkpoints off the box: every `train.checkpoint_every` epochs, models/last.pt and the dvclive files go to
the project's DVC remote, through DVC's own filesystem and credentials, so a new machine can resume after a
spot instance vanished with its disk.

They live under `<remote>/yolopipe-checkpoints/<fingerprint>/`, beside (not inside) DVC's `files/`, so
`dvc gc -c` leaves them alone; the fingerprint keeps runs with other params or data apart. A finished
training deletes its checkpoint: the weights then travel by `dvc push` like every other output.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from yolopipe.errors import PipelineError
from yolopipe.remote import PLACEHOLDER_BUCKET, Remote, explain, open_remote

PREFIX = "yolopipe-checkpoints"


class RemoteCheckpoints:
    """Uploads in a background thread, one at a time, so training waits for the network only when the
    previous upload has not finished by the next one."""

    def __init__(self, remote: Remote, fingerprint: str, every: int, scratch_dir: Path) -> None:
        self.remote, self.every = remote, every
        self.key = f"{remote.path}/{PREFIX}/{fingerprint[:32]}"
        self.url = f"{remote.url.rstrip('/')}/{PREFIX}/{fingerprint[:32]}"
        self.snapshot = scratch_dir / "checkpoint-upload"
        self.uploaded_epoch = -1
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, project: Path, fingerprint: str, every: int, scratch_dir: Path) -> RemoteCheckpoints | None:
        """None when `every` is 0 (off); an error now, not after an epoch, when there is no usable remote."""
        if not every:
            return None
        try:
            remote = open_remote(project)
        except PipelineError as exc:
            raise PipelineError(f"train.checkpoint_every is {every}, but {exc.message}", hint=exc.hint) from None
        if remote.bucket == PLACEHOLDER_BUCKET:
            raise PipelineError(f"train.checkpoint_every is {every}, but remote '{remote.name}' is the placeholder "
                                f"{remote.url}", hint=f"dvc remote modify {remote.name} url "
                                                      f"{remote.protocol}://BUCKET/yolopipe, or checkpoint_every: 0")
        return cls(remote, fingerprint, every, scratch_dir)

    def after_epoch(self, epoch: int, last: Path, live_dir: Path, force: bool = False) -> None:
        """Start uploading `last` and the dvclive files if 0-based `epoch` is due (or `force`)."""
        if epoch <= self.uploaded_epoch or not (force or (epoch + 1) % self.every == 0):
            return
        self.wait()
        shutil.rmtree(self.snapshot, ignore_errors=True)
        (self.snapshot / "live").mkdir(parents=True)
        shutil.copy2(last, self.snapshot / "last.pt")  # the next epoch replaces `last` while this uploads
        if live_dir.is_dir():
            shutil.copytree(live_dir, self.snapshot / "live", dirs_exist_ok=True)
        self.uploaded_epoch = epoch
        self._thread = threading.Thread(target=self._upload, args=(epoch,), daemon=True)
        self._thread.start()

    def _upload(self, epoch: int) -> None:
        try:
            # dvclive files first: a last.pt on the remote always has its curves there too
            for path in sorted((self.snapshot / "live").rglob("*")):
                if path.is_file():
                    rel = path.relative_to(self.snapshot / "live").as_posix()
                    self.remote.fs.put_file(str(path), f"{self.key}/live/{rel}")
            self.remote.fs.put_file(str(self.snapshot / "last.pt"), f"{self.key}/last.pt")
        except Exception as exc:  # noqa: BLE001 - a flaky network must not stop the training
            print(f"yolopipe train: warning: epoch {epoch + 1} checkpoint not uploaded ({explain(exc, self.remote)});"
                  " training goes on", flush=True)
            return
        print(f"yolopipe train: epoch {epoch + 1} checkpoint uploaded to {self.url}", flush=True)

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def fetch(self, target: Path, live_dir: Path) -> bool:
        """Download this run's remote checkpoint to `target` and its dvclive files into `live_dir`."""
        fs = self.remote.fs
        try:
            if not fs.exists(f"{self.key}/last.pt"):
                return False
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.download")
            fs.get_file(f"{self.key}/last.pt", str(partial))
            for key in fs.find(f"{self.key}/live"):
                local = live_dir / Path(key).relative_to(f"{self.key}/live")
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(key, str(local))
        except Exception as exc:  # noqa: BLE001
            raise PipelineError(f"cannot read the remote checkpoint {self.url}: {explain(exc, self.remote)}",
                                hint="yolopipe remote check; or set train.checkpoint_every: 0 to start fresh") from None
        partial.replace(target)
        return True

    def forget(self) -> None:
        """Delete this run's remote checkpoint once training has finished."""
        self.wait()
        try:
            self.remote.fs.rm(self.key, recursive=True)
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001
            print(f"yolopipe train: warning: could not delete {self.url}: {explain(exc, self.remote)}", flush=True)
        shutil.rmtree(self.snapshot, ignore_errors=True)
