"""RecurrentDQN ablations and speed: the figures behind docs/benchmarks.md's RecurrentDQN section.

    python scripts/dqn_ablations.py --what speed                 # env-steps/s (acting) and learner updates/s
    python scripts/dqn_ablations.py --what state --steps 40000   # stored vs zero state at sequence start
    python scripts/dqn_ablations.py --what burn_in --steps 100000 --set seq_len=120 --set overlap=60
    python scripts/dqn_ablations.py --what compare --compare gamma=0.9,0.99 --env rlmem/RepeatPreviousEasy-v0

Each ablation trains the same agent (dqn-lstm defaults plus --set) with one setting changed,
for a fixed budget of env-steps, and reports the greedy return on 200 fresh episodes and the
env-steps at which a greedy check (every 10 iterations, 100 episodes) first reached 0.95.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from rlmem import RecurrentDQN
from rlmem.agents.presets import check_hyperparameters, parse_assignments


def train_and_score(env: str, steps: int, seed: int, device: str, **hp) -> dict[str, float]:
    agent = RecurrentDQN(env, device=device, seed=seed, verbose=0, **hp)
    reached: list[int] = []
    calls = [0]

    def check(a: RecurrentDQN) -> bool:
        calls[0] += 1
        due = not reached and calls[0] % 10 == 0 and a.num_timesteps >= a.config.learning_starts
        if due and a.evaluate(100, seed=777)["mean_return"] >= 0.95:
            reached.append(a.num_timesteps)
        return True

    start = time.perf_counter()
    agent.learn(steps, callback=check, progress_bar=False)
    wall = time.perf_counter() - start
    result = agent.evaluate(200)
    return {"return": result["mean_return"], "reached_0.95_at": reached[0] if reached else None, "wall_s": wall}


def ablation(name: str, variants: dict[str, dict], args: argparse.Namespace, base: dict) -> None:
    print(f"\n{name} on {args.env}, {args.steps:,} env-steps, seeds {args.seeds}, settings {base}")
    print("| variant | seed | greedy return (200 eps) | first reached 0.95 at | wall s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, change in variants.items():
        for seed in range(args.seeds):
            r = train_and_score(args.env, args.steps, seed, args.device, **{**base, **change})
            at = f"{r['reached_0.95_at']:,}" if r["reached_0.95_at"] is not None else "not reached"
            print(f"| {label} | {seed} | {r['return']:.3f} | {at} | {r['wall_s']:.0f} |", flush=True)


def speed(args: argparse.Namespace, base: dict) -> None:
    agent = RecurrentDQN(args.env, device=args.device, seed=0, verbose=0, **base)
    agent.start()
    stride = agent.config.seq_len - agent.config.overlap
    agent.collect_steps(stride * 20)  # warm-up, and enough sequences to sample from
    if agent.device.type == "cuda":
        torch.cuda.synchronize()
    iterations = 50
    start = time.perf_counter()
    for _ in range(iterations):
        agent.collect_steps(stride)
    if agent.device.type == "cuda":
        torch.cuda.synchronize()
    acting = iterations * agent.steps_per_iteration / (time.perf_counter() - start)
    updates = 100
    agent.learner_step()
    start = time.perf_counter()
    for _ in range(updates):
        agent.learner_step()
    if agent.device.type == "cuda":
        torch.cuda.synchronize()
    ups = updates / (time.perf_counter() - start)
    c = agent.config
    print(f"\nspeed on {args.env}, device {agent.device}, torch threads {torch.get_num_threads()}, settings {base}")
    print(f"acting: {acting:,.0f} env-steps/s ({c.n_envs} envs, epsilon-greedy, replay writes)")
    print(f"learner: {ups:,.1f} updates/s (batch {c.batch_size} sequences x {c.seq_len} steps, burn-in {c.burn_in})")
    per_iter = c.updates_per_iteration / ups + agent.steps_per_iteration / acting
    print(f"=> with updates_per_iteration {c.updates_per_iteration}: about {agent.steps_per_iteration / per_iter:,.0f} "
          "env-steps/s of training")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=["speed", "state", "burn_in", "compare", "all"], default="all")
    parser.add_argument("--env", default=None, help="default: PassiveTMazeMedium for burn_in, Easy otherwise")
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--burn-in", dest="burn_in", type=int, default=None,
                        help="the non-zero burn-in to compare with 0 (default: the config's)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any DQNConfig field (repeatable)")
    parser.add_argument("--compare", metavar="KEY=V1,V2,...",
                        help="with --what compare: one DQNConfig field and the values to train with")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = check_hyperparameters("dqn", parse_assignments(args.set), "--set")  # as rlmem train reads them
    env = args.env
    if args.what in ("speed", "all"):
        args.env = env or "rlmem/PassiveTMazeEasy-v0"
        speed(args, base)
    if args.what in ("state", "all"):
        args.env = env or "rlmem/PassiveTMazeEasy-v0"
        ablation("stored vs zero state at sequence start", {"stored state": {"store_state": True},
                                                            "zero state": {"store_state": False}}, args, base)
    if args.what in ("burn_in", "all"):
        args.env = env or "rlmem/PassiveTMazeMedium-v0"
        default = args.burn_in if args.burn_in is not None else base.get("burn_in", 5)
        ablation("burn-in", {"burn_in 0": {"burn_in": 0}, f"burn_in {default}": {"burn_in": default}}, args, base)
    if args.what == "compare":
        if not args.compare or "=" not in args.compare:
            parser.error("--what compare needs --compare KEY=V1,V2,... (e.g. --compare gamma=0.9,0.99)")
        key, _, values = args.compare.partition("=")
        args.env = env or "rlmem/PassiveTMazeEasy-v0"
        variants = {f"{key} {v}": check_hyperparameters("dqn", parse_assignments([f"{key}={v}"]), "--compare")
                    for v in values.split(",")}
        ablation(key, variants, args, base)


if __name__ == "__main__":
    main()
