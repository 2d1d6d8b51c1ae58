"""A run directory's files: its config, its checkpoints, and making, clearing and checking it.

:mod:`rlmem.runs` (train, resume, load, evaluate) is built on these; so is everything that only
reads a run (``rlmem eval``, ``probe``). Writing a run needs its lock (:mod:`rlmem.locks`) first.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from rlmem import distributed
from rlmem.files import atomic_write_text, storage_error

FINAL_CHECKPOINTS = {"ppo": "final.pt", "dqn": "final.pt", "pqn": "final.pt", "sb3-ppo-lstm": "final.zip"}
"""The file each algo's finished run ends with, in ``checkpoints/``."""

RESUMABLE = ("ppo", "dqn", "pqn")
"""The algos whose runs ``resume_run`` continues (sb3-contrib's loop writes no training checkpoints)."""

CHECKPOINT_HELD = ("env", "env_kwargs", "seed")
"""Run settings a training checkpoint holds itself (besides the hyperparameters): a resume keeps them."""


def agent_class(algo: str) -> type:
    """The agent class of ``algo`` ('ppo', 'dqn', 'pqn' or 'sb3-ppo-lstm')."""
    if algo == "ppo":
        from rlmem.agents.ppo import RecurrentPPO

        return RecurrentPPO
    if algo == "dqn":
        from rlmem.agents.dqn import RecurrentDQN

        return RecurrentDQN
    if algo == "pqn":
        from rlmem.agents.pqn import RecurrentPQN

        return RecurrentPQN
    from rlmem.agents.sb3_baseline import SB3Baseline

    return SB3Baseline


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
    except (yaml.YAMLError, UnicodeDecodeError):
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
    try:
        for name in ("config.yaml", "eval.json"):
            (run_dir / name).unlink(missing_ok=True)
        if (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir / "checkpoints")
        for events in run_dir.glob("events.out.tfevents.*"):
            events.unlink()
    except OSError as error:
        raise storage_error(f"cannot clear the previous run in {str(run_dir)!r} (--overwrite)", error) from None


def create_run(run_dir: str | Path, spec: Any) -> None:
    """Clear ``run_dir`` (made and locked by the caller) and write its config.yaml: the spec, the rlmem
    version, the world size."""
    from rlmem import __version__

    run_dir = Path(run_dir)
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


def _unfinished(run_dir: Path, final: Path, algo: str) -> str:
    """Why a run has no final checkpoint, and what can be done with it (resume only where it can)."""
    if algo in RESUMABLE:
        return (f"{str(run_dir)!r} holds no finished run: it has no checkpoints/{final.name} (training did not "
                f"finish; `--checkpoint latest` uses its newest checkpoint, `rlmem train --resume` continues it)")
    return (f"{str(run_dir)!r} holds no finished run: it has no checkpoints/{final.name} (training did not finish; "
            f"`--checkpoint latest` uses checkpoints/interrupted{final.suffix} if it was interrupted; {algo} runs "
            f"cannot be resumed: train it again with --overwrite)")


def find_checkpoint(run_dir: str | Path, which: str = "final", config: dict[str, Any] | None = None) -> tuple[Path, str]:
    """The checkpoint of a run to load, and a line saying which one it is.

    ``which``: ``"final"`` (the finished run's last checkpoint), ``"latest"`` (the newest one that
    reads whole, for a run that was killed or is still training; the line names any newer one
    passed over) or a path (a file, or a name in the run's ``checkpoints/``). A ValueError says
    what is missing and lists the run's checkpoints.
    """
    from rlmem.agents.checkpoints import find_resume_checkpoint, read_file

    run_dir = Path(run_dir)
    config = config if config is not None else read_config(run_dir)
    folder = run_dir / "checkpoints"
    final = folder / FINAL_CHECKPOINTS[config["algo"]]
    if which == "final":
        if not final.is_file():
            raise ValueError(_unfinished(run_dir, final, config["algo"]))
        return final, f"{final} (final)"
    if which == "latest":
        if config["algo"] not in RESUMABLE:  # sb3: the final file, else the one written on an interrupt
            for path in (final, folder / f"interrupted{final.suffix}"):
                if path.is_file():
                    return path, f"{path} (latest)"
            raise ValueError(f"{str(run_dir)!r} has no checkpoint yet (checkpoints: {checkpoint_listing(run_dir)})")
        path, data, notes = find_resume_checkpoint(folder, agent_class(config["algo"]).algo)
        if path is None:
            raise ValueError(f"{str(run_dir)!r} has no checkpoint that reads whole yet "
                             f"(checkpoints: {checkpoint_listing(run_dir)})")
        kind = "final" if path == final else "latest; the run has not finished"
        passed = f"; {'; '.join(notes)}" if notes else ""
        return path, f"{path} (step {int(data['num_timesteps']):,}, {kind}{passed})"
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


# ---------------------------------------------------------------------- config.yaml against a checkpoint
def edited_fields(config: dict[str, Any], hyperparameters: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """The settings of a run's config.yaml (``hyperparameters``: resolved from it) that differ from what its
    training checkpoint ``data`` holds, each as ``name (config.yaml: X, checkpoint: Y)``."""
    from rlmem.agents.presets import plain_values

    held = {"env": data.get("env_source"), "env_kwargs": data.get("env_kwargs") or {}, "seed": data.get("seed")}
    given = {"env": config.get("env"), "env_kwargs": config.get("env_kwargs") or {}, "seed": config.get("seed", 0)}
    saved = {k: v for k, v in plain_values(data.get("config") or {}).items() if k != "extra"}
    edited = [f"{key} (config.yaml: {given[key]!r}, checkpoint: {held[key]!r})" for key in CHECKPOINT_HELD
              if plain_values(given[key]) != plain_values(held[key])]
    for key, value in plain_values(hyperparameters).items():
        if key in saved and saved[key] != value:
            edited.append(f"{key} (config.yaml: {value!r}, checkpoint: {saved[key]!r})")
    return edited


__all__ = [
    "CHECKPOINT_HELD",
    "FINAL_CHECKPOINTS",
    "RESUMABLE",
    "agent_class",
    "check_new_run",
    "checkpoint_listing",
    "clear_run",
    "create_run",
    "edited_fields",
    "find_checkpoint",
    "read_config",
]
