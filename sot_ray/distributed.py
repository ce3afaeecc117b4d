"""Data-parallel helpers over ``torch.distributed`` (plain PyTorch; no-ops in one process).

Ray Train sets up the process group of a multi-worker trial; the engine, the consistency
regularizer and CRD's memory use these helpers so that every rank holds the same model, the same
consistency bank and the same memory.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    return world()[1] > 1


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (same shape on all ranks), concatenated in rank order along dim 0."""
    if not is_distributed():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def all_reduce_(t: torch.Tensor, average: bool = False) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t)
        if average:
            t /= dist.get_world_size()
    return t


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` across ranks in one flat all-reduce (a parameter
    without a gradient on this rank contributes zeros, so ranks stay in step)."""
    if not is_distributed():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n


def broadcast_module_(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def broadcast_object(obj):
    """Rank 0's picklable ``obj`` on every rank (e.g. a decision or an error message)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()
