"""Frame stacking: a fixed window of the last inputs, the memory of DQN on Atari.

Mnih et al. 2015, "Human-level control through deep reinforcement learning" (four stacked
frames); popgym's benchmark (Morad et al. 2023) runs it as a memory baseline. Each step sees
its own input and the ``context_length - 1`` before it, concatenated oldest first (zeros
before the episode's start), through ``num_layers`` Linear + tanh layers. It remembers exactly
that window and nothing older.

The state is the window of past inputs, ``[1, N, (context_length - 1) * input_size]``, newest
last; zeros are exactly "nothing seen yet".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlmem.memory.base import MemoryCore, State, option_error
from rlmem.memory.mlp import tanh_mlp


@dataclass
class FramestackOptions:
    """Options of the ``framestack`` core."""

    context_length: int = 4
    """Inputs each step sees: its own and the ``context_length - 1`` before it."""

    def check(self, core: str, hidden_size: int | None) -> None:
        if self.context_length < 1:
            raise option_error(core, "context_length", ">= 1", self.context_length)


class FramestackCore(MemoryCore):
    """The last ``context_length`` inputs, stacked, then an MLP; state ``[1, N, (context_length - 1) * D]``."""

    name = "framestack"
    state_size = 1
    Options = FramestackOptions

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        self.context_length = self.options.context_length
        self.net = tanh_mlp(self.context_length * input_size, hidden_size, num_layers)

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        return [(1, batch_size, (self.context_length - 1) * self.input_size)]

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        window = torch.cat((state[0][0], x), dim=-1)
        return self.net(window), (window[:, self.input_size :].unsqueeze(0),)

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """All windows at once: the past inputs, then the sequence, cut into overlapping windows.

        A window entry counts only if it is in the same episode as the window's last step (the
        episode index is the running count of starts; the stored past is episode 0).
        """
        steps, batch, width = x.shape
        past_steps = self.context_length - 1
        past = state[0][0].reshape(batch, past_steps, width).transpose(0, 1)
        inputs = torch.cat((past, x))  # [past_steps + T, N, D]
        episode = torch.cumsum(episode_start, 0, dtype=torch.int32)
        entry_episode = torch.cat((episode.new_zeros(past_steps, batch), episode))
        same = entry_episode.unfold(0, self.context_length, 1) == episode.unsqueeze(-1)  # [T, N, K]
        windows = inputs.unfold(0, self.context_length, 1).transpose(2, 3)  # [T, N, K, D]
        windows = (windows * same.unsqueeze(-1).to(x.dtype)).reshape(steps, batch, -1)
        return self.net(windows), (windows[-1:, :, width:],)
