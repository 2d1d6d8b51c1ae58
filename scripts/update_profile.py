"""Where a RecurrentPPO iteration's time goes on a GPU, and what the unroll and TF32 change.

For each variant (the update's unroll; float32 matrix products in full precision or TF32) and
each N, an agent on RepeatPreviousEasy (LSTM 128, 4 epochs, 4 minibatches, n_steps 64) trains
two untimed iterations (the second records the CUDA graphs), then ``--iterations`` more, each
split into its rollout and its update with the device synchronised in between, and the
end-to-end ``learn`` of as many iterations timed as one call. Then a torch.profiler pass over one
update of the first variant lists the kernels that take the most device time.

    python scripts/update_profile.py --device cuda --sizes 16384,65536 --json update-profile.json
    python scripts/update_profile.py --device cpu --sizes 64 --n-steps 8 --hidden 16   # a dry run
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rlmem.agents.ppo import RecurrentPPO

ENV = "rlmem/RepeatPreviousEasy-v0"
# name -> (PPOConfig settings, TF32 for float32 matrix products, TF32 in cuDNN)
VARIANTS = {
    "per_step-graph": ({"unroll": "per_step"}, False, True),
    "per_step-graph-tf32": ({"unroll": "per_step"}, True, True),
    "chunked": ({"unroll": "chunked"}, False, True),
    "chunked-fp32": ({"unroll": "chunked"}, False, False),
    "chunked-tf32": ({"unroll": "chunked"}, True, True),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(variant: str, n_envs: int, device: torch.device, args: argparse.Namespace) -> dict:
    settings, tf32_matmul, tf32_cudnn = VARIANTS[variant]
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_matmul, tf32_cudnn
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    agent = RecurrentPPO(ENV, n_envs=n_envs, n_steps=args.n_steps, hidden_size=args.hidden,
                         encoder_sizes=(args.hidden,), device=device, seed=0, verbose=0, **settings)
    batch = n_envs * args.n_steps
    agent.learn(2 * batch, progress_bar=False)
    rollout_s = update_s = 0.0
    for _ in range(args.iterations):
        _sync(device)
        start = time.perf_counter()
        agent.collect()
        _sync(device)
        middle = time.perf_counter()
        agent.update()
        _sync(device)
        rollout_s += middle - start
        update_s += time.perf_counter() - middle
    _sync(device)
    start = time.perf_counter()
    agent.learn(args.iterations * batch, progress_bar=False)
    _sync(device)
    learn_s = time.perf_counter() - start
    steps = args.iterations * batch
    row = {
        "variant": variant, "num_envs": n_envs, "unroll": agent.unroll, "tf32_matmul": tf32_matmul,
        "tf32_cudnn": tf32_cudnn, "rollout_cuda_graph": agent.graph_calls["rollout"].active,
        "update_cuda_graph": agent.graph_calls["update"].active, "iterations": args.iterations,
        "rollout_ms": 1000 * rollout_s / args.iterations, "update_ms": 1000 * update_s / args.iterations,
        "split_steps_per_s": steps / (rollout_s + update_s), "learn_steps_per_s": steps / learn_s,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "episodic_return": agent.last_log.get("charts/episodic_return"),
    }
    print(f"{variant:<20} N={n_envs:<6} rollout {row['rollout_ms']:8.1f} ms  update {row['update_ms']:8.1f} ms  "
          f"learn {row['learn_steps_per_s']:>12,.0f} env-steps/s  (graphs: rollout {row['rollout_cuda_graph']}, "
          f"update {row['update_cuda_graph']})", flush=True)
    return row


def profile(variant: str, n_envs: int, device: torch.device, args: argparse.Namespace) -> str:
    """The kernels of one update, by device time (top 20)."""
    settings, tf32_matmul, tf32_cudnn = VARIANTS[variant]
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_matmul, tf32_cudnn
    agent = RecurrentPPO(ENV, n_envs=n_envs, n_steps=args.n_steps, hidden_size=args.hidden,
                         encoder_sizes=(args.hidden,), device=device, seed=0, verbose=0, **settings)
    agent.learn(2 * n_envs * args.n_steps, progress_bar=False)
    agent.collect()
    _sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        agent.update()
        _sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", default="16384,65536", help="comma list of N")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {sorted(VARIANTS)}")
    parser.add_argument("--n-steps", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--profile-size", type=int, default=None, help="N of the profiler pass (default: the last size)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [int(n) for n in args.sizes.split(",")]
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"--variants: unknown variant {v!r}; allowed: {sorted(VARIANTS)}")
    rows = [measure(v, n, device, args) for n in sizes for v in variants]
    table = profile(variants[0], args.profile_size or sizes[-1], device, args)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "profile": table, "device": torch.cuda.get_device_name(device)
                       if device.type == "cuda" else "cpu", "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
