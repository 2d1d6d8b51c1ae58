"""MiniGrid-MemoryS7-v0 on the CPU: sb3-contrib's RecurrentPPO (``MultiInputLstmPolicy``) beside rlmem's
PPO-LSTM, and the env's own speed through rlmem's gymnasium adapter (docs/benchmarks.md, "MiniGrid").

    python scripts/minigrid_vs_sb3.py env --seconds 10
    timeout 1200 rlmem train --env MiniGrid-MemoryS7-v0 --preset ppo-lstm --steps 5000000 --threads 1 \\
        --device cpu --run-dir runs/mg-rlmem
    timeout 1260 python scripts/minigrid_vs_sb3.py sb3 --seconds 1200 --out runs/mg-sb3.json
    python scripts/minigrid_vs_sb3.py curve --rlmem runs/mg-rlmem --sb3 runs/mg-sb3.json

``env``: env-steps/s with random actions drawn before the clock: one minigrid env in a Python loop,
gymnasium's ``SyncVectorEnv`` of N copies, and ``rlmem.make_vec_env`` of N (that vector env plus the
adapter's checks and tensors at the edge).

``sb3``: sb3-contrib's RecurrentPPO with rlmem's ppo-lstm settings (``--set KEY=VALUE`` as ``rlmem train``
takes them, mapped by rlmem's own ``matched_kwargs``: rollout, batch, epochs, optimiser, LSTM 64 shared by
actor and critic, linear heads) and rlmem's network before the LSTM (the same small CNN class over the image,
the one-hot direction, one Linear+Tanh of 64), so the two differ in implementation, not in settings. sb3
needs the mission (a string) taken out: gymnasium's ``FilterObservation(["image", "direction"])``. It
trains until ``--steps`` or ``--seconds`` of wall clock, records every finished episode (env-step, return,
seconds), then evaluates the policy deterministically on ``--eval-episodes`` episodes; all in ``--out``.

``curve``: the mean return of the episodes finished in each rollout (rlmem's ``charts/episodic_return``,
read from the run's TensorBoard events; for sb3 from its episodes, per rollout of the same size), printed
every ``--every`` rollouts, and the first rollout whose mean reaches ``--threshold``.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a checkout works without `pip install -e .`
from rlmem import make_vec_env  # noqa: E402
from rlmem.agents.encoders import ImageEncoder  # noqa: E402
from rlmem.agents.ppo import PPOConfig  # noqa: E402
from rlmem.agents.presets import check_hyperparameters, parse_assignments  # noqa: E402
from rlmem.agents.sb3_baseline import describe_kwargs, matched_kwargs  # noqa: E402

ID = "MiniGrid-MemoryS7-v0"
KEYS = ["image", "direction"]


def _actions(n: int, count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 7, size=(count, n))


def env_speed(args: argparse.Namespace) -> None:
    """Print env-steps/s of minigrid alone, gymnasium's SyncVectorEnv and rlmem's adapter."""
    import minigrid  # noqa: F401  (registers the ids)

    def timed(step, reset, n: int) -> float:
        reset()
        actions = _actions(n, 200_000 // n + 1)
        start, i = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds and i < len(actions):
            step(actions[i])
            i += 1
        return i * n / (time.perf_counter() - start)

    env = gym.make(ID)

    def single(action):
        if any(env.step(int(action[0]))[2:4]):
            env.reset()

    rows = [("minigrid, one env, Python loop", 1, timed(single, lambda: env.reset(seed=0), 1))]
    for n in args.n_envs:
        sync = gym.make_vec(ID, n, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
        rows.append(("gymnasium SyncVectorEnv", n, timed(sync.step, lambda: sync.reset(seed=0), n)))
        adapter = make_vec_env(ID, n, seed=0)
        rows.append(("rlmem make_vec_env (adapter)", n,
                     timed(lambda a: adapter.step(torch.as_tensor(a)), adapter.reset, n)))
    for what, n, sps in rows:
        print(f"{what:32s} N={n:4d}  {sps:10,.0f} env-steps/s")


def dict_extractor_class() -> type:
    """An sb3 features extractor that is rlmem's encoder for this Dict: rlmem's small CNN class on the image
    (sb3 hands it channels first, scaled to [0, 1]), the one-hot direction beside it, then Linear+Tanh."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class MiniGridEncoder(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Dict, sizes=(64,)) -> None:
            super().__init__(observation_space, int(sizes[-1]))
            image = observation_space["image"]
            self.image = ImageEncoder(gym.spaces.Box(0.0, 1.0, image.shape, np.float32), first=True)
            width = self.image.output_size + int(observation_space["direction"].n)
            layers: list[torch.nn.Module] = []
            for fan_in, fan_out in zip([width, *sizes[:-1]], sizes):
                layers += [torch.nn.Linear(fan_in, int(fan_out)), torch.nn.Tanh()]
            self.mlp = torch.nn.Sequential(*layers)

        def forward(self, obs: dict) -> torch.Tensor:
            direction = obs["direction"].reshape(obs["direction"].shape[0], -1)  # sb3's one-hot is [B, 1, 4]
            return self.mlp(torch.cat([self.image(obs["image"]), direction], dim=-1))

    return MiniGridEncoder


def train_sb3(args: argparse.Namespace) -> None:
    """Train sb3-contrib's RecurrentPPO until --steps or --seconds; write its episodes and evaluation."""
    import minigrid  # noqa: F401
    from gymnasium.wrappers import FilterObservation
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(args.threads)
    overrides = check_hyperparameters("ppo", parse_assignments(args.set), "--set")
    config = dataclasses.replace(PPOConfig(), **overrides)
    kwargs = matched_kwargs(config, seed=args.seed)
    kwargs["policy_kwargs"]["features_extractor_class"] = dict_extractor_class()

    def wrap(env: gym.Env) -> gym.Env:
        return FilterObservation(env, KEYS)

    env = sb3_make_vec_env(ID, n_envs=config.n_envs, seed=args.seed, wrapper_class=wrap)
    episodes: list[tuple[int, float, float]] = []

    class Record(BaseCallback):
        def _on_training_start(self) -> None:
            self.start = time.perf_counter()
            self.last_print = self.start

        def _on_step(self) -> bool:
            now = time.perf_counter() - self.start
            for info in self.locals["infos"]:
                if "episode" in info:
                    episodes.append((self.num_timesteps, float(info["episode"]["r"]), round(now, 3)))
            if now - (self.last_print - self.start) > 30:
                self.last_print = time.perf_counter()
                recent = [r for _, r, _ in episodes[-200:]]
                print(f"step {self.num_timesteps:>10,}  {self.num_timesteps / now:7,.0f} env-steps/s  "
                      f"return {np.mean(recent) if recent else float('nan'):.3f}  {now:6.0f} s", flush=True)
            return now < args.seconds

    model = RecurrentPPO("MultiInputLstmPolicy", env, device="cpu", verbose=0, **kwargs)
    record = Record()
    model.learn(args.steps, callback=record)
    seconds = time.perf_counter() - record.start
    eval_env = sb3_make_vec_env(ID, n_envs=8, seed=args.seed + 10_000, wrapper_class=wrap)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    result = {"env": ID, "agent": "sb3-contrib RecurrentPPO MultiInputLstmPolicy", "steps": model.num_timesteps,
              "seconds": round(seconds, 1), "env_steps_per_s": round(model.num_timesteps / seconds, 1),
              "rollout": config.n_envs * config.n_steps, "eval_mean_return": float(mean), "eval_std": float(std),
              "eval_episodes": args.eval_episodes, "settings": describe_kwargs(kwargs),
              "episodes": episodes}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result))
    print(f"sb3: {result['steps']:,} env-steps in {seconds:.0f} s ({result['env_steps_per_s']:,.0f} env-steps/s); "
          f"deterministic eval {mean:.3f} +- {std:.3f} over {args.eval_episodes} episodes -> {args.out}")


def rlmem_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(env-step, mean return of the rollout's finished episodes, seconds since the events file was opened)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(files[0]))
    events.Reload()
    start = events.FirstEventTimestamp()
    return [(s.step, s.value, s.wall_time - start) for s in events.Scalars("charts/episodic_return")]


def sb3_curve(data: dict) -> list[tuple[int, float, float]]:
    """The same per-rollout means from sb3's episodes (those finished in steps (k-1)R+1 .. kR); the seconds are
    the rollout's last episode's end, before its update (rlmem's: after its update)."""
    rollout, groups = data["rollout"], {}
    for step, ret, seconds in data["episodes"]:
        k = -(-step // rollout)
        groups.setdefault(k, []).append((ret, seconds))
    return [(min(k * rollout, data["steps"]), float(np.mean([r for r, _ in g])), max(s for _, s in g))
            for k, g in sorted(groups.items())]  # the last rollout may be cut short by --seconds


def curves(args: argparse.Namespace) -> None:
    found = []
    if args.rlmem:
        found.append(("rlmem PPO-LSTM", rlmem_curve(Path(args.rlmem))))
    if args.sb3:
        found.append(("sb3-contrib RecurrentPPO", sb3_curve(json.loads(Path(args.sb3).read_text()))))
    for name, curve in found:
        print(f"{name}: {len(curve)} rollouts")
        for i, (step, ret, seconds) in enumerate(curve):
            if i % args.every == 0 or i == len(curve) - 1:
                print(f"  step {step:>10,}  return {ret:.3f}  {seconds:7.1f} s")
        hit = next(((s, r, t) for s, r, t in curve if r >= args.threshold), None)
        best = max(curve, key=lambda c: c[1])
        print(f"  first rollout >= {args.threshold}: " + (f"step {hit[0]:,}, {hit[2]:.0f} s (return {hit[1]:.3f})"
                                                          if hit else "none")
              + f"; best {best[1]:.3f} at step {best[0]:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    env = sub.add_parser("env", help="env-only env-steps/s")
    env.add_argument("--seconds", type=float, default=10.0)
    env.add_argument("--n-envs", type=int, nargs="+", default=[16, 64])
    sb3 = sub.add_parser("sb3", help="train sb3-contrib's RecurrentPPO")
    sb3.add_argument("--steps", type=int, default=10_000_000)
    sb3.add_argument("--seconds", type=float, default=1200.0)
    sb3.add_argument("--seed", type=int, default=0)
    sb3.add_argument("--threads", type=int, default=1)
    sb3.add_argument("--eval-episodes", type=int, default=100)
    sb3.add_argument("--set", action="append", metavar="KEY=VALUE", help="a ppo hyperparameter, as rlmem train")
    sb3.add_argument("--out", default="runs/minigrid-sb3.json")
    curve = sub.add_parser("curve", help="the return curves and when they reach --threshold")
    curve.add_argument("--rlmem", help="a run directory of rlmem train")
    curve.add_argument("--sb3", help="the JSON the sb3 command wrote")
    curve.add_argument("--threshold", type=float, default=0.9)
    curve.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(getattr(args, "threads", 1))
    {"env": env_speed, "sb3": train_sb3, "curve": curves}[args.what](args)


if __name__ == "__main__":
    main()
