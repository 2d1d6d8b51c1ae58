"""The core without memory: what a task needs memory for shows against it.

An MLP of ``num_layers`` Linear + tanh layers to ``hidden_size``; each step sees only its own
input. Its state is one zero-width tensor ``[1, N, 0]``, so that, like every core, it has a
state tuple the agents can carry, store and reset.
"""

from __future__ import annotations

import torch
from torch import nn

from rlmem.memory.base import MemoryCore, State


def tanh_mlp(input_size: int, hidden_size: int, num_layers: int) -> nn.Sequential:
    """``num_layers`` Linear + tanh layers, ``input_size`` -> ``hidden_size`` -> ... -> ``hidden_size``."""
    layers: list[nn.Module] = []
    for layer in range(num_layers):
        layers += [nn.Linear(input_size if layer == 0 else hidden_size, hidden_size), nn.Tanh()]
    return nn.Sequential(*layers)


class MLPCore(MemoryCore):
    """No memory at all (the memoryless baseline of popgym, Morad et al. 2023, "POPGym"); state ``[1, N, 0]``."""

    name = "mlp"
    state_size = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        self.net = tanh_mlp(input_size, hidden_size, num_layers)

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        return [(1, batch_size, 0)]

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.net(x), state

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        return self.net(x), state
