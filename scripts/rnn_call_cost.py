"""The cost model of a fused torch RNN call, measured: what ``rlmem.memory.recurrent.unroll_cost`` assumes.

The chunked unroll of an LSTM / GRU / Elman core runs one fused call per piece between episode
starts, or, for outputs only, one call over every episode segment packed into a row of its own;
:func:`rlmem.memory.recurrent.unroll_cost` picks the cheaper by a model in row-steps: a call
costs ``CALL_COST + steps * (STEP_COST + rows)``, and packing's own ops (the layout, the copies
in and out) PACK_COST. This script times fused ``nn.LSTM`` forward + backward calls on a grid
of (steps, rows), fits ``seconds = a + steps * (b + c * rows)`` by least squares and prints
``a / c`` and ``b / c``; then it times an LSTM core's packed ``outputs`` on 32 sequences of 20
steps with scattered starts (a replay's batch) against the bare call on the packed shape: the
difference is packing's cost; and the single-step cell op's unroll (the stepped layout) on a
grid of (steps, rows), fitted as ``steps * (e + f * rows)``: ``e / c`` is CELL_COST (the model
takes ``f / c`` as 1). All in row-steps, for this machine.

    python scripts/rnn_call_cost.py                   # CPU, 1 thread, hidden 64
    python scripts/rnn_call_cost.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a checkout works without `pip install -e .`
from rlmem.memory import make_core  # noqa: E402
from rlmem.memory.recurrent import segment_rows  # noqa: E402


def median_seconds(call: Callable[[], None], device: torch.device, repeats: int) -> float:
    """The median wall-clock seconds of ``call`` over ``repeats`` calls, after two warm-up calls."""
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        begin = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - begin)
    return statistics.median(times)


def least_squares(design: list[list[float]], seconds: list[float]) -> list[float]:
    """The coefficients that fit ``seconds`` as a linear function of each ``design`` row."""
    solution = torch.linalg.lstsq(torch.tensor(design, dtype=torch.float64),
                                  torch.tensor(seconds, dtype=torch.float64).unsqueeze(1)).solution
    return [float(v) for v in solution.flatten()]


def timed_call(lstm: torch.nn.LSTM, steps: int, rows: int, device: torch.device, repeats: int) -> float:
    """The median seconds of one forward + backward call over ``[steps, rows, width]``."""
    x = torch.randn(steps, rows, lstm.input_size, device=device, requires_grad=True)
    return median_seconds(lambda: lstm(x)[0].sum().backward(), device, repeats)


def packing_seconds(hidden: int, device: torch.device, repeats: int) -> float:
    """Seconds that a packed ``outputs`` call (forward + backward) takes beyond the bare fused call."""
    core = make_core("lstm", hidden, hidden).to(device)
    gen = torch.Generator().manual_seed(0)
    starts = (torch.rand(20, 32, generator=gen) < 0.05).to(device)
    starts[3, 0] = True
    x = torch.randn(20, 32, hidden, device=device, requires_grad=True)
    state = core.initial_state(32, device)
    rows, offsets, _ = segment_rows(starts)
    x_packed = torch.randn(int(offsets.max()) + 1, int(rows.max()) + 1, hidden, device=device, requires_grad=True)
    packed = median_seconds(lambda: core.outputs(x, state, starts).sum().backward(), device, repeats)
    return packed - median_seconds(lambda: core.rnn(x_packed)[0].sum().backward(), device, repeats)


def stepped_fit(hidden: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Seconds per step of the single-step cell unroll (forward + backward): (fixed, per row), fitted."""
    core = make_core("lstm", hidden, hidden, unroll="per_step").to(device)
    grid, seconds = [(steps, rows) for steps in (5, 20) for rows in (16, 32, 64, 128)], []
    for steps, rows in grid:
        x = torch.randn(steps, rows, hidden, device=device, requires_grad=True)
        state, starts = core.initial_state(rows, device), torch.zeros(steps, rows, dtype=torch.bool, device=device)
        seconds.append(median_seconds(lambda: core(x, state, starts)[0].sum().backward(), device, repeats))  # noqa: B023
    e, f = least_squares([[steps, steps * rows] for steps, rows in grid], seconds)
    return e, f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lstm = torch.nn.LSTM(args.hidden, args.hidden).to(device)
    grid = [(steps, rows) for steps in (1, 2, 5, 10, 20, 40) for rows in (16, 32, 64, 128)]
    seconds = [timed_call(lstm, steps, rows, device, args.repeats) for steps, rows in grid]
    a, b, c = least_squares([[1.0, steps, steps * rows] for steps, rows in grid], seconds)
    for (steps, rows), s in zip(grid, seconds, strict=True):
        print(f"  steps {steps:>3}  rows {rows:>4}  {1e3 * s:8.3f} ms  model {1e3 * (a + steps * (b + c * rows)):8.3f} ms")
    packing = packing_seconds(args.hidden, device, args.repeats)
    cell, per_row = stepped_fit(args.hidden, device, args.repeats)
    print(f"\nfused nn.LSTM forward + backward, hidden {args.hidden}, {device}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}: a call {a / c:.0f} row-steps, a step {b / c:.0f} row-steps "
          f"(one row-step {1e6 * c:.3f} us); packing's own ops {packing / c:.0f} row-steps; "
          f"a cell step {cell / c:.0f} row-steps plus {per_row / c:.2f} per row")


if __name__ == "__main__":
    main()
