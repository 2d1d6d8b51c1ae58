"""The rollout step four ways on one device: eager, a CUDA graph of the whole rollout (rlmem's
default on CUDA), and the policy step under torch.compile (plain, and with its own CUDA graphs).

For each N an agent on RepeatPreviousEasy (LSTM 128, encoder 128, 64 steps) collects two untimed
rollouts (graph recording or compilation happen there, and their seconds are reported), then
rollouts are repeated for ``--seconds``. Only the policy step (``policy.act``) is compiled: the
env step and the buffer writes stay eager in the compiled variants.

    python scripts/compile_vs_graph.py --device cuda --sizes 1024,65536 --json compile-vs-graph.json
    python scripts/compile_vs_graph.py --device cpu --sizes 16 --n-steps 8 --hidden 16 --seconds 0.5  # dry run
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rlmem.agents.ppo import RecurrentPPO

ENV = "rlmem/RepeatPreviousEasy-v0"
VARIANTS = ("eager", "cuda-graph", "compile", "compile-reduce-overhead")


def measure(variant: str, n_envs: int, device: torch.device, args: argparse.Namespace) -> dict:
    torch._dynamo.reset()
    agent = RecurrentPPO(ENV, n_envs=n_envs, n_steps=args.n_steps, hidden_size=args.hidden,
                         encoder_sizes=(args.hidden,), device=device, seed=0, verbose=0,
                         cuda_graphs=variant == "cuda-graph")
    if variant.startswith("compile"):
        mode = "reduce-overhead" if variant == "compile-reduce-overhead" else None
        agent.policy.act = torch.compile(agent.policy.act, mode=mode, dynamic=False)
    agent.start()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(2):
        agent.collect()
    sync()
    warmup_s = time.perf_counter() - start
    calls, start = 0, time.perf_counter()
    while True:
        agent.collect()
        calls += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= args.seconds:
            break
    row = {"variant": variant, "num_envs": n_envs, "warmup_s": warmup_s, "calls": calls, "elapsed_s": elapsed,
           "rollout_steps_per_s": calls * n_envs * args.n_steps / elapsed,
           "rollout_cuda_graph": agent.graph_calls["rollout"].active}
    print(f"{variant:<24} N={n_envs:<6} {row['rollout_steps_per_s']:>14,.0f} env-steps/s  "
          f"(warm-up {warmup_s:.1f} s)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", default="1024,65536")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--n-steps", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"--variants: unknown variant {v!r}; allowed: {', '.join(VARIANTS)}")
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        for v in variants:
            try:
                rows.append(measure(v, n, device, args))
            except Exception as error:  # noqa: BLE001 - a variant that fails is reported, the others still run
                print(f"{v:<24} N={n:<6} failed: {type(error).__name__}: {str(error)[:300]}", flush=True)
                rows.append({"variant": v, "num_envs": n, "error": f"{type(error).__name__}: {error}"})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "torch": torch.__version__,
                       "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}, f, indent=1)


if __name__ == "__main__":
    main()
