"""Training env-steps/s of rlmem's agents at their default settings on one env, measured in turn.

    python scripts/agent_speed.py --agents ppo,pqn --env rlmem/RepeatPreviousEasy-v0 --seconds 20 --rounds 2 --threads 1

Each agent (its algo's defaults, ``--set`` applies to every one that has the key) first trains
two iterations untimed (buffers, caches, CUDA graphs), then one ``learn`` call sized from them to
take about ``--seconds``. ``--rounds 2`` measures the agents in turn twice (ppo, pqn, ppo, pqn):
on a shared machine the spread between rounds says how far one figure can be trusted.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a checkout works without `pip install -e .`
from rlmem.agents.presets import check_hyperparameters, hyperparameter_names, parse_assignments  # noqa: E402
from rlmem.rundir import agent_class  # noqa: E402


def measure(algo: str, env: str, device: str, seconds: float, settings: dict) -> tuple[float, int]:
    """(env-steps/s of one timed learn call, its env-steps)."""
    own = {k: v for k, v in settings.items() if k in hyperparameter_names(algo)}
    agent = agent_class(algo)(env, device=device, seed=0, verbose=0, **check_hyperparameters(algo, own, "--set"))
    batch = agent.steps_per_iteration
    start = time.perf_counter()
    agent.learn(2 * batch, progress_bar=False)
    per_iteration = (time.perf_counter() - start) / 2
    steps = max(1, round(seconds / per_iteration)) * batch
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    agent.learn(steps, progress_bar=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="ppo,pqn", help="algos, comma-separated (ppo, dqn, pqn)")
    parser.add_argument("--env", default="rlmem/RepeatPreviousEasy-v0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=20.0, help="about how long each timed learn call runs")
    parser.add_argument("--rounds", type=int, default=1, help="measure every agent this many times, in turn")
    parser.add_argument("--threads", type=int, help="CPU threads torch may use")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="a hyperparameter (repeatable)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = parse_assignments(args.set)
    for round_ in range(1, args.rounds + 1):
        for algo in args.agents.split(","):
            rate, steps = measure(algo, args.env, args.device, args.seconds, settings)
            print(f"round {round_}: {algo} on {args.env} ({args.device}): {rate:,.0f} env-steps/s "
                  f"({steps:,} steps timed)", flush=True)


if __name__ == "__main__":
    main()
