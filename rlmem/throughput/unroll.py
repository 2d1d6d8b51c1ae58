"""The unroll measurement: the memory unroll of the PPO update, ``unroll="chunked"`` against the
``unroll="per_step"`` reference (:mod:`rlmem.memory`), forward + backward samples/s.

What it measures, and how: docs/benchmarks.md, "How ``rlmem throughput`` measures".
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from rlmem.memory import UNROLL_MODES, make_core
from rlmem.memory.recurrent import cheapest_layout, cut_steps
from rlmem.throughput.settings import (
    DEFAULT_UNROLL_SEQ_LEN, SCATTERED_START_PROB, SYNC_EPISODE_LENGTH, UNROLL_INPUT_SIZE, UNROLL_PATTERNS,
)
from rlmem.throughput.timing import sync_for, timed_steps


def episode_starts(pattern: str, seq_len: int, num_envs: int, seed: int = 0) -> torch.Tensor:
    """An ``episode_start`` mask ``[seq_len, num_envs]`` (bool, on the CPU) for ``pattern``.

    ``synchronized``: every env starts at once every ``SYNC_EPISODE_LENGTH`` (52) steps, from
    t=0, like RepeatPreviousEasy's fixed-length episodes. ``scattered``: each (step, env) starts
    with probability ``SCATTERED_START_PROB`` (1/25), independently and seeded, like
    CartPole-style varied episode lengths.
    """
    if pattern == "synchronized":
        starts = torch.zeros(seq_len, num_envs, dtype=torch.bool)
        starts[::SYNC_EPISODE_LENGTH] = True
        return starts
    if pattern == "scattered":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(seq_len, num_envs, generator=gen) < SCATTERED_START_PROB
    raise ValueError(f"pattern must be one of {UNROLL_PATTERNS}, got {pattern!r}")


def unroll_pieces(starts: torch.Tensor, mode: str) -> int:
    """How many RNN calls (or cell steps) ``mode`` makes over ``starts`` ``[T, N]``, as the torch RNN
    cores choose: the cut layout's pieces, or one step at a time where their cost model says
    stepping is cheaper (:func:`rlmem.memory.recurrent.cheapest_layout`)."""
    steps, n = starts.shape
    if mode == "per_step":
        return int(steps)
    cuts = len(cut_steps(starts[1:].any(dim=1).tolist()))
    return int(steps) if cheapest_layout(int(steps), int(n), cuts) == "stepped" else 1 + cuts


def measure_unroll(
    memory: str, hidden_size: int, pattern: str, num_envs: int, device: str, seconds: float,
    seq_len: int = DEFAULT_UNROLL_SEQ_LEN, warmup: int = 5, seed: int = 0,
) -> list[dict[str, Any]]:
    """Forward + backward samples/s of one memory core's unroll, chunked and per_step.

    One core (``num_layers=1``, input width ``UNROLL_INPUT_SIZE``, the encoder's output in
    PPO's default network), one ``[seq_len, num_envs]`` input that requires grad (as the
    encoder's output does in the update), a zero initial state and the ``pattern`` of episode
    starts; each call is ``out, _ = core(x, state, starts); out.sum().backward()``. Both modes
    run the same weights on the same input; the chunked row carries the largest absolute
    difference of its output and final state from the per_step reference.
    """
    dev = torch.device(device)
    torch.manual_seed(seed)
    core = make_core(memory, UNROLL_INPUT_SIZE, hidden_size, 1, unroll="per_step").to(dev)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(seq_len, num_envs, UNROLL_INPUT_SIZE, generator=gen).to(dev).requires_grad_()
    state = core.initial_state(num_envs, dev)
    starts = episode_starts(pattern, seq_len, num_envs, seed).to(dev)

    with torch.no_grad():  # correctness: chunked against the per_step reference
        outputs = {}
        for mode in UNROLL_MODES:
            core.unroll = mode
            outputs[mode] = core(x, state, starts)
        ref_out, ref_state = outputs["per_step"]
        out, fin = outputs["chunked"]
        max_diff = max(float((out - ref_out).abs().max()),
                       *(float((a - b).abs().max()) for a, b in zip(fin, ref_state, strict=True)))

    def call(_: int) -> None:
        core.zero_grad(set_to_none=True)
        x.grad = None
        out, _state = core(x, state, starts)
        out.sum().backward()

    sync = sync_for(dev)
    rows = []
    for mode in UNROLL_MODES:
        core.unroll = mode
        for i in range(warmup):
            call(i)
        calls, elapsed = timed_steps(call, 1 << 30, seconds, sync)
        samples = calls * seq_len * num_envs
        rows.append({
            "what": "unroll", "memory": memory, "hidden_size": hidden_size, "pattern": pattern,
            "mode": mode, "device": str(dev), "num_envs": num_envs, "seq_len": seq_len,
            "samples_per_s": samples / elapsed, "calls": calls, "elapsed_s": elapsed,
            "ms_per_call": 1000.0 * elapsed / calls, "pieces": unroll_pieces(starts.cpu(), mode),
            "max_abs_diff_vs_per_step": max_diff if mode == "chunked" else 0.0,
        })
    return rows


def unroll_comparisons(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (device, memory, hidden, pattern, N): which unroll mode is faster, and by how much."""
    by_key: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["what"] == "unroll":
            key = (r["device"], r["memory"], r["hidden_size"], r["pattern"], r["num_envs"])
            by_key.setdefault(key, {})[r["mode"]] = r
    out = []
    for (device, memory, hidden, pattern, n), modes in by_key.items():
        if not all(m in modes for m in UNROLL_MODES):
            continue
        chunked, per_step = modes["chunked"]["samples_per_s"], modes["per_step"]["samples_per_s"]
        faster = "chunked" if chunked >= per_step else "per_step"
        out.append({
            "device": device, "memory": memory, "hidden_size": hidden, "pattern": pattern,
            "num_envs": n, "faster": faster, "speedup": max(chunked, per_step) / min(chunked, per_step),
            "chunked_over_per_step": chunked / per_step,
            "chunked_pieces": modes["chunked"]["pieces"],
            "max_abs_diff_vs_per_step": modes["chunked"]["max_abs_diff_vs_per_step"],
        })
    return out
