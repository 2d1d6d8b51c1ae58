"""The run directory as one concept: create it, train into it, resume it, load its agent back, evaluate it.

A run directory holds ``config.yaml`` (every setting, resolved: a :class:`~rlmem.agents.presets.RunSpec`
plus the rlmem version), ``checkpoints/`` (``step-<N>.pt`` every ``checkpoint_every`` env-steps,
the newest ``keep_checkpoints`` kept, and ``final.pt``; ``final.zip`` for sb3-ppo-lstm), the
TensorBoard events and ``eval.json``. The ``rlmem`` command (:mod:`rlmem.cli`), the bench
(:mod:`rlmem.bench`) and Python users all go through the functions here::

    from rlmem.agents.presets import resolve_run
    from rlmem import runs

    spec = resolve_run("ppo-gru", env="rlmem/PassiveTMazeEasy-v0", steps=200_000)
    result = runs.train_run(spec, "runs/tmaze-gru")            # eval.json's contents
    agent, checkpoint = runs.load_run_agent("runs/tmaze-gru", checkpoint="latest")

Everything is checked before the directory is touched: a bad spec or a directory that already
holds a run (without ``overwrite``) raises a ValueError and writes nothing. Under torchrun
(:mod:`rlmem.distributed`) every process trains, and rank 0 alone writes the directory.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rlmem import distributed
from rlmem.files import atomic_write_text, write_json

EVAL_SEED_OFFSET = 10_000
"""Evaluation envs are seeded with the run's seed + this, at the end of training and in ``rlmem eval``."""

FINAL_CHECKPOINTS = {"ppo": "final.pt", "dqn": "final.pt", "sb3-ppo-lstm": "final.zip"}
"""The file each algo's finished run ends with, in ``checkpoints/``."""

RESUMABLE = ("ppo", "dqn")
"""The algos whose runs ``resume_run`` continues (sb3-contrib's loop writes no training checkpoints)."""

DEFAULT_RUN_DIR = "runs/latest"

Echo = Callable[[str], Any]


def _quiet(message: str) -> None:
    """An ``echo`` that prints nothing."""


# ---------------------------------------------------------------------- agents
def agent_class(algo: str) -> type:
    """The agent class of ``algo`` ('ppo', 'dqn' or 'sb3-ppo-lstm')."""
    if algo == "ppo":
        from rlmem.agents.ppo import RecurrentPPO

        return RecurrentPPO
    if algo == "dqn":
        from rlmem.agents.dqn import RecurrentDQN

        return RecurrentDQN
    from rlmem.agents.sb3_baseline import SB3Baseline

    return SB3Baseline


def build_agent(spec: Any, run_dir: str | Path | None, verbose: int = 1) -> Any:
    """The agent ``spec`` describes, logging TensorBoard events to ``run_dir`` (nothing is written yet)."""
    cls = agent_class(spec.algo)
    if spec.algo == "sb3-ppo-lstm":
        if spec.env_kwargs:
            raise ValueError("env_kwargs are not supported for sb3-ppo-lstm")
        return cls(spec.env, device=spec.device, seed=spec.seed, verbose=verbose, **spec.hyperparameters)
    return cls(spec.env, device=spec.device, seed=spec.seed, tensorboard_log=run_dir, verbose=verbose,
               env_kwargs=spec.env_kwargs, **spec.hyperparameters)


def untrained_twin(config: dict[str, Any], env: str, device: str) -> Any:
    """An agent of the run's algo and hyperparameters on ``env``, never trained, initialised from seed + 1
    (the baseline a probe compares the trained memory with)."""
    from rlmem.agents.presets import RunSpec

    spec = RunSpec(algo=config["algo"], env=env, seed=int(config.get("seed", 0)) + 1, device=device,
                   hyperparameters=dict(config.get("hyperparameters") or {}))
    return build_agent(spec, None, verbose=0)


def check_env(spec: Any) -> None:
    """Build one env of ``spec`` (an unknown id names the closest ones; impossible kwargs name the field)."""
    from rlmem.envs.registry import make_vec_env

    try:
        make_vec_env(spec.env, 1, seed=spec.seed, env_kwargs=spec.env_kwargs).close()
    except TypeError as error:  # e.g. a keyword the env does not take
        if not spec.env_kwargs:
            raise
        raise ValueError(f"env_kwargs {spec.env_kwargs} do not fit {spec.env}: {error}") from None


# ---------------------------------------------------------------------- the directory
def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's config.yaml, checked to be one (a ValueError otherwise)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise ValueError(f"{str(run_dir)!r} is not a directory")
    if not config_path.is_file():
        raise ValueError(f"{str(run_dir)!r} holds no run: it has no config.yaml")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict) or config.get("algo") not in FINAL_CHECKPOINTS or not isinstance(
            config.get("env"), str):
        raise ValueError(f"{str(config_path)!r} is not an rlmem run config (it needs algo and env)")
    return config


def check_new_run(run_dir: str | Path, overwrite: bool) -> None:
    """Refuse a path that is a file, or a directory that already holds a run unless ``overwrite``."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run directory {str(run_dir)!r} is a file")
    if (run_dir / "config.yaml").exists() and not overwrite:
        raise ValueError(f"run directory {str(run_dir)!r} already holds a run (config.yaml); "
                         "pass --overwrite to replace it, or choose another --run-dir")


def clear_run(run_dir: str | Path) -> None:
    """Remove a previous run's outputs (only the files a run writes) so a new one is not mixed with it."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "eval.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    for events in run_dir.glob("events.out.tfevents.*"):
        events.unlink()


def create_run(run_dir: str | Path, spec: Any) -> None:
    """Make (or clear) ``run_dir`` and write its config.yaml: the spec, the rlmem version, the world size."""
    from rlmem import __version__

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clear_run(run_dir)
    config = {**spec.to_dict(), "rlmem_version": __version__}
    if distributed.active():
        config["world_size"] = distributed.world_size()
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))


# ---------------------------------------------------------------------- checkpoints of a run
def checkpoint_listing(run_dir: str | Path) -> str:
    """The checkpoint files a run has, for error messages (``"none"`` when it has none)."""
    folder = Path(run_dir) / "checkpoints"
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".pt", ".zip") and p.name.count(".") == 1) \
        if folder.is_dir() else []
    return ", ".join(names) if names else "none"


def find_checkpoint(run_dir: str | Path, which: str = "final", config: dict[str, Any] | None = None) -> tuple[Path, str]:
    """The checkpoint of a run to load, and a line saying which one it is.

    ``which``: ``"final"`` (the finished run's last checkpoint), ``"latest"`` (the newest one that
    reads whole, for a run that was killed or is still training) or a path (a file, or a name in
    the run's ``checkpoints/``). A ValueError says what is missing and lists the run's checkpoints.
    """
    from rlmem.agents.checkpoints import find_resume_checkpoint, read_file

    run_dir = Path(run_dir)
    config = config if config is not None else read_config(run_dir)
    folder = run_dir / "checkpoints"
    final = folder / FINAL_CHECKPOINTS[config["algo"]]
    if which == "final":
        if not final.is_file():
            raise ValueError(f"{str(run_dir)!r} holds no finished run: it has no checkpoints/{final.name} "
                             f"(training did not finish; `--checkpoint latest` uses its newest checkpoint, "
                             f"`rlmem train --resume` continues it)")
        return final, f"{final} (final)"
    if which == "latest":
        if config["algo"] not in RESUMABLE:  # sb3: the final file, else the one written on an interrupt
            for path in (final, folder / f"interrupted{final.suffix}"):
                if path.is_file():
                    return path, f"{path} (latest)"
            raise ValueError(f"{str(run_dir)!r} has no checkpoint yet (checkpoints: {checkpoint_listing(run_dir)})")
        path, data, _ = find_resume_checkpoint(folder, agent_class(config["algo"]).algo)
        if path is None:
            raise ValueError(f"{str(run_dir)!r} has no checkpoint that reads whole yet "
                             f"(checkpoints: {checkpoint_listing(run_dir)})")
        kind = "final" if path == final else "latest; the run has not finished"
        return path, f"{path} (step {int(data['num_timesteps']):,}, {kind})"
    path = Path(which)
    if not path.is_file() and (folder / which).is_file():
        path = folder / which
    if not path.is_file():
        raise ValueError(f"--checkpoint {which!r}: no such file (the run's checkpoints: "
                         f"{checkpoint_listing(run_dir)})")
    if path.suffix == ".pt":
        try:
            read_file(path)
        except ValueError as error:
            raise ValueError(f"--checkpoint {which!r} does not load: {error} (the run's checkpoints: "
                             f"{checkpoint_listing(run_dir)})") from None
    return path, str(path)


def finished_run(run_dir: str | Path) -> tuple[dict[str, Any], Path]:
    """The config and final checkpoint of the finished run in ``run_dir``; a ValueError says what is missing."""
    config = read_config(run_dir)
    return config, find_checkpoint(run_dir, "final", config)[0]


def load_agent(config: dict[str, Any], checkpoint: str | Path, device: str = "auto", env: str | None = None) -> Any:
    """The agent of a run's ``config`` from ``checkpoint``, on the run's env or on ``env`` (same spaces needed)."""
    cls = agent_class(config["algo"])
    env_kwargs = config.get("env_kwargs") or {}
    if env is not None and env != config["env"]:
        env_kwargs = {}  # the run's env arguments belong to its own task
    env = env if env is not None else config["env"]
    if config["algo"] == "sb3-ppo-lstm":
        from rlmem.agents.presets import check_hyperparameters

        hyperparameters = check_hyperparameters(config["algo"], config.get("hyperparameters") or {}, "config.yaml")
        agent = cls.load(checkpoint, env=env, device=device, seed=int(config.get("seed", 0)), **hyperparameters)
        _check_same_spaces(agent.model, env)
        return agent
    return cls.load(checkpoint, env=env, device=device, verbose=0, env_kwargs=env_kwargs)  # checks the spaces


def _check_same_spaces(model: Any, env_id: str) -> None:
    """sb3 models do not check the env they act in: refuse an env whose spaces differ from training's."""
    from rlmem.envs.registry import make_vec_env

    env = make_vec_env(env_id, 1)
    for name in ("observation_space", "action_space"):
        saved, given = getattr(model, name), getattr(env, f"single_{name}")
        if saved.shape != given.shape or type(saved) is not type(given) or getattr(saved, "n", 0) != getattr(given, "n", 0):
            raise ValueError(f"--task {env_id}: its {name.replace('_', ' ')} {given} does not match the run's {saved}")


def load_run_agent(run_dir: str | Path, checkpoint: str = "final", device: str = "auto",
                   env: str | None = None) -> tuple[Any, str]:
    """A run's agent from one of its checkpoints (see :func:`find_checkpoint`) and the line saying which."""
    config = read_config(run_dir)
    path, which = find_checkpoint(run_dir, checkpoint, config)
    return load_agent(config, path, device, env), which


def evaluate_run(run_dir: str | Path, episodes: int | None = None, device: str = "auto",
                 checkpoint: str = "final", write: bool = False) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Evaluate a run's agent on its own env (seeded as at the end of training).

    Returns the result, the run's config and which checkpoint was used; ``write`` merges the
    result into ``eval.json`` (keeping the training's numbers).
    """
    import json

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    path, which = find_checkpoint(run_dir, checkpoint, config)
    seed = int(config.get("seed", 0))
    episodes = episodes if episodes is not None else int(config.get("eval_episodes", 100))
    agent = load_agent(config, path, device)
    result = agent.evaluate(episodes, seed=seed + EVAL_SEED_OFFSET)
    result["steps"] = int(agent.num_timesteps)
    if write:
        eval_path = run_dir / "eval.json"
        previous = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
        write_json(eval_path, {**previous, **result, "eval_seed": seed + EVAL_SEED_OFFSET})
    return result, config, which


# ---------------------------------------------------------------------- training into a run
def join_process_group(algo: str, device: str, timeout: float | None = None) -> str:
    """Under torchrun (WORLD_SIZE > 1): check the algo, join the process group; this process's device.

    Without torchrun: ``device`` unchanged and nothing else done.
    """
    from rlmem.device import resolve_device

    if not distributed.requested():
        return device
    if algo != "ppo":
        raise ValueError(f"data-parallel training (torchrun, WORLD_SIZE={os.environ['WORLD_SIZE']}) is "
                         f"not supported yet for {algo}; only ppo is (run {algo} in one process)")
    timeout = timeout if timeout is not None else distributed.DEFAULT_TIMEOUT_S
    return str(distributed.init(resolve_device(device), timeout))


def _agree(error: Exception | None) -> None:
    """Every rank learns whether rank 0's checks of the run directory passed (rank 0 re-raises its error)."""
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


def _plan_line(agent: Any, spec: Any, run_dir: Path) -> str:
    """``training ppo on ENV for N steps (rounded up to ...) -> RUN_DIR``."""
    if spec.algo == "dqn":
        batch, unit = agent.steps_per_iteration, "iterations of n_envs * (seq_len - overlap)"
    else:
        hp = spec.hyperparameters
        batch, unit = hp["n_envs"] * hp["n_steps"] * distributed.world_size(), "rollouts of n_envs * n_steps"
        if distributed.active():
            unit += f" on each of {distributed.world_size()} processes"
    planned = -(-spec.steps // batch) * batch
    note = f" (rounded up to {planned:,}: whole {unit} = {batch})" if planned != spec.steps else ""
    return f"training {spec.algo} on {spec.env} for {spec.steps:,} steps{note} -> {run_dir}"


def train_run(spec: Any, run_dir: str | Path = DEFAULT_RUN_DIR, overwrite: bool = False,
              dist_timeout: float | None = None, echo: Echo = print) -> dict[str, Any] | None:
    """Train the run ``spec`` describes into ``run_dir``, then evaluate it into eval.json; returns eval.json's contents.

    Checks everything before the directory is touched. Raises
    :class:`~rlmem.agents.stops.TrainingInterrupted` on SIGINT / SIGTERM (after a checkpoint).
    Under torchrun every rank trains; only rank 0 writes and returns the result (None elsewhere).
    """
    from rlmem.device import resolve_device

    resolve_device(spec.device)
    check_env(spec)
    device = join_process_group(spec.algo, spec.device, dist_timeout)
    run_dir = Path(run_dir)
    main = distributed.is_main()
    error = None
    if main:  # rank 0 alone checks and writes the run directory
        try:
            check_new_run(run_dir, overwrite)
        except ValueError as problem:
            error = problem
    _agree(error)
    agent = build_agent(dataclasses.replace(spec, device=device), run_dir if main else None)
    if main:
        create_run(run_dir, spec)
        if spec.algo == "sb3-ppo-lstm":
            agent.set_tensorboard_log(run_dir)
        echo(_plan_line(agent, spec, run_dir))
    return train_and_evaluate(agent, spec, run_dir)


def resume_run(run_dir: str | Path, steps: int | None = None, dist_timeout: float | None = None,
               echo: Echo = print, warn: Echo | None = None) -> dict[str, Any] | None:
    """Go on with a stopped run from its newest checkpoint that reads whole, with the run's own settings.

    ``steps``: train on to this many env-steps in all (also after the run finished); None
    finishes the learn call the checkpoint was written in. Every checkpoint passed over is
    named to ``warn`` (stderr by default) with the reason. Returns eval.json's contents (None on
    ranks other than 0).
    """
    from rlmem.agents.checkpoints import find_resume_checkpoint
    from rlmem.agents.presets import resolve_run

    warn = warn if warn is not None else (lambda line: print(line, file=sys.stderr))
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config["algo"] not in RESUMABLE:
        raise ValueError(f"{config['algo']} runs cannot be resumed ({' and '.join(RESUMABLE)} runs can)")
    source = str(run_dir / "config.yaml")
    run = {key: config[key] for key in ("env", "env_kwargs", "steps", "seed", "device", "eval_episodes",
                                        "checkpoint_every", "keep_checkpoints") if key in config}
    if steps is not None:
        run["steps"] = steps
    spec = resolve_run(None, config["algo"], config.get("hyperparameters") or {}, source=source, **run)
    spec.preset = config.get("preset")
    device = join_process_group(spec.algo, spec.device, dist_timeout)
    main = distributed.is_main()
    cls = agent_class(spec.algo)
    path, data, notes = find_resume_checkpoint(run_dir / "checkpoints", cls.algo)
    for note in notes if main else ():
        warn(f"rlmem: {note}")
    if path is None:
        raise ValueError(f"{str(run_dir)!r} holds no checkpoint to resume from (a run writes its first after "
                         f"checkpoint_every = {spec.checkpoint_every:,} steps); start it again with --overwrite")
    step = int(data["num_timesteps"])
    if steps is not None and steps < step:
        raise ValueError(f"--steps {steps:,} is below the {step:,} steps {str(run_dir)!r} has already trained")
    finished = path.name == FINAL_CHECKPOINTS[spec.algo] and (run_dir / "eval.json").is_file()
    if finished and (steps is None or steps <= step):
        raise ValueError(f"{str(run_dir)!r} has already finished its {step:,} steps; "
                         f"pass a larger --steps to train on")
    agent = cls.restore(path, device=device, tensorboard_log=run_dir if main else None, verbose=1 if main else 0)
    if main:
        if steps is not None and steps != config.get("steps"):
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump({**config, "steps": spec.steps}, sort_keys=False))
        until = steps if steps is not None else agent.planned_end
        echo(f"resuming {spec.algo} on {spec.env} from {path} (step {step:,}) to {until:,} steps -> {run_dir}")
    return train_and_evaluate(agent, spec, run_dir, resume=True, until=steps)


def train_and_evaluate(agent: Any, spec: Any, run_dir: str | Path, resume: bool = False,
                       until: int | None = None) -> dict[str, Any] | None:
    """Train (checkpointing into run_dir/checkpoints), then evaluate into eval.json; returns its contents.

    A new run trains ``spec.steps``; a resumed one finishes its learn call (or goes on ``until``).
    """
    run_dir = Path(run_dir)
    checkpoint = run_dir / "checkpoints" / FINAL_CHECKPOINTS[spec.algo]
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
        if resume:
            agent.resume(until, **options)
        else:
            agent.learn(spec.steps, **options)  # ends by writing checkpoints/final.pt
    if not distributed.is_main():
        return None  # rank 0 evaluates and writes eval.json
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
    write_json(run_dir / "eval.json", result)
    return result


__all__ = [
    "DEFAULT_RUN_DIR",
    "EVAL_SEED_OFFSET",
    "FINAL_CHECKPOINTS",
    "agent_class",
    "build_agent",
    "check_new_run",
    "clear_run",
    "create_run",
    "evaluate_run",
    "find_checkpoint",
    "finished_run",
    "load_agent",
    "load_run_agent",
    "read_config",
    "resume_run",
    "train_and_evaluate",
    "train_run",
    "untrained_twin",
]
