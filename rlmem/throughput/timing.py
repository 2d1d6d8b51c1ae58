"""The benchmark's clock, peak device memory and row bookkeeping, shared by its measurements.

How they are used: docs/benchmarks.md, "How ``rlmem throughput`` measures".
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

import torch

from rlmem.throughput.settings import MAX_ACTION_ENTRIES, MAX_ACTION_STEPS


def timed_steps(
    step: Callable[[int], None], num_actions: int, seconds: float, sync: Callable[[], None]
) -> tuple[int, float]:
    """Call ``step(i)`` (``i`` cycling over ``num_actions`` pre-made actions) for ``seconds``.

    Runs chunks of steps, synchronising and reading the clock only between chunks; each chunk
    is sized from the rate so far to end near the budget. Returns ``(steps, elapsed_s)``.
    """
    done, i, chunk = 0, 0, 1
    sync()
    start = time.perf_counter()
    while True:
        for _ in range(chunk):
            step(i)
            i = i + 1 if i + 1 < num_actions else 0
        sync()
        done += chunk
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done, elapsed
        remaining = int((seconds - elapsed) * done / elapsed) + 1 if elapsed > 0 else 2 * chunk
        chunk = max(1, min(remaining, 2 * chunk, num_actions))


def timed_learn(
    learn_more: Callable[[int], int], batch: int, seconds: float, sync: Callable[[], None]
) -> dict[str, Any]:
    """Two untimed warm-up iterations, then one timed ``learn_more(k * batch)`` of about ``seconds``.

    ``learn_more(steps)`` trains for ``steps`` more env-steps and returns how many it trained
    (a multiple of ``batch``, the env-steps of one iteration). Two, because on CUDA the first
    iteration runs eagerly and the second records the CUDA graphs (``warmup_s`` holds both).
    """
    start = time.perf_counter()
    learn_more(2 * batch)
    sync()
    warmup_s = time.perf_counter() - start
    k = max(1, round(2 * seconds / warmup_s)) if warmup_s > 0 else 1
    sync()
    start = time.perf_counter()
    steps = learn_more(k * batch)
    sync()
    return {"env_steps": steps, "elapsed_s": time.perf_counter() - start, "iterations": k,
            "warmup_s": warmup_s}


def action_steps(num_envs: int) -> int:
    """How many steps of actions to pre-generate for ``num_envs`` envs (then reused cyclically)."""
    return max(1, min(MAX_ACTION_STEPS, MAX_ACTION_ENTRIES // num_envs))


def sync_for(device: torch.device) -> Callable[[], None]:
    """What waits for ``device``'s queued work before the clock is read (nothing on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def reset_peak_memory(dev: torch.device) -> int | None:
    """On CUDA: free what earlier measurements left, reset the peak and return the bytes still
    allocated (the baseline the peak starts from). None on the CPU."""
    if dev.type != "cuda":
        return None
    gc.collect()
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    return torch.cuda.memory_allocated(dev)


def peak_memory(dev: torch.device, num_envs: int, baseline: int | None) -> dict[str, Any]:
    """``peak_memory_bytes`` (``torch.cuda.max_memory_allocated`` since :func:`reset_peak_memory`)
    and per env; None on the CPU, where torch keeps no such count."""
    if dev.type != "cuda":
        return {"peak_memory_bytes": None, "peak_memory_bytes_per_env": None, "memory_baseline_bytes": None}
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev)
    return {"peak_memory_bytes": peak, "peak_memory_bytes_per_env": peak / num_envs,
            "memory_baseline_bytes": baseline}


def row(what: str, impl: str, device: str, num_envs: int, steps: int, elapsed: float) -> dict:
    """The keys every env, rollout and train row shares; ``steps`` are batched steps of ``num_envs``."""
    env_steps = num_envs * steps
    return {
        "what": what,
        "impl": impl,
        "device": device,
        "num_envs": num_envs,
        "steps_per_s": env_steps / elapsed,
        "env_steps": env_steps,
        "batched_steps": steps,
        "elapsed_s": elapsed,
    }


def train_row(impl: str, device: str, num_envs: int, n_steps: int, timed: dict[str, Any]) -> dict:
    """A train row from :func:`timed_learn`'s figures."""
    out = row("train", impl, device, num_envs, timed["env_steps"] // num_envs, timed["elapsed_s"])
    out.update(n_steps=n_steps, iterations=timed["iterations"], warmup_s=timed["warmup_s"])
    return out
