"""Throughput benchmark: how many environment steps per second rlmem's batched envs run.

What it measures
----------------
* ``rlmem`` env-only throughput: ``rlmem.envs.repeat_previous.RepeatPreviousEasy`` with
  ``N`` environments in one batch (``N`` = 1, 4, 16, ..., 65,536 by default), stepped on each
  requested device. Actions are uniformly random and generated on the device as one
  ``[steps, N]`` tensor *before* the clock starts, so only ``env.step`` is timed (no policy,
  no learning, no host transfers).
* ``popgym`` env-only throughput, the reference: POPGym's numpy
  ``popgym.envs.repeat_previous.RepeatPreviousEasy`` stepped through gymnasium's
  ``SyncVectorEnv`` (one Python env object per ``N``, looped over in Python), with random
  actions generated up front too. popgym always runs on the CPU.

Each measurement warms up for a few steps, then runs chunks of steps until the ``--seconds``
budget is spent (on CUDA the clock is read only after ``torch.cuda.synchronize()``), and
reports ``env-steps / elapsed``, where one env-step is one environment advancing one step:
a batched ``step`` call on ``N`` envs counts ``N`` env-steps.

How to read the output
----------------------
One table row per (device, N): rlmem's env-steps/s on that device, popgym's env-steps/s at
the same N (always measured on the CPU, whatever the row's device), and their ratio
(rlmem / popgym; larger is better for rlmem). Per-step Python overhead dominates at small N,
so rlmem only pulls ahead as N grows; the figure to watch is the last line, the ratio at
N=4096 on the CPU (target: at least 100x on 2 CPU cores). The numbers depend on the machine,
its load and the thread count, all printed below the table; compare runs only from the same
machine. ``--json PATH`` writes every figure and the machine description for later comparison.
Large batches split each op over several torch threads; on a machine whose cores are busy
with other work this can make them far slower than with ``--threads 1`` (the load average is
printed and recorded for that reason).

Examples::

    python scripts/throughput.py                          # cpu, default sizes, ~30 s
    python scripts/throughput.py --device auto --json results/throughput.json
    python scripts/throughput.py --num-envs 1024,4096 --no-popgym --seconds 2

The results dict (returned by :func:`main`, written by ``--json``) holds ``rows``, a list of
``{"what": "env", "impl": "rlmem" | "popgym", "device", "num_envs", "steps_per_s", ...}``;
later measurements (rollouts with a policy, end-to-end training) add rows with another
``"what"``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

# Benchmark the rlmem next to this script (the checkout), not some other installed copy.
_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from rlmem.envs.repeat_previous import RepeatPreviousEasy  # noqa: E402

DEFAULT_NUM_ENVS = [4**i for i in range(9)]  # 1 .. 65,536
DEFAULT_POPGYM_NUM_ENVS = [1, 16, 256, 4096]
REFERENCE_NUM_ENVS = 4096  # the N of the headline rlmem/popgym ratio
TARGET_RATIO = 100.0
# Cap on the pre-generated action tensor ([steps, N] int64): 4M entries = 32 MiB.
MAX_ACTION_ENTRIES = 1 << 22
MAX_ACTION_STEPS = 1024
CUDA_MISSING = "error: --device cuda requested but no CUDA GPU is available"


# ---------------------------------------------------------------------------- timing
def _timed_steps(
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


def _action_steps(num_envs: int) -> int:
    """How many steps of actions to pre-generate for ``num_envs`` envs (then reused cyclically)."""
    return max(1, min(MAX_ACTION_STEPS, MAX_ACTION_ENTRIES // num_envs))


def _sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# ---------------------------------------------------------------------------- measurements
def measure_rlmem_env(
    num_envs: int, device: str, seconds: float, warmup: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Env-only env-steps/s of rlmem's batched ``RepeatPreviousEasy`` on ``device``."""
    dev = torch.device(device)
    env = RepeatPreviousEasy(num_envs=num_envs, device=dev, seed=seed)
    env.reset(seed=seed)
    n_actions = _action_steps(num_envs)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed + 1)
    actions = torch.randint(
        env.single_action_space.n, (n_actions, num_envs), generator=gen, device=dev,
        dtype=torch.int64,
    )
    rows = actions.unbind(0)  # views made once, outside the timed loop

    def step(i: int) -> None:
        env.step(rows[i])

    sync = _sync_for(dev)
    for i in range(warmup):
        step(i % n_actions)
    steps, elapsed = _timed_steps(step, n_actions, seconds, sync)
    env.close()
    return _row("env", "rlmem", str(dev), num_envs, steps, elapsed)


def measure_popgym_env(
    num_envs: int, seconds: float, warmup: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Env-only env-steps/s of popgym's numpy ``RepeatPreviousEasy`` in a ``SyncVectorEnv``."""
    import gymnasium as gym
    from popgym.envs.repeat_previous import RepeatPreviousEasy as PopgymRepeatPreviousEasy

    envs = gym.vector.SyncVectorEnv([PopgymRepeatPreviousEasy for _ in range(num_envs)])
    envs.reset(seed=seed)
    n_actions = _action_steps(num_envs)
    n_symbols = int(envs.single_action_space.n)
    actions = np.random.default_rng(seed + 1).integers(0, n_symbols, (n_actions, num_envs))

    def step(i: int) -> None:
        envs.step(actions[i])

    for i in range(warmup):
        step(i % n_actions)
    steps, elapsed = _timed_steps(step, n_actions, seconds, lambda: None)
    envs.close()
    return _row("env", "popgym", "cpu", num_envs, steps, elapsed)


def _row(what: str, impl: str, device: str, num_envs: int, steps: int, elapsed: float) -> dict:
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


# ---------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(devices: Sequence[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):  # other work on the machine skews the figures
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    try:
        import gymnasium

        info["gymnasium_version"] = gymnasium.__version__
    except ImportError:  # pragma: no cover - rlmem itself needs gymnasium
        pass
    popgym_version = _popgym_version()
    if popgym_version is not None:
        info["popgym_version"] = popgym_version
    cuda = [d for d in devices if torch.device(d).type == "cuda"]
    if cuda:
        info["cuda_devices"] = {d: torch.cuda.get_device_name(torch.device(d)) for d in cuda}
        info["cuda_version"] = torch.version.cuda
    return info


def _popgym_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("popgym")
    except (ImportError, PackageNotFoundError):
        return None


def popgym_available() -> bool:
    try:
        import popgym.envs.repeat_previous  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------- CLI
def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Env-steps/s of rlmem's batched RepeatPreviousEasy vs popgym's numpy one.",
    )
    parser.add_argument(
        "--device", default="cpu",
        help="comma list of devices (cpu, cuda, cuda:1, ...), or 'auto' for cpu plus cuda "
        "when a CUDA GPU is available (default: %(default)s)",
    )
    parser.add_argument(
        "--num-envs", type=_int_list, default=DEFAULT_NUM_ENVS, metavar="N[,N...]",
        help="batch sizes for rlmem (default: powers of 4 from 1 to 65,536)",
    )
    parser.add_argument(
        "--popgym-num-envs", type=_int_list, default=DEFAULT_POPGYM_NUM_ENVS, metavar="N[,N...]",
        help="numbers of envs in popgym's SyncVectorEnv (default: 1,16,256,4096)",
    )
    parser.add_argument("--no-popgym", action="store_true", help="skip the popgym measurements")
    parser.add_argument(
        "--seconds", type=_positive_float, default=1.0, help="time budget per measurement, in seconds (default: %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each measurement (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch.set_num_threads before measuring (default: leave torch's default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the envs and the actions (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    return parser


def resolve_devices(spec: str) -> list[str]:
    """Turn ``--device`` into a list of device strings; exit with one line if CUDA is missing."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    devices: list[str] = []
    for part in parts or ["cpu"]:
        if part == "auto":
            candidates = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        else:
            candidates = [part]
        for d in candidates:
            try:
                dev = torch.device(d)
            except RuntimeError:
                raise SystemExit(f"error: --device: unknown device {d!r}")
            if dev.type not in ("cpu", "cuda"):
                raise SystemExit(f"error: --device: only cpu and cuda are supported, got {d!r}")
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise SystemExit(CUDA_MISSING)
            if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
                raise SystemExit(
                    f"error: --device {d} requested but only {torch.cuda.device_count()} CUDA "
                    "GPU(s) are available"
                )
            if d not in devices:
                devices.append(d)
    return devices


# ---------------------------------------------------------------------------- report
def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt_ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None else f"{num / den:,.1f}x"


def format_table(results: dict[str, Any]) -> str:
    """The env-throughput table: one line per (device, N)."""
    env_rows = [r for r in results["rows"] if r["what"] == "env"]
    rlmem = {(r["device"], r["num_envs"]): r["steps_per_s"] for r in env_rows if r["impl"] == "rlmem"}
    popgym = {r["num_envs"]: r["steps_per_s"] for r in env_rows if r["impl"] == "popgym"}
    devices = results["config"]["devices"]
    keys: list[tuple[str, int]] = []
    for device in devices:
        sizes = {n for d, n in rlmem if d == device}
        if device == "cpu":
            sizes |= set(popgym)
        keys += [(device, n) for n in sorted(sizes)]
    shown = {n for _, n in keys}
    keys += [("cpu", n) for n in sorted(set(popgym) - shown)]  # popgym sizes with no rlmem row
    header = ("device", "N", "rlmem env-steps/s", "popgym env-steps/s", "rlmem/popgym")
    lines = [header]
    for device, n in keys:
        mine, theirs = rlmem.get((device, n)), popgym.get(n)
        lines.append((device, f"{n:,}", _fmt_rate(mine), _fmt_rate(theirs), _fmt_ratio(mine, theirs)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    if popgym and any(d != "cpu" for d, _ in keys):
        out.append("(popgym runs on the CPU with numpy on every row; its ratio on a cuda row "
                   "compares the GPU batch against it)")
    return "\n".join(out)


def headline_ratio(results: dict[str, Any]) -> float | None:
    """rlmem/popgym env-steps/s at N=4096 on the CPU, or None if either was not measured."""
    rows = [r for r in results["rows"] if r["what"] == "env" and r["num_envs"] == REFERENCE_NUM_ENVS]
    mine = [r["steps_per_s"] for r in rows if r["impl"] == "rlmem" and r["device"] == "cpu"]
    theirs = [r["steps_per_s"] for r in rows if r["impl"] == "popgym"]
    if not mine or not theirs:
        return None
    return mine[0] / theirs[0]


def format_summary(results: dict[str, Any]) -> str:
    m = results["machine"]
    ratio = results["summary"]["rlmem_over_popgym_cpu_n4096"]
    if ratio is None:
        headline = (f"rlmem/popgym at N={REFERENCE_NUM_ENVS:,} on cpu: not measured (needs cpu, "
                    f"N={REFERENCE_NUM_ENVS} in --num-envs and --popgym-num-envs, and popgym)")
    else:
        headline = (f"rlmem/popgym at N={REFERENCE_NUM_ENVS:,} on cpu: {ratio:,.1f}x "
                    f"(target >= {TARGET_RATIO:.0f}x on 2 CPU cores)")
    machine = (f"torch {m['torch_version']}, torch threads: {m['num_threads']}, "
               f"CPUs: {m['cpu_count']} ({m['cpu_model']}), date: {m['date']}")
    if "load_avg_1m" in m:
        machine += f", load average: {m['load_avg_1m']:.2f}"
    if "cuda_devices" in m:
        machine += ", GPU: " + ", ".join(f"{d}={name}" for d, name in m["cuda_devices"].items())
    return headline + "\n" + machine


# ---------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark with command-line ``argv``; print the table and return the results."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    devices = resolve_devices(args.device)

    notes: list[str] = []
    run_popgym = not args.no_popgym
    if run_popgym and not popgym_available():
        notes.append("popgym is not installed; skipping the popgym comparison (pip install popgym)")
        print(notes[-1], flush=True)
        run_popgym = False

    results: dict[str, Any] = {
        "config": {
            "devices": devices,
            "num_envs": args.num_envs,
            "popgym_num_envs": args.popgym_num_envs if run_popgym else [],
            "seconds": args.seconds,
            "warmup": args.warmup,
            "seed": args.seed,
            "env": "RepeatPreviousEasy",
        },
        "machine": machine_info(devices),
        "rows": [],
        "notes": notes,
    }

    for device in devices:
        for n in args.num_envs:
            row = measure_rlmem_env(n, device, args.seconds, args.warmup, args.seed)
            results["rows"].append(row)
            print(f"  rlmem  {device:<6} N={n:<7,} {_fmt_rate(row['steps_per_s'])} env-steps/s",
                  flush=True)
    if run_popgym:
        for n in args.popgym_num_envs:
            row = measure_popgym_env(n, args.seconds, args.warmup, args.seed)
            results["rows"].append(row)
            print(f"  popgym cpu    N={n:<7,} {_fmt_rate(row['steps_per_s'])} env-steps/s",
                  flush=True)

    results["summary"] = {"rlmem_over_popgym_cpu_n4096": headline_ratio(results)}
    print()
    print(format_table(results))
    print()
    print(format_summary(results))

    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
