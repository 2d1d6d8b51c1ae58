"""A frozen copy of ``rlmem/memory.py`` as it was before the package split (commit 16dc7af).

tests/test_memory_cores.py checks that the LSTM and GRU cores of ``rlmem.memory`` still build
the same parameters (names, seeded values) and compute bitwise the same outputs as this code.
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, ...]

UNROLL_MODES = ("chunked", "per_step")


def reset_state(state: State, episode_start: torch.Tensor) -> State:
    """Zero the state of every env where ``episode_start`` ``[N]`` is True (no host sync)."""
    keep = (~episode_start).to(state[0].dtype).view(1, -1, 1)
    return tuple(s * keep for s in state)


class MemoryCore(nn.Module):
    """A recurrent core: ``forward(x [T,N,D], state, episode_start [T,N]) -> (out [T,N,H], state)``.

    Subclasses wrap a time-major torch RNN module in ``self.rnn`` and say how many tensors
    their state holds.
    """

    rnn: nn.RNNBase
    state_size: int

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked") -> None:
        super().__init__()
        if unroll not in UNROLL_MODES:
            raise ValueError(f"unroll must be one of {UNROLL_MODES}, got {unroll!r}")
        self.input_size, self.hidden_size, self.num_layers, self.unroll = input_size, hidden_size, num_layers, unroll

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The all-zero state of ``batch_size`` envs."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        device = device if device is not None else next(self.parameters()).device
        return tuple(torch.zeros(shape, device=device) for _ in range(self.state_size))

    def _run(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        out, new_state = self.rnn(x, state if self.state_size > 1 else state[0])
        return out, (new_state if isinstance(new_state, tuple) else (new_state,))

    def step(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One step for a batch: ``x`` ``[N, D]``, ``episode_start`` ``[N]`` -> ``[N, H]``.

        Runs the RNN's own weights through the single-step cell op, layer by layer: for one
        step that is several times cheaper than a sequence call of ``nn.LSTM`` / ``nn.GRU``.
        """
        state = reset_state(state, episode_start)
        layers = []
        for layer in range(self.num_layers):
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            layer_state = self._cell(x, tuple(s[layer] for s in state), weights)
            layers.append(layer_state)
            x = layer_state[0]
        if self.num_layers == 1:  # a view, not a copy: this runs every step of rollouts and per_step unrolls
            return x, tuple(part.unsqueeze(0) for part in layers[0])
        return x, tuple(torch.stack(parts) for parts in zip(*layers, strict=True))

    def _cell(self, x: torch.Tensor, state: State, weights: list[torch.Tensor]) -> State:
        """One layer, one step: the new state of that layer (its first tensor is the output)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Unroll over ``T`` steps, zeroing the state where an episode starts."""
        if self.unroll == "per_step":
            # unbind, not x[t]: the backward of x[t] writes a zero tensor of all T steps for every
            # step (O(T^2) memory traffic); unbind's backward stacks the T gradients once.
            outputs = []
            for x_t, start_t in zip(x.unbind(0), episode_start.unbind(0), strict=True):
                out, state = self.step(x_t, state, start_t)
                outputs.append(out)
            return torch.stack(outputs), state
        # One host read per unroll (not per step): the steps where some env starts.
        cuts = (torch.nonzero(episode_start[1:].any(dim=1)).flatten() + 1).tolist()
        outputs = []
        for begin, end in zip([0, *cuts], [*cuts, x.shape[0]], strict=True):
            out, state = self._run(x[begin:end], reset_state(state, episode_start[begin]))
            outputs.append(out)
        return torch.cat(outputs, dim=0), state


class LSTMCore(MemoryCore):
    """An ``nn.LSTM`` core; state ``(h, c)``."""

    state_size = 2

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked") -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll)
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers)

    def _cell(self, x: torch.Tensor, state: State, weights: list[torch.Tensor]) -> State:
        return torch.lstm_cell(x, state, *weights)


class GRUCore(MemoryCore):
    """An ``nn.GRU`` core; state ``(h,)``."""

    state_size = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked") -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll)
        self.rnn = nn.GRU(input_size, hidden_size, num_layers)

    def _cell(self, x: torch.Tensor, state: State, weights: list[torch.Tensor]) -> State:
        return (torch.gru_cell(x, state[0], *weights),)


#: The memory cores by name; add a core here to make it available everywhere.
CORES: dict[str, type[MemoryCore]] = {"lstm": LSTMCore, "gru": GRUCore}


def make_core(memory: str, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked") -> MemoryCore:
    """Build the core named ``memory`` ('lstm' or 'gru')."""
    if memory not in CORES:
        raise ValueError(f"memory must be one of {sorted(CORES)}, got {memory!r}")
    return CORES[memory](input_size, hidden_size, num_layers, unroll)
