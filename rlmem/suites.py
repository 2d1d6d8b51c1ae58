"""Bench suites (``envs/*.yaml``): read and every field checked before the bench writes anything.

A suite is a YAML mapping (see :func:`load_suite` for its keys); :mod:`rlmem.bench` runs it. Any
error is one line naming the file and the key: an unknown key, a value of the wrong type, an
empty env list, a count below 1, a ``chance`` of 1 or more (the normalised return divides by
``1 - chance``), a threshold that is not a finite number, a recall lag the task cannot take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlmem.checks import did_you_mean, is_int
from rlmem.shipped import find_yaml, read_text

SUITE_KEYS: dict[str, Any] = {"name": str, "description": str, "eval_episodes": int, "recall_episodes": int,
                              "envs": list}
ENV_KEYS: dict[str, Any] = {"id": str, "steps": int, "threshold": float, "chance": float, "recall": list,
                            "eval_episodes": int}
REQUIRED_ENV_KEYS = ("id", "steps", "threshold")


@dataclass
class SuiteEnv:
    """One env of a suite: what to train for how long, and what counts as solved."""

    id: str
    steps: int
    """Env-steps each run trains for (rounded up to whole iterations by the agent)."""
    threshold: float
    """A run succeeds if its final evaluation's mean return is at least this (raw return, 1.0 = perfect)."""
    chance: float
    """Return of a policy without memory, for the normalised return."""
    recall: list[int] = field(default_factory=list)
    """Lags swept for the recall curve (empty: none)."""
    eval_episodes: int = 100


@dataclass
class Suite:
    path: str
    name: str
    envs: list[SuiteEnv]
    recall_episodes: int = 100
    description: str = ""


def chance_return(env_id: str) -> float:
    """The expected return of a uniformly random policy (= any policy without memory): the task's own
    :meth:`~rlmem.envs.base.TorchVecEnv.chance_return`, as its docstring states.

    MaskedCartPole's is approximate (about 22 steps of balancing) and MultiarmedBandit's is the
    average over draws of the arms' payouts; a suite can give its own ``chance``.
    """
    from rlmem.envs.registry import TASKS

    chance = TASKS[env_id](num_envs=1).chance_return()
    if chance is None:
        raise ValueError(f"no known chance return for {env_id!r}; give the suite entry a 'chance'")
    return chance


def _describe(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _check_type(value: Any, kind: type, where: str) -> Any:
    ok = (isinstance(value, kind) and not isinstance(value, bool)) or (kind is float and isinstance(value, int)
                                                                        and not isinstance(value, bool))
    if not ok:
        raise ValueError(f"{where} must be {kind.__name__}, got {_describe(value)}")
    return float(value) if kind is float else value


def _check_keys(data: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ValueError(f"{where}unknown key {key!r}{did_you_mean(key, allowed, 2, ' (keys: {options})')}")


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; any error is one line naming the file and the key.

    Keys: ``name``, ``description``, ``eval_episodes`` (default for every env, 100),
    ``recall_episodes`` (episodes per recall lag, 100) and ``envs``, a list of mappings with
    ``id``, ``steps``, ``threshold`` (required), ``chance``, ``recall`` (list of lags),
    ``eval_episodes``.
    """
    from rlmem.envs.registry import TASKS, unknown_env_error

    path = find_yaml(path, "envs")
    source = str(path)
    try:
        data = yaml.safe_load(read_text(path, source))
    except yaml.YAMLError as error:
        raise ValueError(f"{source}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a suite must be a mapping with 'envs', got {_describe(data)}")
    _check_keys(data, SUITE_KEYS, f"{source}: ")
    for key, kind in SUITE_KEYS.items():
        if key in data:
            _check_type(data[key], kind, f"{source}: {key}")
    if "envs" not in data:
        raise ValueError(f"{source}: missing key 'envs' (a list of {{id, steps, threshold}})")
    if not data["envs"]:
        raise ValueError(f"{source}: envs is empty: list at least one env as {{id, steps, threshold}}")
    for key in ("eval_episodes", "recall_episodes"):
        if key in data and data[key] < 1:
            raise ValueError(f"{source}: {key} must be >= 1, got {data[key]!r}")
    default_episodes = data.get("eval_episodes", 100)
    envs = []
    for i, entry in enumerate(data["envs"]):
        where = f"{source}: envs[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a mapping with id, steps, threshold, got {_describe(entry)}")
        _check_keys(entry, ENV_KEYS, f"{where}: ")
        for key in REQUIRED_ENV_KEYS:
            if key not in entry:
                raise ValueError(f"{where}: missing key {key!r}")
        values = {key: _check_type(value, ENV_KEYS[key], f"{where}.{key}") for key, value in entry.items()}
        if values["id"] not in TASKS:
            raise ValueError(f"{where}.id: {unknown_env_error(values['id'])}")
        for key in ("steps", "eval_episodes"):
            if key in values and values[key] < 1:
                raise ValueError(f"{where}.{key} must be >= 1, got {values[key]!r}")
        for key in ("threshold", "chance"):
            if key in values and not math.isfinite(values[key]):
                raise ValueError(f"{where}.{key} must be a finite number, got {values[key]!r}")
        if values.get("chance", 0.0) >= 1:
            raise ValueError(f"{where}.chance must be below 1 (a perfect return; the normalised return divides "
                             f"by 1 - chance), got {values['chance']!r}")
        recall = values.get("recall", [])
        for lag in recall:
            if not is_int(lag) or lag < 1:
                raise ValueError(f"{where}.recall must be a list of int >= 1, got {_describe(lag)} in it")
        if recall:
            _check_lags(values["id"], recall, f"{where}.recall")
        envs.append(SuiteEnv(id=values["id"], steps=values["steps"], threshold=values["threshold"],
                             chance=values["chance"] if "chance" in values else chance_return(values["id"]),
                             recall=list(recall), eval_episodes=values.get("eval_episodes", default_episodes)))
    ids = [e.id for e in envs]
    for env_id in ids:
        if ids.count(env_id) > 1:
            raise ValueError(f"{source}: envs: {env_id!r} is listed twice")
    return Suite(path=source, name=data.get("name", path.stem), envs=envs,
                 recall_episodes=data.get("recall_episodes", 100), description=data.get("description", ""))




def _check_lags(env_id: str, lags: list[int], where: str) -> None:
    """Every recall lag builds its task (on the meta device: the arguments checked, nothing allocated)."""
    from rlmem.envs.registry import TASKS
    from rlmem.probes import lag_task

    try:
        family, spec = lag_task(env_id)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    level = TASKS[env_id](num_envs=1)
    for lag in lags:
        try:
            family(num_envs=1, device="meta", **spec.kwargs(level, int(lag)))
        except ValueError as error:
            raise ValueError(f"{where}: lag {lag} does not fit {env_id}: {error}") from None


__all__ = ["ENV_KEYS", "SUITE_KEYS", "Suite", "SuiteEnv", "chance_return", "load_suite"]
