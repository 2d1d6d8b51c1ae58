"""How often a setting learns: train RecurrentPPO on one env for several seeds, judged as the learning tests judge.

    python scripts/seed_sweep.py rlmem/MaskedCartPoleEasy-v0 --budget 1000000 --seeds 0,1,2,3,4
    python scripts/seed_sweep.py rlmem/MaskedCartPoleEasy-v0 --budget 2000000 --seeds 0-9 --set gae_lambda=0.95

Each seed trains until its training return reaches 0.95 and a 32-episode greedy check agrees
(tests/test_ppo_learning.py's stop rule), or the budget runs out; one line per seed gives the
env-steps it took and its deterministic return over 100 fresh episodes.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a checkout works without `pip install -e .`
from rlmem import RecurrentPPO  # noqa: E402
from rlmem.agents.presets import check_hyperparameters, parse_assignments  # noqa: E402


def seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env")
    parser.add_argument("--budget", type=int, default=1_000_000, help="env-steps at most per seed")
    parser.add_argument("--seeds", type=seeds, default=[0, 1, 2], help="e.g. 0,1,2 or 0-9")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="a PPO hyperparameter (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = check_hyperparameters("ppo", parse_assignments(args.set), "--set")
    for seed in args.seeds:
        start = time.perf_counter()
        agent = RecurrentPPO(args.env, device="cpu", seed=seed, verbose=0, **settings)

        def stop(a: RecurrentPPO) -> bool:
            if a.last_log.get("charts/episodic_return", -np.inf) < 0.95:
                return True
            return a.evaluate(32, seed=a.num_timesteps)["mean_return"] < 0.95

        agent.learn(args.budget, callback=stop, progress_bar=False)
        result = agent.evaluate(100)["mean_return"]
        print(f"{args.env} seed {seed} {settings}: steps {agent.num_timesteps} eval {result:.3f} "
              f"time {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
