"""minGRU: a GRU whose gate and candidate depend on the input only, so it trains with a scan.

Feng et al. 2024, "Were RNNs All We Needed?". Per layer::

    z_t  = sigmoid(W_z x_t)
    h~_t = W_h x_t
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

Without ``h_{t-1}`` inside the gates the recurrence is linear in ``h`` (coefficient
``1 - z_t``, input ``z_t h~_t``), so the sequence path runs it with the resettable parallel
scan (:mod:`rlmem.memory.scan`); no Python loop over time. Layers are stacked with a tanh
between them (and on the output), which gives the stack its nonlinearity and keeps the
outputs in (-1, 1) like a GRU's. The state is each layer's ``h``, ``[num_layers, N, hidden]``.
"""

from __future__ import annotations

import torch
from torch import nn

from rlmem.memory.base import MemoryCore, State
from rlmem.memory.scan import linear_scan


class MinGRUCore(MemoryCore):
    """Stacked minGRU layers (Feng et al. 2024); state ``[num_layers, N, hidden]``."""

    name = "mingru"
    state_size = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        #: Per layer, one Linear to [gate pre-activation, candidate].
        self.layers = nn.ModuleList(
            nn.Linear(input_size if layer == 0 else hidden_size, 2 * hidden_size) for layer in range(num_layers)
        )

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        return [(self.num_layers, batch_size, self.hidden_size)]

    @staticmethod
    def _coefficients(gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 - z, z * h~)`` from a layer's Linear output."""
        gate, candidate = gates.chunk(2, dim=-1)
        return torch.sigmoid(-gate), torch.sigmoid(gate) * candidate

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        states = []
        for layer, linear in enumerate(self.layers):
            keep, drive = self._coefficients(linear(x))
            h = torch.addcmul(drive, keep, state[0][layer])
            states.append(h)
            x = torch.tanh(h)
        return x, (torch.stack(states),)

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        states = []
        for layer, linear in enumerate(self.layers):
            keep, drive = self._coefficients(linear(x))
            h = linear_scan(keep, drive, state[0][layer], episode_start)
            states.append(h[-1])
            x = torch.tanh(h)
        return x, (torch.stack(states),)
