"""minGRU: a GRU whose gate and candidate depend on the input only, so it trains with a scan.

Feng et al. 2024, "Were RNNs All We Needed?". Per layer, on the LayerNorm'd input ``u``::

    z_t  = sigmoid(W_z u_t)
    h~_t = W_h u_t
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

then GELU and a GLU, added to the residual stream: the pre-norm residual block the paper's
models (and minGRU-pytorch) stack, the same block as :mod:`rlmem.memory.lru`'s. Without
``h_{t-1}`` inside the gates the recurrence is linear in ``h`` (coefficient ``1 - z_t``,
input ``z_t h~_t``), so the sequence path runs it with the resettable parallel scan
(:mod:`rlmem.memory.scan`); no Python loop over time. Its decays are real and set by the
input alone (no rotation, unlike the LRU's complex ones): with PPO it learns PassiveTMazeEasy
(hold one cue) at once, but RepeatPreviousEasy (name the symbol exactly 4 steps back) only slowly:
0.4 to 0.5 after 800k steps with one or two layers (plain stacked or as these blocks), 0.905
after 4M steps with two blocks of 128 and a learning rate of 1e-3 (docs/benchmarks.md).
The state is each layer's ``h``, ``[num_layers, N, hidden]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlmem.memory.base import MemoryCore, State
from rlmem.memory.scan import linear_scan


class MinGRUBlock(nn.Module):
    """One minGRU block: norm -> minGRU recurrence -> GELU -> GLU, added to the input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        #: One Linear to [gate pre-activation, candidate].
        self.gates = nn.Linear(width, 2 * width)
        self.glu = nn.Linear(width, 2 * width)

    def coefficients(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 - z, z * h~)`` of the normalised input ``u``."""
        gate, candidate = self.gates(u).chunk(2, dim=-1)
        return torch.sigmoid(-gate), torch.sigmoid(gate) * candidate

    def read(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x + F.glu(self.glu(F.gelu(h)), dim=-1)


class MinGRUCore(MemoryCore):
    """Stacked minGRU blocks (Feng et al. 2024); state ``[num_layers, N, hidden]``."""

    name = "mingru"
    state_size = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        self.in_proj = nn.Linear(input_size, hidden_size)
        self.layers = nn.ModuleList(MinGRUBlock(hidden_size) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(hidden_size)

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        return [(self.num_layers, batch_size, self.hidden_size)]

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x = self.in_proj(x)
        states = []
        for layer, block in enumerate(self.layers):
            keep, drive = block.coefficients(block.norm(x))
            h = torch.addcmul(drive, keep, state[0][layer])
            states.append(h)
            x = block.read(h, x)
        return self.out_norm(x), (torch.stack(states),)

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        x = self.in_proj(x)
        states = []
        for layer, block in enumerate(self.layers):
            keep, drive = block.coefficients(block.norm(x))
            h = linear_scan(keep, drive, state[0][layer], episode_start)
            states.append(h[-1])
            x = block.read(h, x)
        return self.out_norm(x), (torch.stack(states),)
