"""Test only: Ultralytics' own DDP path (its generated script under torch.distributed.run) with 2 CPU processes
on gloo. Only the CUDA-specific device setup differs from yolopipe.train.ddp.Trainer: the world size (0 on the
CPU for Ultralytics), the process group and device in _setup_ddp, DDP's device_ids for a CPU module, and the
device of the final validation (Ultralytics' validator puts a DDP rank on CUDA).
Importable by the ranks: pytest puts tests/ on sys.path and Ultralytics' script copies sys.path."""

from __future__ import annotations

import atexit
import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from yolopipe.train.ddp import Trainer
from yolopipe.train.ranks import LOCAL_RANK, RANK

WORLD_SIZE = 2
WRITES_ENV = "YOLOPIPE_TEST_RANK_WRITES"  # a directory: each rank lists the files it wrote there, and its batch
_SEEN: dict = {"writes": set(), "batch": None, "batches": 0, "exit": None}


class GlooTrainer(Trainer):
    @classmethod
    def launches_ranks(cls, device: str | None) -> bool:
        return True

    def __init__(self, *args, **kwargs) -> None:
        if RANK >= 0 and os.environ.get(WRITES_ENV):
            _record_writes(os.environ[WRITES_ENV])
        super().__init__(*args, **kwargs)
        self.world_size = WORLD_SIZE
        self.ddp = LOCAL_RANK == -1
        self.add_callback("on_train_batch_end", _count_batch)

    def _build_train_pipeline(self) -> None:
        super()._build_train_pipeline()
        _SEEN["batch"] = self.train_loader.batch_size

    def _setup_ddp(self) -> None:
        dist.init_process_group("gloo", rank=RANK, world_size=self.world_size, timeout=timedelta(seconds=120))
        self.device = torch.device("cpu")
        torch.set_num_threads(1)  # 2 ranks on a 2-core box
        # What follows patches this rank's process only.
        torch.nn.parallel.DistributedDataParallel = _CpuDDP
        from ultralytics.engine import validator

        validator.get_torch_device_backend = lambda device_type: _FirstDevice
        validator.AutoBackend = _on_cpu(validator.AutoBackend)


class _CpuDDP(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, module, device_ids=None, **kwargs) -> None:
        super().__init__(module, device_ids=None if device_ids == [None] else device_ids, **kwargs)


def _count_batch(trainer) -> None:
    _SEEN["batches"] += 1


class _FirstDevice:
    @staticmethod
    def current_device() -> int:
        return 0


def _on_cpu(auto_backend):
    def build(*args, device=None, **kwargs):
        return auto_backend(*args, device=torch.device("cpu"), **kwargs)

    return build


def _record_writes(directory: str) -> None:
    """List every path this process opens for writing, renames, creates or removes (Python audit events)."""
    written: set[str] = _SEEN["writes"]

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            mode, flags = args[1] or "", args[2] or 0
            if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                written.add(os.fsdecode(args[0]))
        elif event in {"os.rename", "os.remove", "os.mkdir", "shutil.rmtree", "shutil.copyfile"}:
            written.update(os.fsdecode(a) for a in args if isinstance(a, str | bytes | os.PathLike))

    sys.addaudithook(hook)
    stock_excepthook = sys.excepthook

    def excepthook(kind, value, traceback) -> None:  # how the rank ended: the exception it exits with
        _SEEN["exit"] = kind.__name__
        stock_excepthook(kind, value, traceback)

    sys.excepthook = excepthook
    atexit.register(lambda: open(os.path.join(directory, f"rank{RANK}.json"), "w").write(json.dumps(
        {**_SEEN, "writes": sorted(os.path.abspath(p) for p in written)})))
