"""Fast and Forgetful Memory: decaying, oscillating traces of the gated input, read out by an MLP.

Morad et al. 2023, "Reinforcement Learning with Fast and Forgetful Memory" (NeurIPS), after
popgym's FFM. Per layer, from the input ``x``::

    x~_t = (W_pre x_t) * sigmoid(W_in x_t)                      (memory_size channels)
    S_t  = gamma * S_{t-1} + x~_t                                (each channel in context_size traces)
    gamma_jk = exp(alpha_j + i omega_k),  alpha_j < 0           (decay per channel, frequency per trace)
    z_t  = W_mix [Re S_t, Im S_t]
    y_t  = LayerNorm(z_t * g_t) + (W_skip x_t) * (1 - g_t),  g_t = sigmoid(W_out x_t)

The decays start spread geometrically so that a trace falls to ``forgotten_at`` of an input
after between ``min_period`` and ``max_period`` steps; the frequencies start at
``2 pi / linspace(min_period, max_period)``; both are learned. The aggregator is a diagonal
linear recurrence, so the sequence path runs it with the resettable parallel scan
(:mod:`rlmem.memory.scan`) rather than FFM's cumulative-sum form (which needs a cap on the
sequence length against overflow).

The state is real: the traces as ``[num_layers, N, memory_size, context_size, 2]`` (real and
imaginary parts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlmem.memory.base import MemoryCore, State, option_error
from rlmem.memory.scan import linear_scan


@dataclass
class FFMOptions:
    """Options of the ``ffm`` core."""

    memory_size: int = 32
    """Input channels that feed the traces (m in the paper)."""
    context_size: int = 4
    """Traces per channel, one per frequency (c in the paper); the state holds m * c complex numbers."""
    min_period: int = 1
    """Shortest initial forgetting time and oscillation period, in steps."""
    max_period: int = 1024
    """Longest initial forgetting time and oscillation period, in steps."""
    forgotten_at: float = 0.01
    """The fraction of an input a trace keeps after its forgetting time."""

    def check(self, core: str, hidden_size: int | None) -> None:
        if self.memory_size < 1:
            raise option_error(core, "memory_size", ">= 1", self.memory_size)
        if self.context_size < 1:
            raise option_error(core, "context_size", ">= 1", self.context_size)
        if self.min_period < 1:
            raise option_error(core, "min_period", ">= 1", self.min_period)
        if self.max_period < self.min_period:
            raise option_error(core, "max_period", f">= min_period ({self.min_period})", self.max_period)
        if not 0.0 < self.forgotten_at < 1.0:
            raise option_error(core, "forgotten_at", "in (0, 1)", self.forgotten_at)


class FFMLayer(nn.Module):
    """One FFM layer: gated input -> decaying oscillating traces -> gated, normalised read-out."""

    def __init__(self, input_size: int, width: int, opts: FFMOptions) -> None:
        super().__init__()
        m, c = opts.memory_size, opts.context_size
        self.pre = nn.Linear(input_size, 2 * m)  # [W_pre x, W_in x]
        self.mix = nn.Linear(2 * m * c, width)
        self.post = nn.Linear(input_size, 2 * width)  # [W_skip x, W_out x]
        periods = torch.logspace(math.log10(opts.min_period), math.log10(opts.max_period), m)
        #: alpha = -exp(decay_log) < 0: each channel's trace decays to forgotten_at over its period.
        self.decay_log = nn.Parameter(torch.log(-math.log(opts.forgotten_at) / periods))
        self.frequency = nn.Parameter(2 * math.pi / torch.linspace(opts.min_period, opts.max_period, c))

    def decay(self) -> torch.Tensor:
        """``gamma`` ``[memory_size, context_size]`` (complex)."""
        alpha = -torch.exp(self.decay_log)
        return torch.exp(torch.complex(alpha[:, None].expand(-1, self.frequency.shape[0]),
                                       self.frequency[None, :].expand(alpha.shape[0], -1)))

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """``x~`` ``[..., memory_size, context_size]``, the same for every trace of a channel."""
        value, gate = self.pre(x).chunk(2, dim=-1)
        gated = value * torch.sigmoid(gate)
        return gated.unsqueeze(-1).expand(*gated.shape, self.frequency.shape[0])

    def read(self, traces: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The layer's output from its traces ``[..., m, c]`` (complex) and its input."""
        z = self.mix(torch.cat((traces.real, traces.imag), dim=-1).flatten(-2))
        skip, gate = self.post(x).chunk(2, dim=-1)
        gate = torch.sigmoid(gate)
        return F.layer_norm(z * gate, z.shape[-1:]) + skip * (1 - gate)


class FFMCore(MemoryCore):
    """Stacked FFM layers (Morad et al. 2023); state ``[num_layers, N, memory_size, context_size, 2]``."""

    name = "ffm"
    state_size = 1
    Options = FFMOptions

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        self.layers = nn.ModuleList(
            FFMLayer(input_size if layer == 0 else hidden_size, hidden_size, self.options)
            for layer in range(num_layers)
        )

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        opts = self.options
        return [(self.num_layers, batch_size, opts.memory_size, opts.context_size, 2)]

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        states = []
        for layer, block in enumerate(self.layers):
            prev = torch.complex(state[0][layer][..., 0], state[0][layer][..., 1])
            traces = torch.addcmul(block.drive(x).to(prev.dtype), block.decay(), prev)
            states.append(torch.view_as_real(traces))
            x = block.read(traces, x)
        return x, (torch.stack(states),)

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        states = []
        for layer, block in enumerate(self.layers):
            prev = torch.complex(state[0][layer][..., 0], state[0][layer][..., 1])
            traces = linear_scan(block.decay(), block.drive(x), prev, episode_start)
            states.append(torch.view_as_real(traces[-1]))
            x = block.read(traces, x)
        return x, (torch.stack(states),)
