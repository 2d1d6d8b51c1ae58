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
holds a run (without ``overwrite``) raises a ValueError and writes nothing. A process writing a
run holds its lock (:mod:`rlmem.locks`): a second writer is refused, naming the first. A file
the machine refuses to write, or one that vanishes, stops the run with a
:class:`~rlmem.agents.stops.StorageError` naming it and the last good checkpoint. Under torchrun
(:mod:`rlmem.distributed`) every process trains, and rank 0 alone writes the directory.
The directory's files themselves (config, checkpoints) are :mod:`rlmem.rundir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlmem import distributed
from rlmem.agents.stops import StorageError
from rlmem.files import atomic_write_text, write_json
from rlmem.locks import claim
from rlmem.rundir import (
    FINAL_CHECKPOINTS,
    RESUMABLE,
    agent_class,
    check_new_run,
    checkpoint_listing,
    clear_run,
    create_run,
    edited_fields,
    find_checkpoint,
    read_config,
)

EVAL_SEED_OFFSET = 10_000
"""Evaluation envs are seeded with the run's seed + this, at the end of training and in ``rlmem eval``."""

DEFAULT_RUN_DIR = "runs/latest"

Echo = Callable[[str], Any]


def _quiet(message: str) -> None:
    """An ``echo`` that prints nothing."""


# ---------------------------------------------------------------------- agents
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
    """Build one env of ``spec``, reset it and take one step (an unknown id names the closest ones;
    impossible kwargs name the field; a gymnasium env that breaks its API or its spaces says how)."""
    from rlmem.envs.registry import make_vec_env

    try:
        env = make_vec_env(spec.env, 1, seed=spec.seed, env_kwargs=spec.env_kwargs)
    except TypeError as error:  # e.g. a keyword the env does not take
        if not spec.env_kwargs:
            raise
        raise ValueError(f"env_kwargs {spec.env_kwargs} do not fit {spec.env}: {error}") from None
    try:
        env.reset(seed=spec.seed)
        env.step(np.asarray([env.single_action_space.sample()]))
    finally:
        env.close()


# ---------------------------------------------------------------------- loading and evaluating a run
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


def _hold(stack: contextlib.ExitStack, run_dir: Path, check: Callable[[], None] = lambda: None) -> None:
    """Rank 0 takes the run directory's lock (for as long as ``stack`` lives) and runs ``check`` under it;
    every rank learns whether both passed (a second writer, or a directory the machine refuses, stops all)."""
    error = None
    if distributed.is_main():
        try:
            stack.enter_context(claim(run_dir))
            check()
        except (ValueError, StorageError) as problem:
            error = problem
    _agree(error)


def train_run(spec: Any, run_dir: str | Path = DEFAULT_RUN_DIR, overwrite: bool = False,
              dist_timeout: float | None = None, echo: Echo = print) -> dict[str, Any] | None:
    """Train the run ``spec`` describes into ``run_dir``, then evaluate it into eval.json; returns eval.json's contents.

    Checks everything before the directory is touched, then holds its lock (:mod:`rlmem.locks`)
    until the end: a directory another process is writing is refused (RunDirectoryInUse, a
    ValueError) before anything in it is cleared. Raises
    :class:`~rlmem.agents.stops.TrainingInterrupted` on SIGINT / SIGTERM (after a checkpoint) and
    :class:`~rlmem.agents.stops.StorageError` when a file cannot be written.
    Under torchrun every rank trains; only rank 0 writes and returns the result (None elsewhere).
    """
    from rlmem.device import resolve_device

    resolve_device(spec.device)
    check_env(spec)
    device = join_process_group(spec.algo, spec.device, dist_timeout)
    run_dir = Path(run_dir)
    main = distributed.is_main()
    agent = build_agent(dataclasses.replace(spec, device=device), run_dir if main else None)
    with contextlib.ExitStack() as stack:
        _hold(stack, run_dir, lambda: check_new_run(run_dir, overwrite))  # checked under the lock: no race
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
    finishes the learn call the checkpoint was written in (or trains to config.yaml's ``steps``
    where that was edited). Every checkpoint passed over is named to ``warn`` (stderr by default)
    with the reason. A config.yaml whose env, env arguments, seed or hyperparameters no longer
    match the checkpoint is refused, naming each field. Holds the run's lock, like
    :func:`train_run`. Returns eval.json's contents (None on ranks other than 0).
    """
    from rlmem.agents.checkpoints import find_resume_checkpoint
    from rlmem.agents.presets import resolve_run

    warn = warn if warn is not None else (lambda line: print(line, file=sys.stderr))
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config["algo"] not in RESUMABLE:
        raise ValueError(f"{config['algo']} runs cannot be resumed ({', '.join(RESUMABLE[:-1])} and "
                         f"{RESUMABLE[-1]} runs can)")
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
    with contextlib.ExitStack() as stack:
        _hold(stack, run_dir)  # a run still training is not resumed under it
        path, data, notes = find_resume_checkpoint(run_dir / "checkpoints", cls.algo)
        for note in notes if main else ():
            warn(f"rlmem: {note}")
        if path is None and notes:
            raise ValueError(f"{str(run_dir)!r} holds no checkpoint that reads whole (each one was passed over, "
                             "as the lines above say); start it again with --overwrite")
        if path is None:
            raise ValueError(f"{str(run_dir)!r} holds no checkpoint to resume from (a run writes its first after "
                             f"checkpoint_every = {spec.checkpoint_every:,} steps); start it again with --overwrite")
        edited = edited_fields(config, spec.hyperparameters, data)
        if edited:
            raise ValueError(f"{source} was edited after {path.name} was written: {'; '.join(edited)}; a resumed "
                             "run keeps what its checkpoint holds, so put these back (or start a new run with "
                             "--overwrite)")
        step = int(data["num_timesteps"])
        if steps is not None and steps < step:
            raise ValueError(f"--steps {steps:,} is below the {step:,} steps {str(run_dir)!r} has already trained")
        agent = cls.restore(path, device=device, tensorboard_log=run_dir if main else None,
                            verbose=1 if main else 0)
        until, why = steps, ""
        edited_steps = config.get("steps")
        if steps is None and isinstance(edited_steps, int) and agent.plan_end(edited_steps) != agent.planned_end:
            if edited_steps < step:
                raise ValueError(f"{source}: steps {edited_steps:,} is below the {step:,} steps {str(run_dir)!r} "
                                 "has already trained")
            until, why = edited_steps, " (config.yaml's steps)"
        finished = path.name == FINAL_CHECKPOINTS[spec.algo] and (run_dir / "eval.json").is_file()
        if finished and (until is None or until <= step):
            raise ValueError(f"{str(run_dir)!r} has already finished its {step:,} steps; "
                             f"pass a larger --steps to train on")
        if main:
            if steps is not None and steps != config.get("steps"):
                atomic_write_text(run_dir / "config.yaml",
                                  yaml.safe_dump({**config, "steps": spec.steps}, sort_keys=False))
            echo(f"resuming {spec.algo} on {agent.env_source or spec.env} from {path} (step {step:,}) to "
                 f"{until if until is not None else agent.planned_end:,} steps{why} -> {run_dir}")
        return train_and_evaluate(agent, spec, run_dir, resume=True, until=until)


def train_and_evaluate(agent: Any, spec: Any, run_dir: str | Path, resume: bool = False,
                       until: int | None = None) -> dict[str, Any] | None:
    """Train (checkpointing into run_dir/checkpoints), then evaluate into eval.json; returns its contents.

    A new run trains ``spec.steps``; a resumed one finishes its learn call (or goes on ``until``).
    The caller holds the run directory's lock.
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
    finished = f"training finished at step {result['steps']:,} and its final checkpoint {checkpoint} is whole, but"
    if not (run_dir / "config.yaml").is_file():  # eval.json alone would not make a run of the directory
        raise StorageError(f"{finished} {str(run_dir / 'config.yaml')!r} vanished while the run wrote it (deleted "
                           "or moved); eval.json was not written")
    try:
        write_json(run_dir / "eval.json", result)
    except StorageError as error:
        raise StorageError(f"{finished} {error}; `rlmem eval {run_dir} --write` writes eval.json again") from None
    return result


__all__ = [
    "DEFAULT_RUN_DIR",
    "EVAL_SEED_OFFSET",
    "FINAL_CHECKPOINTS",
    "RESUMABLE",
    "agent_class",
    "build_agent",
    "check_new_run",
    "checkpoint_listing",
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
