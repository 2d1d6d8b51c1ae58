"""The ``rlmem`` command: ``envs`` lists the tasks, ``train`` fills a run directory, ``eval`` re-evaluates one,
``probe`` measures what its memory holds, ``bench`` runs a suite of envs x agents x seeds, ``throughput``
measures speed (:mod:`rlmem.throughput`, which parses its own arguments: ``rlmem throughput --help``).

A run directory holds ``config.yaml`` (every setting, resolved), ``checkpoints/`` (``step-<N>.pt``
every ``--checkpoint-every`` env-steps and ``final.pt``; ``final.zip`` for sb3-ppo-lstm), the
TensorBoard events and ``eval.json``. ``train --resume RUN_DIR`` continues a stopped run from its
last good checkpoint. Errors are one line ``rlmem: error: ...`` on stderr with exit code 2 (1 for
a run whose loss or weights became nan or inf); ``--debug`` shows the traceback. SIGINT or
SIGTERM during training writes a checkpoint and exits with 128 + the signal's number.

Under ``torchrun --nproc_per_node=K -m rlmem train ...`` the K processes train one RecurrentPPO
agent data-parallel (:mod:`rlmem.distributed`); rank 0 alone writes the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
import yaml

from rlmem import distributed
from rlmem.files import atomic_write_text

EVAL_SEED_OFFSET = 10_000
"""Evaluation envs are seeded with the run's seed + this, at the end of training and in ``rlmem eval``."""

CHECKPOINTS = {"ppo": "final.pt", "dqn": "final.pt", "sb3-ppo-lstm": "final.zip"}

DEFAULT_RUN_DIR = "runs/latest"

RESUME_FLAGS = ("--steps", "--threads", "--dist-timeout", "--debug")
"""The flags ``train --resume`` takes: every other setting is the run's own (its config.yaml)."""


def _space_str(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)}"
    return str(space)


def _first_line(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")


def cmd_envs(args: argparse.Namespace) -> int:
    """Print every registered rlmem id with its spaces, episode length and one line of description."""
    from rlmem.envs.registry import TASKS

    rows = []
    for env_id, task in TASKS.items():
        env = task(num_envs=1)
        doc = _first_line(task)
        if task.level is not None:
            # A level: the task's own description, then the level's settings.
            settings = doc.split(" with ", 1)[-1].rstrip(".")
            doc = f"{_first_line(task.task_class)} [{settings}]"
        rows.append((env_id, _space_str(env.single_observation_space), _space_str(env.single_action_space),
                     str(env.max_episode_steps), doc))
    header = ("id", "observation", "action", "max steps", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4])
    return 0


def _agent_class(algo: str) -> type:
    if algo == "ppo":
        from rlmem.agents.ppo import RecurrentPPO

        return RecurrentPPO
    if algo == "dqn":
        from rlmem.agents.dqn import RecurrentDQN

        return RecurrentDQN
    from rlmem.agents.sb3_baseline import SB3Baseline

    return SB3Baseline


def _build_agent(spec: Any, run_dir: Path | None, verbose: int = 1) -> Any:
    """The agent ``spec`` describes, writing TensorBoard events to ``run_dir`` (nothing is written yet)."""
    cls = _agent_class(spec.algo)
    if spec.algo == "sb3-ppo-lstm":
        if spec.env_kwargs:
            raise ValueError("env_kwargs are not supported for sb3-ppo-lstm")
        return cls(spec.env, device=spec.device, seed=spec.seed, verbose=verbose, **spec.hyperparameters)
    return cls(spec.env, device=spec.device, seed=spec.seed, tensorboard_log=run_dir, verbose=verbose,
               env_kwargs=spec.env_kwargs, **spec.hyperparameters)


def _load_agent(config: dict[str, Any], checkpoint: Path, device: str, seed: int, env: str | None = None) -> Any:
    """The run's agent from ``checkpoint``, on the run's env or on ``env`` (another task with the same spaces)."""
    cls = _agent_class(config["algo"])
    env_kwargs = config.get("env_kwargs") or {}
    if env is not None and env != config["env"]:
        env_kwargs = {}  # the run's env arguments belong to its own task
    env = env if env is not None else config["env"]
    if config["algo"] == "sb3-ppo-lstm":
        return cls.load(checkpoint, env=env, device=device, seed=seed, **_run_hyperparameters(config))
    return cls.load(checkpoint, env=env, device=device, verbose=0, env_kwargs=env_kwargs)


def _run_hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """A run config's hyperparameters, checked as a preset's are (a ValueError naming a bad one)."""
    from rlmem.agents.presets import check_hyperparameters

    return check_hyperparameters(config["algo"], config.get("hyperparameters") or {}, "config.yaml")


def _check_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run directory {str(run_dir)!r} is a file")
    if (run_dir / "config.yaml").exists() and not overwrite:
        raise ValueError(f"run directory {str(run_dir)!r} already holds a run (config.yaml); "
                         "pass --overwrite to replace it, or choose another --run-dir")


def _clear_run_dir(run_dir: Path) -> None:
    """Remove a previous run's outputs (only the files a run writes) so the new one is not mixed with it."""
    for name in ("config.yaml", "eval.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    for events in run_dir.glob("events.out.tfevents.*"):
        events.unlink()


def _write_json(path: Path, values: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(values, indent=2) + "\n")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def _join_group(args: argparse.Namespace, algo: str, device: str) -> str:
    """Under torchrun (WORLD_SIZE > 1): check the algo, join the process group; this process's device.

    Without torchrun: ``device`` unchanged and nothing else done.
    """
    from rlmem import distributed
    from rlmem.device import resolve_device

    if not distributed.requested():
        return device
    if algo != "ppo":
        raise ValueError(f"data-parallel training (torchrun, WORLD_SIZE={os.environ['WORLD_SIZE']}) is not "
                         f"supported yet for {algo}; only ppo is (run {algo} in one process)")
    timeout = args.dist_timeout if args.dist_timeout is not None else distributed.DEFAULT_TIMEOUT_S
    return str(distributed.init(resolve_device(device), timeout))


def _agree(error: Exception | None) -> None:
    """Every rank learns whether rank 0's checks of the run directory passed (rank 0 re-raises its error)."""
    from rlmem import distributed

    if not distributed.active():
        if error is not None:
            raise error
        return
    import torch

    failed = distributed.all_reduce_(torch.tensor([int(error is not None)]))
    if error is not None:
        raise error
    if failed.item():
        raise ValueError("rank 0 refused the run (its error says why)")


def cmd_train(args: argparse.Namespace) -> int:
    """Train an agent on an env and fill a run directory (config, checkpoints, TensorBoard, eval)."""
    from rlmem import __version__
    from rlmem.agents.presets import parse_assignments, resolve_run
    from rlmem.device import resolve_device

    if args.resume is not None:
        return _resume(args)
    # Everything is checked before the run directory is touched: a bad command writes nothing.
    hyperparameters = parse_assignments(args.set)
    for flag, key in (("--memory", "memory"), ("--n-envs", "n_envs")):
        value = getattr(args, key)
        if value is not None:
            if key in hyperparameters and hyperparameters[key] != value:
                raise ValueError(f"{flag} {value} and --set {key}={hyperparameters[key]} disagree")
            hyperparameters[key] = value
    env_kwargs = parse_assignments(args.env_set, "--env-set") if args.env_set else None
    spec = resolve_run(args.preset, args.algo, hyperparameters, env=args.env, steps=args.steps, seed=args.seed,
                       device=args.device, eval_episodes=args.eval_episodes, env_kwargs=env_kwargs,
                       checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints)
    _set_threads(args.threads)
    resolve_device(spec.device)
    _check_env(spec)
    device = _join_group(args, spec.algo, spec.device)
    run_dir = Path(args.run_dir if args.run_dir is not None else DEFAULT_RUN_DIR)
    main = distributed.is_main()
    error = None
    if main:  # rank 0 alone checks and writes the run directory
        try:
            _check_run_dir(run_dir, args.overwrite)
        except ValueError as problem:
            error = problem
    _agree(error)
    agent = _build_agent(dataclasses.replace(spec, device=device), run_dir if main else None)
    if not main:
        return _train_and_evaluate(agent, spec, run_dir, resume=False)

    run_dir.mkdir(parents=True, exist_ok=True)
    _clear_run_dir(run_dir)
    config = {**spec.to_dict(), "rlmem_version": __version__}
    if distributed.active():
        config["world_size"] = distributed.world_size()
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    if spec.algo == "sb3-ppo-lstm":
        agent.set_tensorboard_log(run_dir)
    if spec.algo == "dqn":
        rollout, unit = agent.steps_per_iteration, "iterations of n_envs * (seq_len - overlap)"
    else:
        hp = spec.hyperparameters
        rollout, unit = hp["n_envs"] * hp["n_steps"] * distributed.world_size(), "rollouts of n_envs * n_steps"
        if distributed.active():
            unit += f" on each of {distributed.world_size()} processes"
    planned = -(-spec.steps // rollout) * rollout
    note = ""
    if planned != spec.steps:
        note = f" (rounded up to {planned:,}: whole {unit} = {rollout})"
    print(f"training {spec.algo} on {spec.env} for {spec.steps:,} steps{note} -> {run_dir}", flush=True)
    return _train_and_evaluate(agent, spec, run_dir, resume=False)


def _check_env(spec: Any) -> None:
    """Build one env of ``spec`` (an unknown id names the closest ones; impossible kwargs name the field)."""
    from rlmem.envs.registry import make_vec_env

    try:
        make_vec_env(spec.env, 1, seed=spec.seed, env_kwargs=spec.env_kwargs).close()
    except TypeError as error:  # e.g. a keyword the env does not take
        if not spec.env_kwargs:
            raise
        raise ValueError(f"env_kwargs {spec.env_kwargs} do not fit {spec.env}: {error}") from None


def _train_and_evaluate(agent: Any, spec: Any, run_dir: Path, resume: bool, until: int | None = None) -> int:
    """Train (checkpointing into run_dir/checkpoints), then evaluate into eval.json.

    A new run trains ``spec.steps``; a resumed one finishes its learn call (or goes on ``until``).
    """
    from rlmem.agents.stops import TrainingInterrupted

    checkpoint = run_dir / "checkpoints" / CHECKPOINTS[spec.algo]
    start, start_steps = time.perf_counter(), agent.num_timesteps
    if spec.algo == "sb3-ppo-lstm":  # sb3-contrib's loop: no periodic checkpoints, no resume
        try:
            agent.learn(spec.steps)
        except KeyboardInterrupt:
            saved = checkpoint.with_name("interrupted" + checkpoint.suffix)
            agent.save(saved)
            print(f"\ninterrupted at step {agent.num_timesteps:,}; agent saved to {saved}", file=sys.stderr)
            raise
        agent.save(checkpoint)
    else:
        options = {"checkpoint_dir": run_dir / "checkpoints", "checkpoint_every": spec.checkpoint_every,
                   "keep_checkpoints": spec.keep_checkpoints}
        try:
            if resume:
                agent.resume(until, **options)
            else:
                agent.learn(spec.steps, **options)  # ends by writing checkpoints/final.pt
        except TrainingInterrupted as stop:
            if distributed.is_main():
                newline = "\n" if sys.stderr.isatty() else ""  # after a progress bar
                print(f"{newline}rlmem: {stop}; continue with `rlmem train --resume {run_dir}`", file=sys.stderr)
            return 128 + stop.signum
    if not distributed.is_main():
        return 0  # rank 0 evaluates and writes eval.json
    wall = time.perf_counter() - start
    result = agent.evaluate(spec.eval_episodes, seed=spec.seed + EVAL_SEED_OFFSET)
    trained = int(agent.num_timesteps) - start_steps
    result.update(steps=int(agent.num_timesteps), wall_clock_s=round(wall, 3),
                  env_steps_per_s=round(trained / wall, 1) if trained else None,
                  eval_seed=spec.seed + EVAL_SEED_OFFSET, algo=spec.algo, env=spec.env, device=str(agent.device))
    if resume:
        result["resumed_from_step"] = start_steps
    if distributed.active():
        result["world_size"] = distributed.world_size()
    _write_json(run_dir / "eval.json", result)
    print(f"eval: mean_return {result['mean_return']:.3f} +- {result['std_return']:.3f} over "
          f"{result['n_episodes']} episodes (trained {result['steps']:,} steps, {trained:,} in {wall:.1f} s); "
          f"written to {run_dir / 'eval.json'}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    """``train --resume RUN_DIR``: go on from the run's last good checkpoint, with its own settings."""
    from rlmem.agents.checkpoints import find_resume_checkpoint
    from rlmem.agents.presets import resolve_run

    given = {"--env": args.env, "--env-set": args.env_set, "--algo": args.algo, "--preset": args.preset,
             "--memory": args.memory, "--seed": args.seed, "--device": args.device, "--n-envs": args.n_envs,
             "--set": args.set, "--eval-episodes": args.eval_episodes, "--run-dir": args.run_dir,
             "--overwrite": args.overwrite or None, "--checkpoint-every": args.checkpoint_every,
             "--keep-checkpoints": args.keep_checkpoints}
    conflicting = [flag for flag, value in given.items() if value is not None]
    if conflicting:
        raise ValueError(f"--resume continues a run with its own settings (its config.yaml); "
                         f"{', '.join(conflicting)} cannot be given with it (allowed: {', '.join(RESUME_FLAGS)})")
    run_dir = Path(args.resume)
    config = _read_run_config(run_dir)
    if config["algo"] not in ("ppo", "dqn"):
        raise ValueError(f"{config['algo']} runs cannot be resumed (ppo and dqn runs can)")
    source = str(run_dir / "config.yaml")
    run = {key: config[key] for key in ("env", "env_kwargs", "steps", "seed", "device", "eval_episodes",
                                        "checkpoint_every", "keep_checkpoints") if key in config}
    if args.steps is not None:
        run["steps"] = args.steps
    spec = resolve_run(None, config["algo"], config.get("hyperparameters") or {}, source=source, **run)
    spec.preset = config.get("preset")
    _set_threads(args.threads)
    device = _join_group(args, spec.algo, spec.device)
    main = distributed.is_main()
    cls = _agent_class(spec.algo)
    path, data, notes = find_resume_checkpoint(run_dir / "checkpoints", cls.algo)
    for note in notes if main else ():
        print(f"rlmem: {note}", file=sys.stderr)
    if path is None:
        raise ValueError(f"{str(run_dir)!r} holds no checkpoint to resume from (a run writes its first after "
                         f"checkpoint_every = {spec.checkpoint_every:,} steps); start it again with --overwrite")
    step = int(data["num_timesteps"])
    if args.steps is not None and args.steps < step:
        raise ValueError(f"--steps {args.steps:,} is below the {step:,} steps {str(run_dir)!r} has already trained")
    finished = path.name == CHECKPOINTS[spec.algo] and (run_dir / "eval.json").is_file()
    if finished and (args.steps is None or args.steps <= step):
        raise ValueError(f"{str(run_dir)!r} has already finished its {step:,} steps; "
                         f"pass a larger --steps to train on")
    agent = cls.restore(path, device=device, tensorboard_log=run_dir if main else None,
                        verbose=1 if main else 0)
    if not main:
        return _train_and_evaluate(agent, spec, run_dir, resume=True, until=args.steps)
    if args.steps is not None and args.steps != config.get("steps"):
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump({**config, "steps": spec.steps}, sort_keys=False))
    until = args.steps if args.steps is not None else agent._plan["end"]
    print(f"resuming {spec.algo} on {spec.env} from {path} (step {step:,}) to {until:,} steps -> {run_dir}",
          flush=True)
    return _train_and_evaluate(agent, spec, run_dir, resume=True, until=args.steps)


def _read_run_config(run_dir: Path) -> dict[str, Any]:
    """A run directory's config.yaml, checked to be one (a ValueError otherwise)."""
    config_path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise ValueError(f"{str(run_dir)!r} is not a directory")
    if not config_path.is_file():
        raise ValueError(f"{str(run_dir)!r} holds no run: it has no config.yaml")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict) or config.get("algo") not in CHECKPOINTS or not isinstance(config.get("env"), str):
        raise ValueError(f"{str(config_path)!r} is not an rlmem run config (it needs algo and env)")
    return config


def finished_run(run_dir: str | Path) -> tuple[dict[str, Any], Path]:
    """The config and final checkpoint of the finished run in ``run_dir``; a ValueError says what is missing."""
    run_dir = Path(run_dir)
    config = _read_run_config(run_dir)
    checkpoint = run_dir / "checkpoints" / CHECKPOINTS[config["algo"]]
    if not checkpoint.is_file():
        raise ValueError(f"{str(run_dir)!r} holds no finished run: it has no checkpoints/{checkpoint.name} "
                         "(training did not finish; `rlmem train --resume` continues it)")
    return config, checkpoint


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a finished run's final checkpoint; print the numbers (``--write``: into eval.json too)."""
    run_dir = Path(args.run_dir)
    config, checkpoint = finished_run(run_dir)
    _set_threads(args.threads)
    seed = int(config.get("seed", 0))
    episodes = args.episodes if args.episodes is not None else int(config.get("eval_episodes", 100))
    agent = _load_agent(config, checkpoint, args.device, seed)
    result = agent.evaluate(episodes, seed=seed + EVAL_SEED_OFFSET)
    print(f"{run_dir}: {config['algo']} on {config['env']}, {agent.num_timesteps:,} steps")
    for key in ("mean_return", "std_return", "mean_length", "n_episodes"):
        value = result[key]
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    if args.write:
        path = run_dir / "eval.json"
        previous = json.loads(path.read_text()) if path.is_file() else {}
        _write_json(path, {**previous, **result, "eval_seed": seed + EVAL_SEED_OFFSET})
        print(f"written to {path}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Probe a finished run's memory (and an untrained twin's); write probe.csv, probe.json, probe.png."""
    from rlmem.agents.presets import RunSpec
    from rlmem.envs.registry import make_vec_env
    from rlmem.probes import HORIZON_RULE, plot_probe, probe_agent, write_probe

    run_dir = Path(args.run_dir)
    runs = sorted(run_dir.glob("runs/*/*/seed*/result.json"))
    if not (run_dir / "config.yaml").exists() and runs:
        raise ValueError(f"{str(run_dir)!r} is a bench directory, not a run; probe one of its runs, "
                         f"e.g. {runs[0].parent}")
    config, checkpoint = finished_run(run_dir)
    _set_threads(args.threads)
    task = args.task or config["env"]
    make_vec_env(task, 1).close()  # an unknown id fails here, naming the closest ones
    seed = int(config.get("seed", 0))
    agent = _load_agent(config, checkpoint, args.device, seed, env=task)
    _check_same_spaces(agent, task)
    # The baseline: the same algo and hyperparameters, never trained, initialised from another seed.
    spec = RunSpec(algo=config["algo"], env=task, seed=seed + 1, device=args.device,
                   hyperparameters=dict(config.get("hyperparameters") or {}))
    untrained = _build_agent(spec, None, verbose=0)
    max_lag = args.max_lag
    if max_lag is None:
        max_lag = min(32, make_vec_env(task, 1).max_episode_steps - 1) if task.startswith("rlmem/") else 32
    result = probe_agent(agent, untrained, task, max_lag, n_envs=args.n_envs, seed=seed + EVAL_SEED_OFFSET,
                         device=str(getattr(agent, "device", "cpu")))
    result.update(run_dir=str(run_dir), algo=config["algo"], trained_steps=int(agent.num_timesteps))
    out = Path(args.out) if args.out else run_dir
    out.mkdir(parents=True, exist_ok=True)
    write_probe(result, out, log_dir=run_dir / "probe")
    title = f"{config['algo']} ({agent.num_timesteps:,} steps) probed on {task.removeprefix('rlmem/')}"
    plot_probe(result, out / "probe.png", title)
    bound = "at least " if result["horizon_trained_is_lower_bound"] else ""
    print(f"memory horizon: {bound}{result['horizon_trained']} (untrained: {result['horizon_untrained']}); "
          f"{HORIZON_RULE}")
    print(f"written to {out / 'probe.csv'}, probe.json, probe.png; TensorBoard scalars in {run_dir / 'probe'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run (or resume) a bench: every (env, agent, seed) of a suite; write the summary, tables and plots."""
    from rlmem.bench import run_bench

    _set_threads(args.threads)
    out = args.out or str(Path("results") / Path(args.suite).stem)
    failures = run_bench(args.suite, args.agents, args.seeds, out, workers=args.workers, shard=args.shard,
                         envs=args.envs, threads=args.threads or 1, device=args.device,
                         summary_only=args.summary_only)
    if failures:
        raise ValueError(f"{failures} run(s) failed (see the lines above and each run's bench.log); "
                         "rerun the same command to retry them")
    return 0


def _check_same_spaces(agent: Any, env_id: str) -> None:
    """sb3 models do not check the env they act in: refuse a --task whose spaces differ from training's."""
    if not hasattr(agent, "model"):
        return  # rlmem's agents check on load
    from rlmem.envs.registry import make_vec_env

    env = make_vec_env(env_id, 1)
    for name in ("observation_space", "action_space"):
        saved, given = getattr(agent.model, name), getattr(env, f"single_{name}")
        if saved.shape != given.shape or type(saved) is not type(given) or getattr(saved, "n", 0) != getattr(given, "n", 0):
            raise ValueError(f"--task {env_id}: its {name.replace('_', ' ')} {given} does not match the run's {saved}")


class _Parser(argparse.ArgumentParser):
    """argparse with rlmem's one-line errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rlmem: error: {message} (see `{self.prog} --help`)\n")


def _hyperparameter_help() -> str:
    from rlmem.agents.presets import ALGOS, hyperparameter_names

    lines = [f"{algo}: {', '.join(hyperparameter_names(algo))}" for algo in ALGOS]
    return "hyperparameters for --set KEY=VALUE (values are YAML: 1e-3, [64, 64], null):\n  " + "\n  ".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlmem", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    envs = sub.add_parser("envs", help="list every registered task and level", parents=[debug])
    envs.set_defaults(func=cmd_envs)

    train = sub.add_parser(
        "train", parents=[debug], help="train an agent on a memory task, into a run directory",
        description="Train an agent and fill --run-dir with config.yaml, checkpoints/, TensorBoard events and "
                    "eval.json. Settings: the algo's defaults < --preset < the flags below.",
        epilog=_hyperparameter_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--env", help="env id (default: the preset's, else rlmem/RepeatPreviousEasy-v0)")
    train.add_argument("--env-set", dest="env_set", action="append", metavar="KEY=VALUE",
                       help="set an env keyword argument, e.g. --env rlmem/RepeatPrevious-v0 --env-set k=8 (repeatable)")
    train.add_argument("--algo", choices=["ppo", "dqn", "sb3-ppo-lstm"],
                       help="ppo: rlmem's RecurrentPPO (default); dqn: rlmem's RecurrentDQN (R2D2-style); "
                            "sb3-ppo-lstm: sb3-contrib's RecurrentPPO baseline")
    train.add_argument("--preset", help="preset YAML (e.g. agents/ppo-gru.yaml, or just ppo-gru)")
    train.add_argument("--memory", choices=["lstm", "gru"], help="memory core (the hyperparameter memory)")
    train.add_argument("--steps", type=int, help="env-steps to train for (default: 100000)")
    train.add_argument("--seed", type=int, help="seed (default: 0)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    train.add_argument("--n-envs", dest="n_envs", type=int, help="envs stepped together (the hyperparameter n_envs)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="set any hyperparameter (repeatable)")
    train.add_argument("--eval-episodes", dest="eval_episodes", type=int,
                       help="episodes evaluated at the end (default: 100)")
    train.add_argument("--run-dir", dest="run_dir", help=f"output directory (default: {DEFAULT_RUN_DIR})")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue a stopped run from its last good checkpoint, with its own settings "
                            f"(only {', '.join(RESUME_FLAGS)} may be given with it; a larger --steps trains on)")
    train.add_argument("--checkpoint-every", dest="checkpoint_every", type=int,
                       help="env-steps between checkpoints (default: 100000; ppo and dqn)")
    train.add_argument("--keep-checkpoints", dest="keep_checkpoints", type=int,
                       help="periodic checkpoints kept, the newest (default: 3; final.pt besides)")
    train.add_argument("--threads", type=int, help="CPU threads torch may use (default: torch's choice)")
    train.add_argument("--dist-timeout", dest="dist_timeout", type=float,
                       help="under torchrun: seconds a collective waits for the other processes before the run "
                            "fails (default: 300)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", parents=[debug], help="evaluate a finished run's final checkpoint")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a directory `rlmem train` filled")
    evaluate.add_argument("--episodes", type=int, help="episodes (default: the run's eval_episodes)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    evaluate.add_argument("--write", action="store_true", help="also write the result into RUN_DIR/eval.json")
    evaluate.add_argument("--threads", type=int, help="CPU threads torch may use (default: torch's choice)")
    evaluate.set_defaults(func=cmd_eval)

    probe = sub.add_parser(
        "probe", parents=[debug], help="probe what a finished run's memory holds, against lag",
        description="Fit a linear read-out of the observation k steps back from the memory state, for k = "
                    "0..--max-lag, for the trained agent and an untrained one of the same shape; write "
                    "probe.csv, probe.json, probe.png and TensorBoard scalars (RUN_DIR/probe). The memory horizon "
                    "is the largest lag h with held-out accuracy >= 0.9 at every lag 0..h.")
    probe.add_argument("run_dir", metavar="RUN_DIR", help="a directory `rlmem train` (or `rlmem bench`) filled")
    probe.add_argument("--task", help="env id to probe on (default: the run's env; same spaces needed)")
    probe.add_argument("--max-lag", dest="max_lag", type=int,
                       help="largest lag probed (default: 32, or the episode length - 1 if shorter)")
    probe.add_argument("--n-envs", dest="n_envs", type=int, default=128,
                       help="envs in the probe's rollout (default: %(default)s; 70%% train the read-out)")
    probe.add_argument("--out", help="directory for probe.csv, probe.json, probe.png (default: RUN_DIR)")
    probe.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    probe.add_argument("--threads", type=int, help="CPU threads torch may use (default: torch's choice)")
    probe.set_defaults(func=cmd_probe)

    bench = sub.add_parser(
        "bench", parents=[debug], help="train every (env, agent, seed) of a suite; tables and plots",
        description="Train, evaluate and recall-test every (env, agent, seed) of a suite into OUT/runs/, then write "
                    "OUT/summary.csv, OUT/summary.md and OUT/plots/. Finished runs (those with result.json) are "
                    "skipped, so an interrupted bench resumes where it stopped; --shard slices merge in OUT.")
    bench.add_argument("--suite", required=True, help="suite YAML (e.g. envs/memory-probes.yaml, envs/smoke.yaml)")
    bench.add_argument("--agents", required=True,
                       help="presets, comma-separated (e.g. agents/ppo-lstm.yaml,agents/ppo-gru.yaml or ppo-lstm,dqn-lstm)")
    bench.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per (env, agent) (default: %(default)s)")
    bench.add_argument("--out", help="output directory (default: results/<suite file name>)")
    bench.add_argument("--workers", type=int, default=1, help="runs at once, in separate processes (default: 1)")
    bench.add_argument("--shard", metavar="I/N", help="run only the I-th of N slices (1-based), e.g. 2/4")
    bench.add_argument("--envs", help="only these env ids of the suite, comma-separated")
    bench.add_argument("--device", default="cpu", help="device of every run (default: %(default)s)")
    bench.add_argument("--threads", type=int, help="torch threads per run (default: 1)")
    bench.add_argument("--summary-only", dest="summary_only", action="store_true",
                       help="run nothing: summarise the finished runs in OUT (merge shards, or after an interrupt)")
    bench.set_defaults(func=cmd_bench)

    # Listed here for `rlmem --help`; main() hands everything after the word to rlmem.throughput's own parser
    # (argparse's REMAINDER does not take arguments that start with "-", such as --help).
    throughput = sub.add_parser(
        "throughput", add_help=False, prefix_chars="\0",
        help="speed: env-steps/s of the envs and of training, against popgym and sb3-contrib "
             "(rlmem throughput --help)")
    throughput.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    throughput.set_defaults(func=cmd_throughput)
    return parser


THROUGHPUT = "throughput"


def cmd_throughput(args: argparse.Namespace) -> int:
    """Run the throughput benchmark (:func:`rlmem.throughput.main`) with the arguments after ``throughput``."""
    from rlmem.throughput import main as throughput_main

    throughput_main(args.argv, prog="rlmem throughput")
    return 0


def _throughput_argv(argv: Sequence[str]) -> list[str] | None:
    """The arguments after ``throughput`` when ``argv`` runs that subcommand (``--debug`` may come first)."""
    argv = list(argv)
    start = 1 if argv[:1] == ["--debug"] else 0
    return argv[start + 1:] if argv[start:start + 1] == [THROUGHPUT] else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    forwarded = _throughput_argv(argv)
    if forwarded is not None:  # its own parser, its own --help and errors
        return cmd_throughput(argparse.Namespace(argv=forwarded))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except distributed.DistributedError as error:  # another process died or stalled: one line, not a hang
        if args.debug:
            raise
        print(f"rlmem: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `rlmem envs | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("rlmem: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as error:
        if args.debug:
            raise
        print(f"rlmem: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from rlmem.agents.stops import TrainingDiverged, TrainingOutOfMemory

        if args.debug or not isinstance(error, (TrainingDiverged, TrainingOutOfMemory)):
            raise
        print(f"rlmem: error: {error}", file=sys.stderr)
        return 1
    finally:
        distributed.close()


if __name__ == "__main__":
    sys.exit(main())
