"""The ``rlmem`` command: ``rlmem envs`` lists the tasks, ``rlmem train`` trains an agent."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

import gymnasium as gym


def _space_str(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)}"
    return str(space)


def _first_line(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")


def cmd_envs(args: argparse.Namespace) -> int:
    """Print every registered rlmem id with its spaces, episode length and one line of description."""
    from rlmem.envs.base import TorchVecEnv
    from rlmem.envs.registry import TASKS

    rows = []
    for env_id, task in TASKS.items():
        env = task(num_envs=1)
        doc = _first_line(task)
        parent = task.__mro__[1]
        if parent is not TorchVecEnv:
            # A level: the task's own description, then the level's settings.
            settings = doc.split(" with ", 1)[-1].rstrip(".")
            doc = f"{_first_line(parent)} [{settings}]"
        rows.append((env_id, _space_str(env.single_observation_space), _space_str(env.single_action_space),
                     str(env.max_episode_steps), doc))
    header = ("id", "observation", "action", "max steps", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train an agent on an env and fill a run directory (config, checkpoints, TensorBoard, eval)."""
    from rlmem.agents.sb3_baseline import SB3BaselineConfig, train_sb3_baseline
    from rlmem.envs.registry import make_vec_env

    fields = {f.name for f in dataclasses.fields(SB3BaselineConfig)}
    config = SB3BaselineConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    make_vec_env(config.env, 1, seed=config.seed).close()  # fail on a bad id before any file is written
    print(f"training {config.algo} on {config.env} for {config.steps} steps -> {args.run_dir}", flush=True)
    result = train_sb3_baseline(config, args.run_dir)
    print(f"eval: mean_return {result['mean_return']:.3f} +- {result['std_return']:.3f} "
          f"over {result['n_episodes']} episodes; written to {args.run_dir}/eval.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlmem", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    envs = sub.add_parser("envs", help="list every registered task and level")
    envs.set_defaults(func=cmd_envs)

    train = sub.add_parser("train", help="train an agent on a memory task")
    train.add_argument("--env", default="rlmem/RepeatPreviousEasy-v0", help="env id (default: %(default)s)")
    train.add_argument("--algo", default="sb3-ppo-lstm", choices=["sb3-ppo-lstm"],
                       help="agent: sb3-contrib's RecurrentPPO baseline (rlmem's own agents come next)")
    train.add_argument("--steps", type=int, default=100_000, help="total env-steps (default: %(default)s)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--n-envs", dest="n_envs", type=int, default=8, help="envs stepped together")
    train.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    train.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=100)
    train.add_argument("--run-dir", dest="run_dir", default="runs/latest", help="output directory")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `rlmem envs | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError) as error:
        if args.debug:
            raise
        print(f"rlmem: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
