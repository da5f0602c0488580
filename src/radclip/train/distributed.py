"""DDP helpers: process-group setup from ``torchrun`` variables and an all-gather that keeps gradients.

With DDP each rank embeds its own shard; the contrastive loss needs every rank's embeddings
as negatives. :func:`gather_features` concatenates them in rank order:

* ``with_grad=True`` uses ``torch.distributed.nn.functional.all_gather``, whose backward sums
  the gradients flowing to each rank's slice and returns this rank's part, so every rank's
  towers get the full-batch gradient (open_clip's ``gather_with_grad``);
* ``with_grad=False`` gathers detached copies and puts this rank's own (graph-carrying)
  tensor back in its slot, so gradients flow only through the local rows.

The collective calls go through :func:`_all_gather_with_grad` and :func:`_all_gather_no_grad`,
which tests replace to simulate a two-rank world without processes; ``tests/train/test_ddp_sgd_parity.py``
runs them for real (two gloo processes, one SGD step compared with one process on the whole batch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistInfo:
    """This process's place in the job (world_size 1 = not distributed)."""

    rank: int = 0  # global rank
    local_rank: int = 0  # rank on this node (selects the GPU)
    world_size: int = 1  # processes in the job

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); else a 1-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
    info = DistInfo(
        rank=dist.get_rank(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=dist.get_world_size(),
    )
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def _all_gather_with_grad(t: torch.Tensor) -> list[torch.Tensor]:
    import torch.distributed.nn.functional as dist_fn

    return list(dist_fn.all_gather(t))


def _all_gather_no_grad(t: torch.Tensor, world_size: int) -> list[torch.Tensor]:
    import torch.distributed as dist

    out = [torch.zeros_like(t) for _ in range(world_size)]
    dist.all_gather(out, t.detach())
    return out


def gather_features(
    img: torch.Tensor, txt: torch.Tensor, info: DistInfo, with_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's image and text embeddings, concatenated in rank order."""
    if info.world_size <= 1:
        return img, txt
    if with_grad:
        return torch.cat(_all_gather_with_grad(img)), torch.cat(_all_gather_with_grad(txt))
    imgs = _all_gather_no_grad(img, info.world_size)
    txts = _all_gather_no_grad(txt, info.world_size)
    imgs[info.rank], txts[info.rank] = img, txt  # keep the local graph
    return torch.cat(imgs), torch.cat(txts)


def gather_rows(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Every rank's rows of a tensor without gradient (e.g. the label vectors), concatenated in rank order."""
    if info.world_size <= 1:
        return t
    return torch.cat(_all_gather_no_grad(t, info.world_size))


def local_offset(n_local: int, info: DistInfo) -> int:
    """Row of this rank's first sample in the gathered batch (equal shard sizes assumed)."""
    return n_local * info.rank


def broadcast_model(model: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank (what DDP's constructor does).

    Each rank seeds its RNG with ``seed + rank`` (different batches), so freshly initialised heads
    differ between ranks; averaged gradients applied to different weights would let the replicas drift.
    """
    if info.world_size <= 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)


def replica_divergence(model: torch.nn.Module, info: DistInfo) -> float:
    """Largest |Δ| between this rank's parameters and rank 0's (0.0 when the replicas are in sync)."""
    if info.world_size <= 1:
        return 0.0
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])  # on their device: NCCL needs CUDA
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def cleanup_distributed(info: DistInfo) -> None:
    if info.world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
