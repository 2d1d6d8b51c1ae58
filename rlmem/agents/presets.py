"""Presets (``agents/*.yaml``) and run settings: one place that reads and checks them.

A preset is a YAML mapping::

    algo: ppo                     # ppo | dqn | pqn | sb3-ppo-lstm (required)
    env: rlmem/RepeatPreviousEasy-v0   # optional run settings: env, env_kwargs, steps, seed,
                                       # eval_episodes, checkpoint_every, keep_checkpoints
    hyperparameters:              # fields of PPOConfig (ppo), DQNConfig (dqn), PQNConfig (pqn) or
      memory: lstm                #   SB3BaselineConfig (sb3-ppo-lstm)
      n_envs: 64

Every key is checked when the file is read: an unknown one is a ValueError naming the file,
the key and the closest valid keys; a value of the wrong type names the file, the key, the
type expected and the value found. ``rlmem train`` and ``scripts/train.py`` both use
:func:`resolve_run`: dataclass defaults < preset < command-line values.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlmem.agents.config import build_config, fits_scalar_field
from rlmem.agents.dqn_config import DQNConfig
from rlmem.agents.learn_loop import DEFAULT_CHECKPOINT_EVERY, DEFAULT_KEEP_CHECKPOINTS
from rlmem.agents.ppo import PPOConfig
from rlmem.agents.pqn import PQNConfig
from rlmem.agents.sb3_baseline import SB3BaselineConfig
from rlmem.checks import check_int, check_positive_int, did_you_mean
from rlmem.memory import CORES
from rlmem.shipped import find_yaml, read_text

ALGOS: dict[str, type] = {"ppo": PPOConfig, "dqn": DQNConfig, "pqn": PQNConfig, "sb3-ppo-lstm": SB3BaselineConfig}
"""Each algo and the dataclass of its hyperparameters."""

NOT_HYPERPARAMETERS = frozenset({"extra"})
"""Dataclass fields a preset or ``--set`` may not set."""

RUN_KEYS: dict[str, type] = {"env": str, "env_kwargs": dict, "steps": int, "seed": int, "eval_episodes": int,
                             "checkpoint_every": int, "keep_checkpoints": int}
"""Run settings a preset may give besides ``algo`` and ``hyperparameters``."""

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class RunSpec:
    """Everything a run needs, resolved and checked; ``config.yaml`` is this, plus the version."""

    algo: str = "ppo"
    """Agent: 'ppo' (rlmem's RecurrentPPO), 'dqn' (rlmem's RecurrentDQN), 'pqn' (rlmem's RecurrentPQN) or
    'sb3-ppo-lstm' (sb3-contrib's RecurrentPPO)."""
    env: str = "rlmem/RepeatPreviousEasy-v0"
    """Env id (rlmem or any gymnasium id)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the env (a task's, e.g. k and length of rlmem/RepeatPrevious-v0)."""
    steps: int = 100_000
    """Env-steps to train for (rounded up to whole iterations: n_envs * n_steps, dqn: n_envs * (seq_len - overlap))."""
    seed: int = 0
    """Seed of the env batch and the agent; evaluation uses seed + EVAL_SEED_OFFSET."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda' or 'cuda:N'."""
    eval_episodes: int = 100
    """Episodes evaluated (deterministically) at the end, into eval.json."""
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    """Env-steps between training checkpoints (checkpoints/step-<N>.pt; ppo, dqn and pqn)."""
    keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS
    """Periodic checkpoints kept (the newest ones; final.pt besides)."""
    preset: str | None = None
    """The preset file the settings started from (None: the algo's defaults)."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """Every hyperparameter of the algo, defaults included."""

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values (tuples become lists)."""
        return plain_values(dataclasses.asdict(self))


def plain_values(value: Any) -> Any:
    """Lists for tuples, recursively: plain YAML / JSON values (a checkpoint keeps tuples, config.yaml lists)."""
    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    return value


def hyperparameter_names(algo: str) -> list[str]:
    """The hyperparameters ``algo`` takes, in dataclass order."""
    return [f.name for f in dataclasses.fields(_config_class(algo)) if f.name not in NOT_HYPERPARAMETERS]


def default_hyperparameters(algo: str) -> dict[str, Any]:
    """``algo``'s dataclass defaults (the built-in preset)."""
    values = dataclasses.asdict(_config_class(algo)())
    return {k: v for k, v in values.items() if k not in NOT_HYPERPARAMETERS}


def _config_class(algo: str) -> type:
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}{_hint(algo, ALGOS)}")
    return ALGOS[algo]


def _hint(key: str, valid: Any) -> str:
    return did_you_mean(key, valid, listing=" (valid: {options})")


# ---------------------------------------------------------------------- type checks
def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` says, or raise TypeError (no message: the caller writes it)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option)
            except TypeError:
                pass
        raise TypeError
    if annotation is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        item = typing.get_args(annotation)[0]
        return tuple(_coerce(v, item) for v in value)
    if annotation is float and isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 as a string
    if annotation in (bool, int, float, str):
        if fits_scalar_field(value, annotation):
            return annotation(value)  # plain Python values (numpy scalars would not go to YAML)
        raise TypeError
    if annotation is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise TypeError
    return value  # Any: taken as given


def check_hyperparameters(algo: str, values: Any, source: str) -> dict[str, Any]:
    """``values`` checked against ``algo``'s dataclass: known keys, right types (coerced: lists to tuples).

    ``source`` starts every error message (a file name, or ``--set``).
    """
    cls = _config_class(algo)
    if not isinstance(values, dict):
        raise ValueError(f"{source}: hyperparameters must be a mapping of name: value, got {_describe(values)}")
    hints = typing.get_type_hints(cls)
    names = hyperparameter_names(algo)
    checked = {}
    for key, value in values.items():
        if key not in names:
            hint = _hint(key, names)
            if key in RUN_KEYS or key in ("algo", "device"):
                hint += f" ({key} is a run setting: use --{str(key).replace('_', '-')})"
            owners = [name for name, core in CORES.items() if key in core.option_names()]
            if owners and "memory_options" in names:  # the closest hyperparameter is not what was meant
                hint = (f" ({key} is an option of memory core {', '.join(owners)}: "
                        f"set it as memory_options.{key}, e.g. --set memory_options.{key}=VALUE)")
            raise ValueError(f"{source}: unknown hyperparameter {key!r} for {algo}{hint}")
        try:
            checked[key] = _coerce(value, hints[key])
        except TypeError:
            raise ValueError(f"{source}: {key} must be {_type_name(hints[key])}, got {_describe(value)}") from None
    return checked


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"


# ---------------------------------------------------------------------- preset files
@dataclass
class Preset:
    """A checked preset file."""

    path: str
    algo: str
    hyperparameters: dict[str, Any]
    run: dict[str, Any]
    """The run settings it gives (env, steps, seed, eval_episodes), only those present."""


def find_preset(name: str | Path) -> Path:
    """``name`` as a path, else the shipped preset of that name (``agents/<name>.yaml``); else a ValueError."""
    return find_yaml(name, "agents")


def load_preset(name: str | Path) -> Preset:
    """Read and check a preset file (see the module docstring for its keys)."""
    path = find_preset(name)
    source = str(name)
    try:
        data = yaml.safe_load(read_text(path, source))
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ValueError(f"{source}: not valid YAML{line}: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a preset must be a mapping with 'algo' and 'hyperparameters', "
                         f"got {_describe(data)}")
    allowed = ["algo", *RUN_KEYS, "hyperparameters"]
    for key in data:
        if key not in allowed:
            raise ValueError(f"{source}: unknown key {key!r}{_hint(key, allowed)}")
    if "algo" not in data:
        raise ValueError(f"{source}: missing key 'algo' (one of {', '.join(ALGOS)})")
    algo = data["algo"]
    if algo not in ALGOS:
        raise ValueError(f"{source}: algo must be one of {', '.join(ALGOS)}, got {_describe(algo)}")
    run = {}
    for key, kind in RUN_KEYS.items():
        if key in data:
            try:
                run[key] = _coerce(data[key], kind)
            except TypeError:
                kind_name = "a mapping" if kind is dict else kind.__name__
                raise ValueError(f"{source}: {key} must be {kind_name}, got {_describe(data[key])}") from None
    hyperparameters = check_hyperparameters(algo, data.get("hyperparameters") or {}, source)
    return Preset(str(path), algo, hyperparameters, run)


def parse_assignments(items: list[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``["lr=1e-3", "encoder_sizes=[64, 64]", "memory_options.num_heads=4"]`` as a dict; each value is read
    as YAML, and ``KEY.SUBKEY=VALUE`` sets one entry of a mapping-valued setting."""
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or key.startswith(".") or key.endswith("."):
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(f"{flag} {key}: {text!r} is not a valid YAML value") from None
        outer, dot, inner = key.partition(".")
        if not dot:
            values[key] = value
            continue
        if not isinstance(values.setdefault(outer, {}), dict):
            raise ValueError(f"{flag} {key}: {outer} was given as a value, not a mapping")
        values[outer][inner] = value
    return values


# ---------------------------------------------------------------------- resolving a run
def resolve_run(
    preset: str | Path | None = None,
    algo: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    source: str = "--set",
    **run: Any,
) -> RunSpec:
    """The run's settings: defaults < ``preset`` < the values given here (None: not given).

    ``run`` holds the run settings (:data:`RUN_KEYS` and device); ``hyperparameters`` overrides the
    preset's (errors about them start with ``source``). Every value is checked, and the
    hyperparameters are validated together (sizes that must fit), before anything is built.
    """
    for key in run:
        if key not in (*RUN_KEYS, "device"):
            raise TypeError(f"resolve_run() got an unexpected keyword argument {key!r}")
    loaded = load_preset(preset) if preset is not None else None
    if loaded is not None and algo is not None and algo != loaded.algo:
        raise ValueError(f"--algo {algo} does not match the preset's algo {loaded.algo!r} ({preset})")
    algo = algo if algo is not None else (loaded.algo if loaded is not None else RunSpec.algo)
    _config_class(algo)
    values = default_hyperparameters(algo)
    if loaded is not None:
        values.update(loaded.hyperparameters)
    given = check_hyperparameters(algo, hyperparameters or {}, source)
    if "memory_options" in values and given.get("memory", values["memory"]) != values["memory"] \
            and "memory_options" not in given:
        values["memory_options"] = {}  # the preset's options belong to its own core: the new one starts from its defaults
    for key, value in given.items():  # a mapping (memory_options) merges entry by entry
        values[key] = {**values[key], **value} if isinstance(value, dict) and isinstance(values.get(key), dict) else value
    config = build_config(_config_class(algo), values)  # runs validate(): sizes that must fit together
    spec = RunSpec(algo=algo, preset=str(preset) if preset is not None else None,
                   hyperparameters=hyperparameters_of(config))
    preset_run = loaded.run if loaded is not None else {}
    given = {k: v for k, v in run.items() if v is not None}
    for key, value in {**preset_run, **given}.items():
        setattr(spec, key, value)
    if isinstance(preset_run.get("env_kwargs"), dict) and isinstance(given.get("env_kwargs"), dict):
        spec.env_kwargs = {**preset_run["env_kwargs"], **given["env_kwargs"]}  # command line over preset, key by key
    for key in ("steps", "eval_episodes", "checkpoint_every", "keep_checkpoints"):
        check_positive_int(key, getattr(spec, key))
    check_int("seed", spec.seed, 0)
    if not isinstance(spec.env_kwargs, dict):
        raise ValueError(f"env_kwargs must be a mapping, got {_describe(spec.env_kwargs)}")
    return spec


def hyperparameters_of(config: Any) -> dict[str, Any]:
    """A config dataclass's hyperparameters as a dict (``extra`` left out)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_HYPERPARAMETERS}


__all__ = [
    "ALGOS",
    "Preset",
    "RunSpec",
    "check_hyperparameters",
    "default_hyperparameters",
    "find_preset",
    "hyperparameter_names",
    "hyperparameters_of",
    "load_preset",
    "parse_assignments",
    "resolve_run",
]
