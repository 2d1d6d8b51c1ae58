"""Memory cores behind one interface: the agent's short-term memory.

Every core maps ``x`` ``[T, N, D]``, a state and ``episode_start`` ``[T, N]`` to outputs
``[T, N, hidden_size]`` and the state after the last step (:class:`MemoryCore`, in
:mod:`rlmem.memory.base`, says the contract). The cores, one per module:

* ``lstm``, ``gru``, ``elman`` (:mod:`~rlmem.memory.recurrent`): torch's fused RNNs;
* ``mlp`` (:mod:`~rlmem.memory.mlp`): no memory, the baseline;
* ``framestack`` (:mod:`~rlmem.memory.framestack`): a fixed window of past inputs;
* ``transformer`` (:mod:`~rlmem.memory.transformer`): sliding-window attention, TrXL / GTrXL;
* ``lru`` (:mod:`~rlmem.memory.lru`), ``mingru`` (:mod:`~rlmem.memory.mingru`) and ``ffm``
  (:mod:`~rlmem.memory.ffm`): linear recurrences trained with the parallel scan of
  :mod:`~rlmem.memory.scan`.

A core's own options (``context_length``, ``num_heads``, ...) are a dataclass on its class
(``CORES[name].Options``); :func:`check_memory_options` checks a mapping of them.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from rlmem.memory.base import UNROLL_MODES, MemoryCore, NoOptions, State, reset_state
from rlmem.memory.ffm import FFMCore, FFMOptions
from rlmem.memory.framestack import FramestackCore, FramestackOptions
from rlmem.memory.lru import LRUCore, LRUOptions
from rlmem.memory.mingru import MinGRUCore
from rlmem.memory.mlp import MLPCore
from rlmem.memory.recurrent import ElmanCore, GRUCore, LSTMCore
from rlmem.memory.transformer import TransformerCore, TransformerOptions

#: The memory cores by name; register a core here to make it available (and tested) everywhere.
CORES: dict[str, type[MemoryCore]] = {
    core.name: core
    for core in (LSTMCore, GRUCore, ElmanCore, MLPCore, FramestackCore, TransformerCore, LRUCore, MinGRUCore, FFMCore)
}


def core_class(memory: str) -> type[MemoryCore]:
    """The core class named ``memory``; an unknown name is a ValueError naming the known ones."""
    if memory not in CORES:
        close = difflib.get_close_matches(str(memory), list(CORES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"memory must be one of {sorted(CORES)}, got {memory!r}{hint}")
    return CORES[memory]


def core_options(memory: str) -> dict[str, Any]:
    """The options of core ``memory`` with their defaults (empty for a core without options)."""
    return dataclasses.asdict(core_class(memory).Options())


def check_memory_options(memory: str, options: Mapping[str, Any] | None = None,
                         hidden_size: int | None = None) -> dict[str, Any]:
    """The full options of core ``memory``: ``options`` checked, defaults filled in.

    An option the core does not have, a value of the wrong type or one that breaks its rule
    is a ValueError saying which; rules on the width (``num_heads`` must divide it) are
    checked when ``hidden_size`` is given (:func:`make_core` always checks them).
    """
    return dataclasses.asdict(core_class(memory).make_options(options, hidden_size))


def make_core(memory: str, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
              options: Mapping[str, Any] | None = None) -> MemoryCore:
    """Build the core named ``memory`` (one of :data:`CORES`) with its ``options``."""
    return core_class(memory)(input_size, hidden_size, num_layers, unroll, options)


__all__ = [
    "CORES", "UNROLL_MODES", "ElmanCore", "FFMCore", "FFMOptions", "FramestackCore", "FramestackOptions", "GRUCore",
    "LRUCore", "LRUOptions", "LSTMCore", "MLPCore", "MemoryCore", "MinGRUCore", "NoOptions", "State",
    "TransformerCore", "TransformerOptions", "check_memory_options", "core_class", "core_options", "make_core",
    "reset_state",
]
