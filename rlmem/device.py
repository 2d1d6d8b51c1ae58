"""Device selection shared by envs, agents and scripts: one rule, one error message."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into cuda when a GPU is present (else cpu) and check that cuda exists.

    Raises a ValueError (one clear line, not a CUDA traceback) when cuda is asked for on a
    machine without a GPU.
    """
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available (use 'cpu' or 'auto')")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return resolved


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (a GPU's free memory, or the host's available RAM); None where it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(what: str, nbytes: int, device: torch.device, remedy: str) -> None:
    """Raise a ValueError (before anything is allocated) when ``nbytes`` exceed the free memory of ``device``."""
    available = available_memory(device)
    if available is not None and nbytes > available:
        raise ValueError(f"{what} needs {nbytes:,} bytes ({nbytes / 2**30:,.2f} GiB), more than the "
                         f"{available:,} bytes available on {device}; {remedy}")


def build_checked(build: Callable[[], torch.nn.Module], what: str, device: torch.device, copies: int,
                  remedy: str) -> torch.nn.Module:
    """``build()``, once its size was found to fit: it is built first on the meta device (shapes, no memory,
    no random draws) and ``copies`` times its bytes (weights, gradients, optimizer moments) checked against
    the free memory of ``device`` and of the CPU it is built on (a ValueError with both numbers)."""
    with torch.device("meta"):
        probe = build()
    weights = sum(t.numel() for t in probe.parameters())
    nbytes = copies * sum(t.nbytes for t in (*probe.parameters(), *probe.buffers()))
    for where in dict.fromkeys([torch.device("cpu"), device]):
        check_fits(f"{what} ({weights:,} weights; {copies} copies with gradients and optimizer state)", nbytes,
                   where, remedy)
    return build()
