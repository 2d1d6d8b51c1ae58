"""How often a setting learns: train RecurrentPPO (or RecurrentPQN, RecurrentDQN) on one env for several seeds,
judged as the learning tests judge.

    python scripts/seed_sweep.py rlmem/MaskedCartPoleEasy-v0 --budget 1000000 --seeds 0,1,2,3,4
    python scripts/seed_sweep.py rlmem/MaskedCartPoleEasy-v0 --budget 2000000 --seeds 0-9 --set gae_lambda=0.95
    python scripts/seed_sweep.py rlmem/RepeatPreviousEasy-v0 --algo pqn --budget 800000 --seeds 0-9 --episodes 200
    python scripts/seed_sweep.py rlmem/PassiveTMazeEasy-v0 --algo dqn --budget 100000 --seeds 0-2 --episodes 200

PPO: each seed trains until its training return reaches 0.95 and a 32-episode greedy check
agrees; PQN, whose training return explores: until a 64-episode greedy check every 4 iterations
reaches 0.95; DQN: until a 100-episode greedy check every 10 iterations reaches 0.95; or until the
budget runs out (the learning tests' own rules, imported: tests/learning.py's stop_when_learned). One line per seed gives the env-steps it took and its deterministic
return over ``--episodes`` fresh episodes. ``--curve K`` trains the whole budget instead, printing
the greedy return (64 episodes) every K iterations: whether a learned policy holds.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a checkout works without `pip install -e .`
from rlmem import RecurrentDQN, RecurrentPPO, RecurrentPQN  # noqa: E402
from rlmem.agents.presets import check_hyperparameters, parse_assignments  # noqa: E402

sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))
from learning import stop_when_learned  # noqa: E402  (the learning tests' own stop rules)


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
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="a hyperparameter (repeatable)")
    parser.add_argument("--algo", choices=["ppo", "pqn", "dqn"], default="ppo")
    parser.add_argument("--episodes", type=int, default=100, help="fresh episodes each seed is judged on")
    parser.add_argument("--curve", type=int, metavar="K", help="no early stop: the greedy return every K iterations")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = check_hyperparameters(args.algo, parse_assignments(args.set), "--set")
    cls = {"ppo": RecurrentPPO, "pqn": RecurrentPQN, "dqn": RecurrentDQN}[args.algo]
    for seed in args.seeds:
        start = time.perf_counter()
        agent = cls(args.env, device="cpu", seed=seed, verbose=0, **settings)
        iterations = []

        def curve(a) -> bool:
            if (a.num_timesteps // a.steps_per_iteration) % args.curve == 0:
                iterations.append(f"{a.num_timesteps // 1000}k:{a.evaluate(64, seed=777)['mean_return']:.2f}")
            return True

        agent.learn(args.budget, callback=curve if args.curve else stop_when_learned(args.algo), progress_bar=False)
        result = agent.evaluate(args.episodes)["mean_return"]
        print(f"{args.env} {args.algo} seed {seed} {settings}: steps {agent.num_timesteps} eval {result:.3f} "
              f"time {time.perf_counter() - start:.0f}s", flush=True)
        if args.curve:
            print("  greedy return by env-steps: " + " ".join(iterations), flush=True)


if __name__ == "__main__":
    main()
