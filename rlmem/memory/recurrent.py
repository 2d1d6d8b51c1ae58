"""The classic recurrent cores: LSTM, GRU and the plain tanh (Elman) RNN, on torch's fused RNNs.

States are ``[layers, N, H]`` tensors (the ``nn.LSTM`` convention): ``(h, c)`` for an LSTM,
``(h,)`` for a GRU or an Elman RNN.

Unrolling with resets (``unroll="chunked"``): a sequence is cut at every step where *any* env
starts an episode; each piece runs as one cuDNN / fused call of the torch RNN, with the state
of the envs that start there zeroed in between. Envs that start together (fixed-length tasks)
give a few long pieces; when every step has a start somewhere it degrades to the per-step
unroll. Finding the cuts reads the host once per unroll, so a CUDA graph must use
``unroll="per_step"``: one single-step cell op per step, the very op the rollout acts with.
"""

from __future__ import annotations

import torch
from torch import nn

from rlmem.memory.base import MemoryCore, State, reset_state


class RNNCore(MemoryCore):
    """A core around a time-major torch RNN module in ``self.rnn``; its cell op steps it."""

    rnn: nn.RNNBase
    chunked_reads_host = True

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        return [(self.num_layers, batch_size, self.hidden_size)] * self.state_size

    def _run(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        out, new_state = self.rnn(x, state if self.state_size > 1 else state[0])
        return out, (new_state if isinstance(new_state, tuple) else (new_state,))

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Runs the RNN's own weights through the single-step cell op, layer by layer: for one
        step that is several times cheaper than a sequence call of the torch RNN."""
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

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        # One host read per unroll (not per step): the steps where some env starts.
        cuts = (torch.nonzero(episode_start[1:].any(dim=1)).flatten() + 1).tolist()
        outputs = []
        for begin, end in zip([0, *cuts], [*cuts, x.shape[0]], strict=True):
            out, state = self._run(x[begin:end], reset_state(state, episode_start[begin]))
            outputs.append(out)
        return torch.cat(outputs, dim=0), state


class LSTMCore(RNNCore):
    """An ``nn.LSTM`` core (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory"); state ``(h, c)``."""

    name = "lstm"
    state_size = 2

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers)

    def _cell(self, x: torch.Tensor, state: State, weights: list[torch.Tensor]) -> State:
        return torch.lstm_cell(x, state, *weights)


class GRUCore(RNNCore):
    """An ``nn.GRU`` core (Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder").

    State ``(h,)``.
    """

    name = "gru"
    state_size = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        self.rnn = nn.GRU(input_size, hidden_size, num_layers)

    def _cell(self, x: torch.Tensor, state: State, weights: list[torch.Tensor]) -> State:
        return (torch.gru_cell(x, state[0], *weights),)


class ElmanCore(RNNCore):
    """The plain tanh RNN (Elman 1990, "Finding Structure in Time"), ``nn.RNN``; state ``(h,)``.

    The simplest recurrent baseline, without gates: what the gated cores are measured against
    (popgym's benchmark, Morad et al. 2023, runs it too).
    """

    name = "elman"
    state_size = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, nonlinearity="tanh")

    def _cell(self, x: torch.Tensor, state: State, weights: list[torch.Tensor]) -> State:
        return (torch.rnn_tanh_cell(x, state[0], *weights),)
