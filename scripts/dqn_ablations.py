"""RecurrentDQN ablations and speed: the figures behind docs/benchmarks.md's RecurrentDQN section.

    python scripts/dqn_ablations.py --what speed                 # env-steps/s (acting) and learner updates/s
    python scripts/dqn_ablations.py --what state --steps 40000   # stored vs zero state at sequence start
    python scripts/dqn_ablations.py --what burn_in --steps 100000 --set seq_len=120 --set overlap=60
    python scripts/dqn_ablations.py --what compare --compare gamma=0.9,0.99 --env rlmem/RepeatPreviousEasy-v0
    python scripts/dqn_ablations.py --what curve --compare dueling=false,true --env rlmem/RepeatPreviousEasy-v0 --set gamma=0.99

Each ablation trains the same agent (dqn-lstm defaults plus --set) with one setting changed,
for a fixed budget of env-steps, and reports the greedy return on 200 fresh episodes and the
env-steps at which a greedy check (every 10 iterations, 100 episodes) first reached 0.95.
``--what curve`` trains each variant for the whole budget instead and prints, every ``--every``
iterations, the greedy return (64 episodes), the learner's mean Q and mean |TD error|, and at the end
the greedy max Q, the action gap (best minus second-best Q), |max Q - return| and the fraction of steps
rewarded, by quarter of the episode: whether a learned policy holds, and how large the Q-values' errors are
next to the gap between actions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from rlmem import RecurrentDQN
from rlmem.envs.registry import make_vec_env
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


@torch.no_grad()
def gap_profile(agent: RecurrentDQN, episodes: int = 64, buckets: int = 4) -> list[tuple[float, float, float, float]]:
    """Per quarter of the episode (greedy play on fresh episodes of a fixed-length task): the mean max Q, the mean
    action gap (best minus second-best Q), the mean |Q error| (max Q against the discounted return that followed)
    and the fraction of steps rewarded > 0."""
    env = make_vec_env(agent.env_source, episodes, agent.device, 4242, env_kwargs=agent.env_kwargs)
    obs, _ = env.reset(seed=4242)
    n = env.num_envs
    state, start = agent.q_net.initial_state(n, agent.device), torch.ones(n, dtype=torch.bool, device=agent.device)
    rows = []  # (max q, gap, reward) per step, for the first episode of every env
    alive = torch.ones(n, dtype=torch.bool, device=agent.device)
    while alive.any():
        q, state = agent.q_net.step(obs, state, start)
        top = q.topk(2, dim=-1).values
        action = q.argmax(-1)
        obs, reward, terminated, truncated, _ = env.step(agent.env_action(action))
        reward = reward.float()
        rows.append((top[:, 0], top[:, 0] - top[:, 1], reward, alive.clone()))
        done = terminated | truncated
        alive &= ~done
        start = done
    steps = len(rows)
    returns, after = [], torch.zeros(n, device=agent.device)
    for max_q, _, reward, live in reversed(rows):  # the discounted return from each step on
        after = torch.where(live, reward + agent.config.gamma * after, after)
        returns.append(after)
    returns.reverse()
    profile = []
    for b in range(buckets):
        part = range(b * steps // buckets, (b + 1) * steps // buckets)
        live = torch.stack([rows[t][3] for t in part]).float()
        def mean(x):
            return float((torch.stack(x) * live).sum() / live.sum().clamp_min(1))
        profile.append((mean([rows[t][0] for t in part]), mean([rows[t][1] for t in part]),
                        mean([(rows[t][0] - returns[t]).abs() for t in part]),
                        mean([(rows[t][2] > 0).float() for t in part])))
    return profile


def curves(variants: dict[str, dict], args: argparse.Namespace, base: dict) -> None:
    for label, change in variants.items():
        for seed in range(args.seeds):
            agent = RecurrentDQN(args.env, device=args.device, seed=seed, verbose=0, **{**base, **change})
            points: list[str] = []
            calls = [0]

            def record(a: RecurrentDQN) -> bool:
                calls[0] += 1
                if calls[0] % args.every == 0 and a.last_log.get("losses/q_values") is not None:
                    points.append(f"{a.num_timesteps // 1000}k: {a.evaluate(64, seed=777)['mean_return']:.2f} "
                                  f"(Q {a.last_log['losses/q_values']:.3f}, |TD| {a.last_log['losses/td_error']:.4f})")
                return True

            start = time.perf_counter()
            agent.learn(args.steps, callback=record, progress_bar=False)
            print(f"\n{label}, seed {seed}, {args.env}, settings {({**base, **change})}, "
                  f"{time.perf_counter() - start:.0f} s; greedy return (mean Q, mean |TD error|) by env-steps:")
            print("  " + "\n  ".join(points))
            print("  by quarter of the episode: max Q, action gap, |max Q - return|, rewarded fraction")
            for i, (q, gap, err, right) in enumerate(gap_profile(agent)):
                print(f"  q{i + 1}: {q:.3f} {gap:.4f} {err:.4f} {right:.3f}", flush=True)


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
    parser.add_argument("--what", choices=["speed", "state", "burn_in", "compare", "curve", "all"], default="all")
    parser.add_argument("--env", default=None, help="default: PassiveTMazeMedium for burn_in, Easy otherwise")
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--every", type=int, default=20, help="with --what curve: iterations between points")
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
    if args.what in ("compare", "curve"):
        if not args.compare or "=" not in args.compare:
            parser.error(f"--what {args.what} needs --compare KEY=V1,V2,... (e.g. --compare gamma=0.9,0.99)")
        key, _, values = args.compare.partition("=")
        args.env = env or "rlmem/PassiveTMazeEasy-v0"
        variants = {f"{key} {v}": check_hyperparameters("dqn", parse_assignments([f"{key}={v}"]), "--compare")
                    for v in values.split(",")}
        if args.what == "compare":
            ablation(key, variants, args, base)
        else:
            curves(variants, args, base)


if __name__ == "__main__":
    main()
