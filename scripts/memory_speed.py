"""How fast each memory core trains: forward + backward of the core alone, chunked vs per_step.

For every core in ``rlmem.memory.CORES`` (default options, one layer), each sequence length T
and each mode, one call is ``out, _ = core(x, zero_state, starts); out.sum().backward()`` (mode
``outputs``: ``core.outputs(...)`` in the chunked mode, what a learner that drops the final
state calls: the torch RNNs may then pack each episode into a row of its own)
on an input ``[T, N, input]`` that requires grad (as the encoder's output does in an update),
with the episode starts of ``--starts``: ``scattered`` (default: CartPole-like, each (step, env)
starts with probability 1/25, seeded; with N = 64 nearly every step has a start somewhere, so
the LSTM's chunked path is cut into nearly T pieces) or ``none`` (one unbroken episode: the
LSTM's best case, one fused call). Reported: samples/s = T * N / (median seconds of
``--repeats`` timed calls, after one untimed warm-up call; the calls go round-robin over all
cores and modes at one T, so a drifting machine load slows them alike), and the chunked time
relative to the LSTM's faster mode at the same T.

On the CPU the default is one torch thread (``--threads``), so the figures compare the work
each core does, not how well it spreads over cores.

    python scripts/memory_speed.py                            # T = 64, 256, 1024; N = 64; H = 64
    python scripts/memory_speed.py --cores lstm,lru,mingru --lengths 64 --repeats 3
    python scripts/memory_speed.py --device cuda --envs 1024 --json memory-speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import sys
from pathlib import Path

import torch

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a checkout works without `pip install -e .`
from rlmem.memory import CORES, UNROLL_MODES, make_core  # noqa: E402

START_PROB = {"scattered": 1 / 25, "none": 0.0}
#: What a timed call runs: the core's forward in each unroll mode, or its ``outputs`` (chunked).
MODES = (*UNROLL_MODES, "outputs")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timer(memory: str, steps: int, args: argparse.Namespace) -> Callable[[str], float]:
    """A function that runs one timed forward + backward call of core ``memory`` in a given unroll mode."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    core = make_core(memory, args.input_size, args.hidden, 1).to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(steps, args.envs, args.input_size, generator=gen).to(device).requires_grad_()
    starts = (torch.rand(steps, args.envs, generator=gen) < START_PROB[args.starts]).to(device)
    state = core.initial_state(args.envs, device)

    def call(mode: str) -> float:
        core.unroll = "chunked" if mode == "outputs" else mode
        core.zero_grad(set_to_none=True)
        x.grad = None
        _sync(device)
        begin = time.perf_counter()
        out = core.outputs(x, state, starts) if mode == "outputs" else core(x, state, starts)[0]
        out.sum().backward()
        _sync(device)
        return time.perf_counter() - begin

    return call


def measure(memories: list[str], steps: int, args: argparse.Namespace) -> list[dict]:
    """One row per (core, unroll mode) at ``steps``: the median seconds of a call, samples/s.

    The calls go round-robin over every core and mode (``--repeats`` rounds after one warm-up
    round), so a machine whose load drifts slows them all alike instead of whichever ran then.
    """
    timers = {memory: _timer(memory, steps, args) for memory in memories}
    times: dict[tuple[str, str], list[float]] = {(m, mode): [] for m in memories for mode in args.modes}
    for round_ in range(args.repeats + 1):
        for (memory, mode), taken in times.items():
            seconds = timers[memory](mode)
            if round_:
                taken.append(seconds)
    rows = []
    for (memory, mode), taken in times.items():
        seconds = statistics.median(taken)
        rows.append({"memory": memory, "mode": mode, "T": steps, "N": args.envs, "hidden": args.hidden,
                     "starts": args.starts, "device": args.device, "threads": torch.get_num_threads(),
                     "seconds": seconds, "min_seconds": min(taken), "samples_per_s": steps * args.envs / seconds})
    return rows


def table(rows: list[dict], modes: list[str]) -> str:
    """A Markdown table: one line per (core, T), each mode's samples/s and ms, chunked vs the LSTM."""
    by_key = {(r["memory"], r["T"], r["mode"]): r for r in rows}
    lengths = sorted({r["T"] for r in rows})
    cores = list(dict.fromkeys(r["memory"] for r in rows))
    header = ["core", "T"]
    for mode in modes:
        header += [f"{mode} samples/s", f"{mode} ms"]
    header += ["per_step time / chunked time", "chunked time / lstm's best"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for steps in lengths:
        for memory in cores:
            cells = [memory, str(steps)]
            for mode in modes:
                r = by_key.get((memory, steps, mode))
                cells += [f"{r['samples_per_s']:,.0f}", f"{1000 * r['seconds']:.1f}"] if r else ["", ""]
            chunked, per_step = by_key.get((memory, steps, "chunked")), by_key.get((memory, steps, "per_step"))
            lstm = [r["seconds"] for m in modes if (r := by_key.get(("lstm", steps, m)))]
            cells.append(f"{per_step['seconds'] / chunked['seconds']:.2f}" if chunked and per_step else "")
            cells.append(f"{chunked['seconds'] / min(lstm):.2f}" if chunked and lstm else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", default=",".join(CORES), help="comma-separated core names (default: all)")
    parser.add_argument("--lengths", default="64,256,1024", help="sequence lengths T (default: 64,256,1024)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="unroll modes, and outputs (default: chunked,per_step,outputs)")
    parser.add_argument("--starts", choices=sorted(START_PROB), default="scattered",
                        help="episode starts: scattered (1/25 per step and env) or none (default: scattered)")
    parser.add_argument("--envs", type=int, default=64, help="envs N (default: 64)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden_size (default: 64)")
    parser.add_argument("--input-size", type=int, default=64, help="input width D (default: 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement; the median counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.modes = args.modes.split(",")
    if bad := [m for m in args.modes if m not in MODES]:
        parser.error(f"--modes: {bad[0]!r} is not one of {', '.join(MODES)}")
    rows = []
    for steps in (int(t) for t in args.lengths.split(",")):
        for row in measure(args.cores.split(","), steps, args):
            rows.append(row)
            print(f"  {row['memory']:<12} T={steps:<5} {row['mode']:<9} {row['samples_per_s']:>12,.0f} samples/s "
                  f"({1000 * row['seconds']:.1f} ms)", flush=True)
    print(f"\nmemory cores, forward + backward, {args.starts} starts, N={args.envs}, H={args.hidden}, "
          f"D={args.input_size}, {args.device}, {torch.get_num_threads()} thread(s), median of {args.repeats}; "
          f"torch {torch.__version__}\n")
    print(table(rows, args.modes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
