"""Data-parallel training across processes started by ``torchrun``: one agent, one env batch per process.

``torchrun --nproc_per_node=K -m rlmem train ...`` starts K processes with ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK`` set; :func:`init` joins them into one process group (Gloo on the
CPU, NCCL on CUDA, each process on GPU ``LOCAL_RANK``). Every process then steps its own env
batch from its own seed stream (:func:`rank_seed`), and after each backward pass the gradients
are averaged over the processes (:func:`average_gradients`: one all-reduce of a flat vector,
simplest with the recurrent unroll), so the weights stay identical everywhere. Rank 0 alone
writes files. Every collective has a timeout: a process that dies or stalls makes the others
fail with :class:`DistributedError` instead of waiting forever.

Without ``WORLD_SIZE`` > 1 nothing here does anything: a single process runs exactly as before.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 300.0
"""Seconds a collective waits for the other processes before failing (``rlmem train --dist-timeout``)."""

RANK_SEED_OFFSET = 1_000_003
"""Rank r's envs, sampling and minibatch order are seeded with ``seed + r * RANK_SEED_OFFSET`` (rank 0: ``seed``)."""


class DistributedError(RuntimeError):
    """A collective failed: another process died, stalled past the timeout, or the group could not form."""


def requested() -> bool:
    """Whether this process was started as one of several (``WORLD_SIZE`` > 1, as torchrun sets it)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Whether this process writes files and prints progress (rank 0, or the only process)."""
    return rank() == 0


def rank_seed(seed: int) -> int:
    """This process's seed for its envs and sampling: ``seed`` on rank 0 (and single-process)."""
    return seed + rank() * RANK_SEED_OFFSET


def init(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join torchrun's process group if ``WORLD_SIZE`` > 1; the device this process runs on.

    ``device``: the run's device, resolved; a CUDA run uses GPU ``LOCAL_RANK`` of this node.
    """
    if not requested() or active():
        return _local_device(device) if active() else device
    if not timeout_s > 0:
        raise ValueError(f"--dist-timeout must be > 0 seconds, got {timeout_s!r}")
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE > 1 but {name} is not set: start data-parallel runs with torchrun")
    device = _local_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as error:  # noqa: BLE001 - a one-line error, whatever the backend raised
        raise DistributedError(f"could not join the process group ({backend}): {_first_line(error)}") from None
    return device


def _local_device(device: torch.device) -> torch.device:
    if device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def close() -> None:
    """Leave the process group (at the end of a run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _collective(call, *args, **kwargs) -> None:
    """Run one collective; any failure becomes a DistributedError that says which rank saw it and why."""
    try:
        call(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - Gloo and NCCL raise RuntimeError subclasses of their own
        raise DistributedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: a collective failed ({_first_line(error)}); "
            "another process died or stalled longer than --dist-timeout") from None


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced in place over all processes (``op``: 'sum' or 'max'); unchanged in one process."""
    if active():
        _collective(dist.all_reduce, tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def average_gradients(parameters) -> None:
    """Replace every gradient by its mean over all processes: one all-reduce of one flat vector."""
    if not active():
        return
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    all_reduce_(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def broadcast_parameters(modules) -> None:
    """Copy rank 0's weights to every process (so all start from the same point, e.g. after a resume)."""
    if not active():
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            _collective(dist.broadcast, tensor.data, src=0)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "RANK_SEED_OFFSET",
    "DistributedError",
    "active",
    "all_reduce_",
    "average_gradients",
    "broadcast_parameters",
    "close",
    "init",
    "is_main",
    "rank",
    "rank_seed",
    "requested",
    "world_size",
]
