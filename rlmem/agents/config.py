"""Agent configs: built from keyword arguments with one rule for types, the memory fields and checks they share.

A config is a dataclass (:class:`~rlmem.agents.ppo.PPOConfig`, :class:`~rlmem.agents.dqn_config.DQNConfig`, ...)
whose memory fields come from :class:`MemoryConfig`;
:func:`build_config` makes one from keyword arguments, naming an unknown key with the closest
ones, and runs its ``validate``; :func:`check_memory_fields` is the part of every ``validate``
about the memory (sizes, the core and its options, the unroll, the encoder).
"""

from __future__ import annotations

import dataclasses
import numbers
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlmem.checks import check_positive_int, did_you_mean
from rlmem.memory import UNROLL_MODES, check_memory_options, core_class


@dataclass
class MemoryConfig:
    """The fields every rlmem agent's config has about its memory and encoder (RecurrentPPO, RecurrentDQN and
    RecurrentPQN's configs extend it); :func:`check_memory_fields` checks them."""

    memory: str = "lstm"
    """Memory core (``rlmem.memory.CORES``): 'lstm', 'gru', 'elman', 'mlp' (none), 'framestack', 'transformer',
    'lru', 'mingru' or 'ffm'."""
    memory_options: dict[str, Any] = field(default_factory=dict)
    """The memory core's own options (e.g. transformer: context_length, num_heads, gated); an option the core
    does not have is an error. Checked, and the core's defaults filled in, when the config is validated."""
    hidden_size: int = 64
    """Units in the memory core."""
    num_layers: int = 1
    """Stacked layers in the memory core."""
    encoder_sizes: tuple[int, ...] = (64,)
    """Widths of the MLP encoder before the memory core."""


def build_config(config_cls: type, overrides: dict[str, Any]) -> Any:
    """A ``config_cls`` dataclass from ``overrides``; an unknown key is a ValueError naming it."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key in overrides:
        if key not in fields:
            raise ValueError(f"unknown hyperparameter {key!r} for {config_cls.__name__}{did_you_mean(key, fields)}")
    hints = typing.get_type_hints(config_cls)
    for key, value in overrides.items():
        expected = _SCALAR_TYPES.get(hints[key])
        if expected is not None and not fits_scalar_field(value, hints[key]):
            raise ValueError(f"{key} must be {expected}, got {type(value).__name__} {value!r}")
    config = config_cls(**overrides)
    if hasattr(config, "validate"):
        config.validate()
    return config


_SCALAR_TYPES = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}


def fits_scalar_field(value: Any, annotation: type) -> bool:
    """Whether ``value`` fits a plain float / int / bool / str config field (numpy scalars count; a bool is not a number).

    The one rule for both ways in: agent constructors (:func:`build_config`) and presets / ``--set``.
    """
    if annotation is bool:
        return isinstance(value, (bool, np.bool_))
    if isinstance(value, (bool, np.bool_)):
        return False
    if annotation is float:
        return isinstance(value, numbers.Real)
    if annotation is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, str)


def check_memory_fields(config: Any, unroll_modes: tuple[str, ...] = UNROLL_MODES) -> None:
    """The checks every agent config shares: sizes, memory core and its options, unroll mode, encoder widths.

    Turns ``encoder_sizes`` into a tuple (YAML gives a list) and fills in the core's default options.
    """
    for name in ("hidden_size", "num_layers", "n_envs"):
        check_positive_int(name, getattr(config, name))
    core_class(config.memory)  # an unknown core names the known ones
    config.memory_options = check_memory_options(config.memory, config.memory_options, config.hidden_size)
    if config.unroll not in unroll_modes:
        raise ValueError(f"unroll must be one of {unroll_modes}, got {config.unroll!r}")
    config.encoder_sizes = tuple(config.encoder_sizes)
    for size in config.encoder_sizes:
        check_positive_int("encoder_sizes entries", size)
    if not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate!r}")


def memory_size_note(config: Any, state_bytes: int, total_bytes: int, what: str, remedy: str) -> tuple[str, str]:
    """``what`` and ``remedy`` of a too-large storage, naming the memory core's state where it is most of it.

    A transformer's window or an FFM's memory can dwarf the observations a buffer holds; then the
    message names the state's share and the settings that size it.
    """
    if 2 * state_bytes <= total_bytes:
        return what, remedy
    core = core_class(config.memory)
    defaults = dataclasses.asdict(core.Options())
    options = [f"memory_options.{name}" for name, value in defaults.items()  # the counts and widths
               if isinstance(value, int) and not isinstance(value, bool)]
    fields = ", ".join(["hidden_size", "num_layers", *options])
    return (f"{what} (the {config.memory} memory's stored states are {state_bytes:,} bytes of it)",
            f"{remedy}, or the memory's size ({fields})")


__all__ = ["MemoryConfig", "build_config", "check_memory_fields", "fits_scalar_field", "memory_size_note"]
