"""The interface every memory core keeps, and what they share: states, resets, options, the per-step unroll.

A core maps a time-major sequence ``x`` ``[T, N, D]`` and a state to outputs ``[T, N, H]``
(``H = hidden_size`` for every core, so the agents' heads fit any of them) and the state after
the last step, zeroing each env's state where ``episode_start`` ``[T, N]`` is True (before
that step is processed). A state is a tuple of one or more real tensors, the env batch always
on dim 1 (any rank >= 2): buffers, checkpoints and numpy ``predict`` treat every core alike,
and :func:`reset_state` zeroes any of them. Each core designs its state so that all zeros is
exactly a fresh episode.

``unroll="per_step"`` runs :meth:`MemoryCore.step` once per step: the rollout's own op, the
reference every fast sequence path is tested against, and free of host reads (so a CUDA graph
can record it). ``unroll="chunked"`` runs the core's fast sequence path
(:meth:`MemoryCore._sequence`); :attr:`MemoryCore.sequence_reads_host` says where that path
reads the host (the cuDNN RNNs cut at episode starts), so it cannot go into a CUDA graph.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

State = tuple[torch.Tensor, ...]

UNROLL_MODES = ("chunked", "per_step")


def reset_state(state: State, episode_start: torch.Tensor) -> State:
    """Zero the state of every env where ``episode_start`` ``[N]`` is True (no host sync).

    Works for tensors of any rank >= 2 with the env batch on dim 1.
    """
    flags = ~episode_start
    return tuple(s * flags.to(s.dtype).view(1, -1, *([1] * (s.dim() - 2))) for s in state)


@dataclasses.dataclass
class NoOptions:
    """A core without options of its own."""

    def check(self, core: str, hidden_size: int | None) -> None:
        """Nothing to check."""


def option_error(core: str, name: str, rule: str, value: Any) -> ValueError:
    """The one message of a bad option value: the core, the option, the rule, the value."""
    return ValueError(f"memory core {core!r}: option {name} must be {rule}, got {value!r}")


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _coerce(core: str, name: str, annotation: Any, value: Any) -> Any:
    """``value`` as a plain Python ``annotation`` (numpy scalars pass; a bool is not a number)."""
    is_bool = isinstance(value, bool) or type(value).__name__ == "bool_"
    if annotation is bool:
        ok = is_bool
    elif annotation is int:
        ok = isinstance(value, numbers.Integral) and not is_bool
    elif annotation is float:
        ok = isinstance(value, numbers.Real) and not is_bool
    else:
        ok = isinstance(value, annotation) if isinstance(annotation, type) else True
    if not ok:
        kind = _KINDS.get(annotation, str(annotation))
        raise ValueError(f"memory core {core!r}: option {name} must be {kind}, got {type(value).__name__} {value!r}")
    return annotation(value) if annotation in _KINDS else value


class MemoryCore(nn.Module):
    """A memory core: ``forward(x [T,N,D], state, episode_start [T,N]) -> (out [T,N,H], state)``.

    A subclass names itself (``name``), says how many tensors its state holds (``state_size``)
    and their shapes (:meth:`state_shapes`), declares its options as a dataclass (``Options``,
    with a ``check(core, hidden_size)``), and implements one step (:meth:`_step`); it may add a
    fast sequence path (:meth:`_sequence`, by default the per-step unroll).
    """

    name: ClassVar[str]
    #: How many tensors the state holds (the agents split stacked actor / critic states by it).
    state_size: ClassVar[int]
    Options: ClassVar[type] = NoOptions
    #: Whether the ``chunked`` sequence path reads the host (then CUDA graphs need ``per_step``).
    chunked_reads_host: ClassVar[bool] = False

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
        options: Mapping[str, Any] | Any | None = None,
    ) -> None:
        super().__init__()
        if unroll not in UNROLL_MODES:
            raise ValueError(f"unroll must be one of {UNROLL_MODES}, got {unroll!r}")
        self.input_size, self.hidden_size, self.num_layers, self.unroll = input_size, hidden_size, num_layers, unroll
        self.options = self.make_options(options, hidden_size)

    # ------------------------------------------------------------------ options
    @classmethod
    def option_names(cls) -> list[str]:
        """The names of this core's options, in declaration order."""
        return [f.name for f in dataclasses.fields(cls.Options)]

    @classmethod
    def make_options(cls, options: Mapping[str, Any] | Any | None = None, hidden_size: int | None = None) -> Any:
        """This core's ``Options`` from a mapping (defaults filled in), checked; width rules need ``hidden_size``."""
        if isinstance(options, cls.Options):
            values = dataclasses.asdict(options)
        elif options is None or isinstance(options, Mapping):
            values = dict(options or {})
        else:
            raise ValueError(f"memory core {cls.name!r}: options must be a mapping, got {type(options).__name__}")
        names = cls.option_names()
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"memory core {cls.name!r} has no option {key!r} "
                                 f"(its options: {', '.join(names) or 'none'}){hint}")
        hints = typing.get_type_hints(cls.Options)
        built = cls.Options(**{k: _coerce(cls.name, k, hints[k], v) for k, v in values.items()})
        built.check(cls.name, hidden_size)
        return built

    # ------------------------------------------------------------------ state
    @property
    def output_size(self) -> int:
        """Width of the outputs: ``hidden_size`` for every core."""
        return self.hidden_size

    @property
    def sequence_reads_host(self) -> bool:
        """Whether :meth:`forward` reads the host as configured now (then a CUDA graph needs ``per_step``)."""
        return self.unroll == "chunked" and self.chunked_reads_host

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        """The shape of each state tensor for ``batch_size`` envs (the batch on dim 1)."""
        raise NotImplementedError

    def _state_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The all-zero state of ``batch_size`` envs: a fresh episode (real, the parameters' dtype)."""
        device = device if device is not None else next(self.parameters()).device
        dtype = self._state_dtype()
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for shape in self.state_shapes(batch_size))

    def state_nbytes(self, batch_size: int) -> int:
        """Bytes of the state of ``batch_size`` envs, without allocating it."""
        itemsize = torch.empty((), dtype=self._state_dtype()).element_size()
        return sum(math.prod(shape) for shape in self.state_shapes(batch_size)) * itemsize

    # ------------------------------------------------------------------ unrolls
    def step(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One step for a batch: ``x`` ``[N, D]``, ``episode_start`` ``[N]`` -> (``[N, H]``, state)."""
        return self._step(x, reset_state(state, episode_start))

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step from a state already reset where episodes start."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Unroll over ``T`` steps, zeroing the state where an episode starts."""
        if self.unroll == "per_step":
            return self._per_step(x, state, episode_start)
        return self._sequence(x, state, episode_start)

    def _per_step(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        # unbind, not x[t]: the backward of x[t] writes a zero tensor of all T steps for every
        # step (O(T^2) memory traffic); unbind's backward stacks the T gradients once.
        outputs = []
        for x_t, start_t in zip(x.unbind(0), episode_start.unbind(0), strict=True):
            out, state = self.step(x_t, state, start_t)
            outputs.append(out)
        return torch.stack(outputs), state

    def outputs(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> torch.Tensor:
        """:meth:`forward`'s outputs ``[T, N, H]`` without the state after the last step.

        For a learner that discards that state (a replayed sequence's loss): a core may then take
        a faster path (the torch RNNs pack each episode into a row of its own instead of cutting
        the whole batch wherever any env starts). Same values as ``forward(...)[0]``.
        """
        if self.unroll == "per_step":
            return self._per_step(x, state, episode_start)[0]
        return self._sequence_outputs(x, state, episode_start)

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """The fast sequence path (``unroll="chunked"``); by default the per-step unroll."""
        return self._per_step(x, state, episode_start)

    def _sequence_outputs(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> torch.Tensor:
        """The fast path of :meth:`outputs` (``unroll="chunked"``); by default :meth:`_sequence`'s outputs."""
        return self._sequence(x, state, episode_start)[0]

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.options).items())
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"unroll={self.unroll!r}" + (f", {options}" if options else ""))
