"""Bench suites (``envs/*.yaml``): read and every field checked before the bench writes anything.

A suite is a YAML mapping (see :func:`load_suite` for its keys); :mod:`rlmem.bench` runs it. Any
error is one line naming the file, the entry and the key: an unknown key, a value of the wrong
type, an empty env list, a count or budget below 1, a ``chance`` of 1 or more (the normalised
return divides by ``1 - chance``), a threshold that is not a finite number, a recall lag the task
cannot take, a gap list that does not increase, a hyperparameter no algo has.

An entry with ``gaps`` is a *horizon* entry: the same task trained once per gap (its
``gap_parameter``: the lag, or RepeatFirst's length), each gap its own run. The entries of one
task (or one ``family``) together are a task family, whose horizon :mod:`rlmem.horizons` reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlmem.checks import did_you_mean, is_int
from rlmem.shipped import find_yaml, read_text, shipped_files

SUITE_KEYS: dict[str, Any] = {"name": str, "description": str, "eval_episodes": int, "recall_episodes": int,
                              "envs": list}
ENV_KEYS: dict[str, Any] = {"id": str, "steps": int, "threshold": float, "chance": float, "recall": list,
                            "eval_episodes": int, "gaps": list, "env_kwargs": dict, "hyperparameters": dict,
                            "family": str}
REQUIRED_ENV_KEYS = ("id", "steps", "threshold")


@dataclass
class SuiteEnv:
    """One run setting of a suite (an entry, or one gap of a horizon entry): what to train for how
    long, with which settings, and what counts as solved."""

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
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """The task's keyword arguments for this run (the entry's, and the gap's)."""
    gap: int | None = None
    """How far back the cue lies in this run (the task's ``gap_parameter``); None: the task has no gap."""
    gap_parameter: str | None = None
    family: str | None = None
    """The horizon family this run is a gap of (None: an entry without ``gaps``)."""
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per algo (``ppo``) or agent name (``ppo-lstm``): hyperparameters over the preset's, for this env."""
    where: str = ""
    """The entry in the file, ``envs[3]``, for messages."""

    @property
    def name(self) -> str:
        """Unique in the suite: the env id, with the gap for a horizon entry."""
        return self.id if self.family is None else f"{self.id} {self.gap_parameter}={self.gap}"

    @property
    def slug(self) -> str:
        """The run directory's name (``PassiveTMaze-v0-corridor_length100``)."""
        base = env_slug(self.id)
        return base if self.family is None else f"{base}-{self.gap_parameter}{self.gap}"

    def hyperparameters_for(self, algo: str, agent: str) -> dict[str, Any]:
        """This env's hyperparameters for one agent: the algo's, then the agent's own (a mapping merges)."""
        merged: dict[str, Any] = {}
        for key in (algo, agent):
            for name, value in self.hyperparameters.get(key, {}).items():
                old = merged.get(name)
                merged[name] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
        return merged


@dataclass
class Suite:
    path: str
    name: str
    envs: list[SuiteEnv]
    recall_episodes: int = 100
    description: str = ""

    @property
    def families(self) -> dict[str, list[SuiteEnv]]:
        """Each horizon family and its runs, gaps increasing (empty for a suite without ``gaps``)."""
        families: dict[str, list[SuiteEnv]] = {}
        for env in self.envs:
            if env.family is not None:
                families.setdefault(env.family, []).append(env)
        return families


def env_slug(env_id: str) -> str:
    """A directory name for an env id: ``rlmem/RepeatPreviousEasy-v0`` -> ``RepeatPreviousEasy-v0``."""
    return env_id.removeprefix("rlmem/").replace("/", "_").replace(":", "_")


def chance_return(env_id: str, env_kwargs: dict[str, Any] | None = None) -> float:
    """The expected return of a uniformly random policy (= any policy without memory): the task's own
    :meth:`~rlmem.envs.base.TorchVecEnv.chance_return`, as its docstring states.

    MaskedCartPole's is approximate (about 22 steps of balancing) and MultiarmedBandit's is the
    average over draws of the arms' payouts; a suite can give its own ``chance``.
    """
    from rlmem.envs.registry import TASKS

    chance = TASKS[env_id](num_envs=1, **(env_kwargs or {})).chance_return()
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


def _check_ints(values: list[Any], where: str) -> list[int]:
    for value in values:
        if not is_int(value) or value < 1:
            raise ValueError(f"{where} must be a list of int >= 1, got {_describe(value)} in it")
    return [int(v) for v in values]


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; any error is one line naming the file, the entry and the key.

    Keys: ``name``, ``description``, ``eval_episodes`` (default for every env, 100),
    ``recall_episodes`` (episodes per recall lag, 100) and ``envs``, a list of mappings with
    ``id``, ``steps``, ``threshold`` (required), ``chance``, ``recall`` (list of lags),
    ``eval_episodes``, ``env_kwargs`` (the task's keyword arguments), ``hyperparameters`` (per
    algo or agent name: ``{ppo: {n_steps: 256}, ppo-lstm: {...}}``), ``gaps`` (a horizon entry:
    one run per gap, increasing; ``steps`` then one budget, or a list of one per gap) and
    ``family`` (the horizon family, default the task's name).
    """
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
    envs: list[SuiteEnv] = []
    last_gap: dict[str, tuple[str, int, type]] = {}  # family -> (entry, its last gap, task)
    for i, entry in enumerate(data["envs"]):
        where = f"{source}: envs[{i}]"
        env_id = _entry_id(entry, where)
        try:
            points = _entry(entry, where, data.get("eval_episodes", 100))
            for point in points:
                point.where = f"envs[{i}]"
                if point.family is not None:
                    task = _task(point.id)
                    before = last_gap.get(point.family)
                    if before is not None and before[2] is not task:
                        raise ValueError(f"{where}.family {point.family!r} is already the family of "
                                         f"{before[2].__name__} ({before[0]}): one family is one task")
                    if before is not None and point.gap <= before[1]:
                        raise ValueError(f"{where}.gaps: gap {point.gap} of {point.family} is not larger than "
                                         f"{before[0]}'s gap {before[1]} (a family's gaps increase through the suite)")
                    last_gap[point.family] = (f"envs[{i}]", point.gap, task)
        except ValueError as error:
            raise ValueError(f"{error} (env {env_id})") from None
        envs.extend(points)
    names = [e.name for e in envs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"{source}: envs: {name!r} is listed twice")
    return Suite(path=source, name=data.get("name", path.stem), envs=envs,
                 recall_episodes=data.get("recall_episodes", 100), description=data.get("description", ""))


def _task(env_id: str) -> type:
    from rlmem.envs.registry import TASKS

    return TASKS[env_id].task_class


def _entry_id(entry: Any, where: str) -> str:
    """The entry's env id, checked first (every later error names it)."""
    from rlmem.envs.registry import TASKS, resolve_env_spec

    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a mapping with id, steps, threshold, got {_describe(entry)}")
    _check_keys(entry, ENV_KEYS, f"{where}: ")
    if "id" not in entry:
        raise ValueError(f"{where}: missing key 'id'")
    env_id = _check_type(entry["id"], str, f"{where}.id")
    if env_id not in TASKS:
        try:
            resolve_env_spec(env_id)
        except ValueError as error:
            raise ValueError(f"{where}.id: {error}") from None
    return env_id


def _entry(entry: dict[str, Any], where: str, default_episodes: int) -> list[SuiteEnv]:
    """The runs of one entry: one, or one per gap."""
    for key in REQUIRED_ENV_KEYS:
        if key not in entry:
            raise ValueError(f"{where}: missing key {key!r}")
    gaps = _check_ints(_check_type(entry["gaps"], list, f"{where}.gaps"), f"{where}.gaps") if "gaps" in entry else None
    steps = entry["steps"]
    if isinstance(steps, list) and gaps is not None:
        if len(steps) != len(gaps):
            raise ValueError(f"{where}.steps lists {len(steps)} budgets for {len(gaps)} gaps (give one per gap, "
                             "or one for all)")
        for j, budget in enumerate(steps):
            if not is_int(budget) or budget < 1:
                raise ValueError(f"{where}.steps[{j}] must be a positive integer (env-steps), got {_describe(budget)}")
        budgets = [int(b) for b in steps]
    else:
        budget = _check_type(steps, int, f"{where}.steps")
        if budget < 1:
            raise ValueError(f"{where}.steps must be >= 1, got {budget!r}")
        budgets = [budget] * len(gaps or [None])
    values = {key: _check_type(value, ENV_KEYS[key], f"{where}.{key}") for key, value in entry.items()
              if key not in ("steps", "gaps")}
    if "eval_episodes" in values and values["eval_episodes"] < 1:
        raise ValueError(f"{where}.eval_episodes must be >= 1, got {values['eval_episodes']!r}")
    for key in ("threshold", "chance"):
        if key in values and not math.isfinite(values[key]):
            raise ValueError(f"{where}.{key} must be a finite number, got {values[key]!r}")
    if values.get("chance", 0.0) >= 1:
        raise ValueError(f"{where}.chance must be below 1 (a perfect return; the normalised return divides "
                         f"by 1 - chance), got {values['chance']!r}")
    env_id, env_kwargs = values["id"], values.get("env_kwargs", {})
    recall = _check_ints(values.get("recall", []), f"{where}.recall")
    if recall and (gaps is not None or env_kwargs):
        raise ValueError(f"{where}.recall sweeps the level's own settings, so it cannot go with gaps or env_kwargs "
                         "(a horizon entry trains at each gap instead)")
    if not _is_task(env_id):
        return [_other_env(env_id, values, gaps, recall, budgets, where, default_episodes)]
    if recall:
        _check_lags(env_id, recall, f"{where}.recall")
    if "family" in values and gaps is None:
        raise ValueError(f"{where}.family names a horizon family: give the entry gaps too")
    hyperparameters = _check_hyperparameters(values.get("hyperparameters", {}), f"{where}.hyperparameters")
    base = _build(env_id, env_kwargs, f"{where}.env_kwargs")
    parameter = base.gap_parameter
    settings = []
    if gaps is None:
        settings.append((env_kwargs, getattr(base, parameter) if parameter else None))
    else:
        _check_gaps(env_id, base, env_kwargs, gaps, where)
        settings += [({**env_kwargs, **base.gap_kwargs(gap)}, gap) for gap in gaps]
    return [SuiteEnv(id=env_id, steps=budget, threshold=values["threshold"],
                     chance=values["chance"] if "chance" in values else chance_return(env_id, kwargs),
                     recall=recall, eval_episodes=values.get("eval_episodes", default_episodes), env_kwargs=kwargs,
                     gap=gap, gap_parameter=parameter,
                     family=None if gaps is None else values.get("family", type(base).task_class.__name__),
                     hyperparameters=hyperparameters)
            for budget, (kwargs, gap) in zip(budgets, settings, strict=True)]


def _is_task(env_id: str) -> bool:
    from rlmem.envs.registry import TASKS

    return env_id in TASKS


def _other_env(env_id: str, values: dict[str, Any], gaps: list[int] | None, recall: list[int], budgets: list[int],
               where: str, default_episodes: int) -> SuiteEnv:
    """An entry for an env that is not an rlmem task (a gymnasium id, a user's ``module:name``): it has no
    task facts, so the entry gives its chance return and sweeps no gaps or recall lags."""
    for key, given in (("gaps", gaps), ("recall", recall)):
        if given:
            raise ValueError(f"{where}.{key}: {env_id} is not an rlmem task, so it has no {key} to sweep")
    if "chance" not in values:
        raise ValueError(f"{where}: {env_id} is not an rlmem task: give the entry a 'chance' (the return of a "
                         "policy without memory)")
    return SuiteEnv(id=env_id, steps=budgets[0], threshold=values["threshold"], chance=values["chance"], recall=[],
                    eval_episodes=values.get("eval_episodes", default_episodes),
                    env_kwargs=values.get("env_kwargs", {}), gap=None, gap_parameter=None, family=None,
                    hyperparameters=_check_hyperparameters(values.get("hyperparameters", {}),
                                                           f"{where}.hyperparameters"))


def _build(env_id: str, env_kwargs: dict[str, Any], where: str) -> Any:
    """One env of ``env_id`` with ``env_kwargs`` (on the CPU, one env: cheap), or a ValueError naming them."""
    from rlmem.envs.registry import TASKS

    try:
        return TASKS[env_id](num_envs=1, **env_kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} {env_kwargs} do not fit {env_id}: {error}") from None


def _check_gaps(env_id: str, base: Any, env_kwargs: dict[str, Any], gaps: list[int], where: str) -> None:
    """Gaps need a task with a gap, increase, are not also set by env_kwargs, and each builds its task."""
    from rlmem.envs.registry import TASKS

    parameter = base.gap_parameter
    if parameter is None:
        with_gap = ", ".join(dict.fromkeys(c.task_class.__name__ for c in TASKS.values() if c.gap_parameter))
        raise ValueError(f"{where}.gaps: {env_id} has no gap to sweep (tasks with one: {with_gap})")
    if not gaps:
        raise ValueError(f"{where}.gaps is empty: list the {parameter} values to train at")
    if any(b <= a for a, b in zip(gaps, gaps[1:])):
        raise ValueError(f"{where}.gaps must be increasing (each {parameter} larger than the one before), got {gaps}")
    if parameter in env_kwargs:
        raise ValueError(f"{where}.env_kwargs sets {parameter}, which gaps sweeps: leave it to gaps")
    for gap in gaps:
        try:
            type(base)(num_envs=1, device="meta", **{**env_kwargs, **base.gap_kwargs(gap)})
        except ValueError as error:
            raise ValueError(f"{where}.gaps: {parameter} {gap} does not fit {env_id}: {error}") from None


def _check_hyperparameters(values: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Keys are algos or agent names, values mappings; an algo's (or a shipped preset's) are checked
    against its dataclass here. Other agent names are checked by the bench, which knows its agents."""
    from rlmem.agents.presets import ALGOS, check_hyperparameters, load_preset

    shipped = shipped_files("agents")
    for key, settings in values.items():
        if not isinstance(settings, dict):
            raise ValueError(f"{where}.{key} must be a mapping of hyperparameter: value, got {_describe(settings)}")
        algo = key if key in ALGOS else load_preset(shipped[key]).algo if key in shipped else None
        if algo is not None:
            check_hyperparameters(algo, settings, f"{where}.{key}")
    return {str(k): dict(v) for k, v in values.items()}


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


__all__ = ["ENV_KEYS", "SUITE_KEYS", "Suite", "SuiteEnv", "chance_return", "env_slug", "load_suite"]
