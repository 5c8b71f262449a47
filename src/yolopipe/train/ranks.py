"""Which process does what under DDP, and which devices `train.device: auto` means (no Ultralytics import).

torch.distributed.run sets RANK and LOCAL_RANK in each process it starts; a process that did not come from
it (one device, or the launcher of several) has neither: -1.
"""

from __future__ import annotations

import os

RANK = int(os.environ.get("RANK", -1))
LOCAL_RANK = int(os.environ.get("LOCAL_RANK", -1))


def runs_epoch_work(rank: int | None = None) -> bool:
    """True in the process whose per-epoch work counts: the only one (-1), or DDP's rank 0."""
    return (RANK if rank is None else rank) in {-1, 0}


def training_device(device: str, batch: int, gpus: int) -> str | None:
    """What Ultralytics gets for train.device. `auto`: every visible GPU ("0,1,..") when there are several
    (but one with auto-batch, batch -1, which Ultralytics does on one GPU only), else None, for which
    Ultralytics picks the GPU or the CPU. Any other value goes as it is."""
    if device != "auto":
        return device
    if gpus > 1 and batch != -1:
        return ",".join(str(index) for index in range(gpus))
    return None


def visible_gpus() -> int:
    """CUDA devices this process sees (CUDA_VISIBLE_DEVICES applies)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def agreed_signal(signum: int | None, trainer) -> int | None:
    """In a DDP rank, the signal any rank has received, so that all stop at the same batch (every rank
    calls this at the same points of the loop); elsewhere `signum` itself."""
    if getattr(trainer, "world_size", 0) <= 1 or LOCAL_RANK == -1:
        return signum
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return signum

    flag = torch.tensor([signum or 0], dtype=torch.int32, device=trainer.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None
