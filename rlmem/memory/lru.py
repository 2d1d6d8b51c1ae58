"""The Linear Recurrent Unit: a diagonal complex linear recurrence, trained with the parallel scan.

Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences". Per layer,
on the LayerNorm'd input ``u``::

    lambda = exp(-exp(nu) + i exp(theta))          (|lambda| < 1 by construction: stable)
    h_t = lambda * h_{t-1} + gamma * (B u_t)       (gamma = sqrt(1 - |lambda|^2): normalisation)
    y_t = Re(C h_t) + D * u_t

then GELU and a GLU, added to the residual stream (the paper's block, pre-norm). ``lambda``
starts uniform on a ring ``r_min <= |lambda| <= r_max`` with phases in ``[0, max_phase]``.
Because the recurrence is linear in ``h``, the sequence path runs it with the resettable
parallel scan (:mod:`rlmem.memory.scan`; Lu et al. 2023 for the resets in RL), with no
Python loop over time; the per-step path is one complex multiply-add per layer.

The state is real: each layer's ``h`` as ``[num_layers, N, state_size, 2]`` (real and
imaginary parts), so buffers, checkpoints and numpy ``predict`` treat it like any other.
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
class LRUOptions:
    """Options of the ``lru`` core."""

    state_size: int = 0
    """Complex recurrent units per layer; 0: ``hidden_size // 2`` (``hidden_size`` real numbers, a GRU's worth)."""
    r_min: float = 0.0
    """Smallest initial ``|lambda|`` (0: some units forget within a step, for short gaps)."""
    r_max: float = 0.999
    """Largest initial ``|lambda|`` (0.999: some units hold for ~1000 steps)."""
    max_phase: float = 2 * math.pi
    """Initial phases of ``lambda`` are uniform in ``[0, max_phase]``."""

    def check(self, core: str, hidden_size: int | None) -> None:
        if self.state_size < 0:
            raise option_error(core, "state_size", ">= 0 (0: hidden_size // 2)", self.state_size)
        if not 0.0 <= self.r_min < 1.0:
            raise option_error(core, "r_min", "in [0, 1)", self.r_min)
        if not self.r_min < self.r_max < 1.0:
            raise option_error(core, "r_max", f"in (r_min = {self.r_min}, 1)", self.r_max)
        if not self.max_phase > 0.0:
            raise option_error(core, "max_phase", "> 0", self.max_phase)


class LRULayer(nn.Module):
    """One LRU block: norm -> linear recurrence -> GELU -> GLU, added to the input."""

    def __init__(self, width: int, state_size: int, r_min: float, r_max: float, max_phase: float) -> None:
        super().__init__()
        # The paper's ring initialisation: |lambda|^2 uniform in [r_min^2, r_max^2].
        u1 = torch.rand(state_size).clamp_min(1e-6)
        u2 = torch.rand(state_size).clamp_min(1e-6)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(torch.log(max_phase * u2))
        self.gamma_log = nn.Parameter(0.5 * torch.log1p(-torch.exp(-2 * torch.exp(nu_log))))
        #: B's real and imaginary parts, ``[state, 2, width]`` (Glorot-like scale as in the paper).
        self.B = nn.Parameter(torch.randn(state_size, 2, width) / math.sqrt(2 * width))
        #: C's real and imaginary parts, ``[width, state, 2]``.
        self.C = nn.Parameter(torch.randn(width, state_size, 2) / math.sqrt(state_size))
        self.D = nn.Parameter(torch.randn(width))
        self.norm = nn.LayerNorm(width)
        self.glu = nn.Linear(width, 2 * width)

    def decay(self) -> torch.Tensor:
        """``lambda`` ``[state]`` (complex)."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def drive(self, u: torch.Tensor) -> torch.Tensor:
        """``gamma * (B u)`` ``[..., state]`` (complex), as one real matmul."""
        weight = (self.B * torch.exp(self.gamma_log)[:, None, None]).flatten(0, 1)  # [2 * state, width]
        return torch.view_as_complex(F.linear(u, weight).unflatten(-1, (-1, 2)))

    def read(self, h: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``Re(C h) + D u`` through GELU and the GLU, added to the block input ``x``."""
        weight = torch.stack((self.C[..., 0], -self.C[..., 1]), dim=-1).flatten(1)  # [width, 2 * state]
        y = torch.addcmul(F.linear(torch.view_as_real(h).flatten(-2), weight), self.D, u)
        return x + F.glu(self.glu(F.gelu(y)), dim=-1)


def _complex(state: torch.Tensor) -> torch.Tensor:
    """A real ``[..., 2]`` state as complex ``[...]`` (a copy: the stored state may be any view)."""
    return torch.complex(state[..., 0], state[..., 1])


class LRUCore(MemoryCore):
    """Stacked LRU blocks (Orvieto et al. 2023); state ``[num_layers, N, state_size, 2]`` (re, im)."""

    name = "lru"
    state_size = 1
    Options = LRUOptions

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        opts = self.options
        self.units = opts.state_size or max(1, hidden_size // 2)
        self.in_proj = nn.Linear(input_size, hidden_size)
        self.layers = nn.ModuleList(
            LRULayer(hidden_size, self.units, opts.r_min, opts.r_max, opts.max_phase) for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_size)

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        return [(self.num_layers, batch_size, self.units, 2)]

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x = self.in_proj(x)
        states = []
        for layer, block in enumerate(self.layers):
            u = block.norm(x)
            h = torch.addcmul(block.drive(u), block.decay(), _complex(state[0][layer]))
            states.append(torch.view_as_real(h))
            x = block.read(h, u, x)
        return self.out_norm(x), (torch.stack(states),)

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        x = self.in_proj(x)
        states = []
        for layer, block in enumerate(self.layers):
            u = block.norm(x)
            h = linear_scan(block.decay(), block.drive(u), _complex(state[0][layer]), episode_start)
            states.append(torch.view_as_real(h[-1]))
            x = block.read(h, u, x)
        return self.out_norm(x), (torch.stack(states),)
