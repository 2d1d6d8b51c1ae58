"""The classic recurrent cores: LSTM, GRU and the plain tanh (Elman) RNN, on torch's fused RNNs.

States are ``[layers, N, H]`` tensors (the ``nn.LSTM`` convention): ``(h, c)`` for an LSTM,
``(h,)`` for a GRU or an Elman RNN.

Unrolling with resets (``unroll="chunked"``) takes the cheapest of up to three layouts by a cost
model (:func:`layout_costs`, measured by scripts/rnn_call_cost.py):

- *cut*: the sequence is cut at every step where any env starts an episode; each piece runs as
  one cuDNN / fused call of the torch RNN, the state of the envs that start there zeroed in
  between. Envs that start together (fixed-length tasks) give a few long pieces.
- *stepped*: one single-step cell op per step (the per-step unroll), cheaper than many short
  pieces where starts are scattered over the steps.
- *packed*, only where the final state is not wanted (:meth:`MemoryCore.outputs`: a replayed
  sequence's loss): every episode segment of every sequence a row of its own from that row's
  step 0, padded at the end, all rows in one call (:func:`segment_rows`). The padding runs after
  each segment's last step, so it changes no output, only the (discarded) final state.

Choosing reads the host once per unroll, so a CUDA graph must use ``unroll="per_step"``: one
single-step cell op per step, the very op the rollout acts with.
"""

from __future__ import annotations

import torch
from torch import nn

from rlmem.memory.base import MemoryCore, State, reset_state

#: The cost model, in row-steps (one step of one row in a fused call): a fused call costs
#: CALL_COST plus, per step, STEP_COST plus one per row; a step of the single-step cell op
#: CELL_COST plus one per row; packing's own ops (layout, copies in and out) PACK_COST. Measured
#: by scripts/rnn_call_cost.py on the 2-core CPU machine (torch 2.13 mkldnn LSTM, hidden 64, 1
#: thread, forward + backward): a call 175-241, a step 0-9, a cell step 90-102 (plus 1.1-1.3
#: per row, taken as 1), packing 241-255 row-steps (docs/benchmarks.md, "RecurrentDQN").
CALL_COST, STEP_COST, CELL_COST, PACK_COST = 200, 5, 100, 250


def layout_costs(steps: int, rows: int, cuts: int, packed_rows: int | None = None,
                 packed_steps: int | None = None) -> dict[str, int]:
    """The modelled cost of each layout of ``rows`` sequences of ``steps`` steps with ``cuts`` cut
    steps (and, for outputs only, a packed layout of ``packed_rows`` rows of ``packed_steps``)."""
    costs = {"cut": (cuts + 1) * CALL_COST + steps * (STEP_COST + rows), "stepped": steps * (CELL_COST + rows)}
    if packed_rows is not None and packed_steps is not None:
        costs["packed"] = CALL_COST + packed_steps * (STEP_COST + packed_rows) + PACK_COST
    return costs


def cheapest_layout(steps: int, rows: int, cuts: int, packed_rows: int | None = None,
                    packed_steps: int | None = None) -> str:
    """The layout :func:`layout_costs` prices lowest ("cut" on a tie, then "stepped", then "packed")."""
    costs = layout_costs(steps, rows, cuts, packed_rows, packed_steps)
    return min(costs, key=costs.__getitem__)


def cut_steps(flags: list[int] | list[bool]) -> list[int]:
    """The steps the cut layout cuts at, from the host's copy of ``episode_start[1:].any(dim=1)``."""
    return [t + 1 for t, flag in enumerate(flags) if flag]


def segment_rows(episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The packed layout of ``[T, N]`` sequences: each episode segment a row of its own.

    Returns ``rows`` and ``offsets`` ``[T, N]`` (step ``t`` of sequence ``n`` goes to step
    ``offsets[t, n]`` of row ``rows[t, n]``) and ``first_rows`` ``[N]`` (the row of each
    sequence's first segment: the one that starts from the given state). Device work only.
    """
    t_len, n = episode_start.shape
    inner = torch.cat([torch.zeros_like(episode_start[:1]), episode_start[1:]])  # starts after step 0
    segment = inner.long().cumsum(0)  # [T, N] the segment of each step within its sequence
    counts = segment[-1] + 1
    first_rows = counts.cumsum(0) - counts
    t = torch.arange(t_len, device=episode_start.device).unsqueeze(1).expand(t_len, n)
    begins = torch.where(inner, t, torch.zeros_like(t)).cummax(0).values
    return first_rows + segment, t - begins, first_rows


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
        cuts = cut_steps(episode_start[1:].any(dim=1).tolist())  # one host read per unroll
        if cheapest_layout(*episode_start.shape, len(cuts)) == "stepped":
            return self._per_step(x, state, episode_start)
        return self._cut(x, state, episode_start, cuts)

    def _cut(self, x: torch.Tensor, state: State, episode_start: torch.Tensor,
             cuts: list[int]) -> tuple[torch.Tensor, State]:
        """The cut layout: one fused call per piece between the ``cuts``."""
        outputs = []
        for begin, end in zip([0, *cuts], [*cuts, x.shape[0]], strict=True):
            out, state = self._run(x[begin:end], reset_state(state, episode_start[begin]))
            outputs.append(out)
        return torch.cat(outputs, dim=0), state

    def _sequence_outputs(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> torch.Tensor:
        t_len, n = episode_start.shape
        rows, offsets, first_rows = segment_rows(episode_start)
        # One host read: the packed layout's rows and length, and the steps the cut layout cuts at.
        n_rows, length, *flags = torch.cat([(rows[-1, -1] + 1).view(1), offsets.max().view(1) + 1,
                                            episode_start[1:].any(dim=1).long()]).tolist()
        cuts = cut_steps(flags)
        best = cheapest_layout(t_len, n, len(cuts), n_rows, length)
        if best == "stepped":
            return self._per_step(x, state, episode_start)[0]
        if best == "cut":
            return self._cut(x, state, episode_start, cuts)[0]
        where = (offsets * n_rows + rows).flatten()  # [T * N] positions in the packed [length * rows]
        packed = x.new_zeros(length * n_rows, x.shape[-1]).index_copy(0, where, x.reshape(t_len * n, -1))
        start = reset_state(state, episode_start[0])
        init = tuple(s.new_zeros(s.shape[0], n_rows, *s.shape[2:]).index_copy(1, first_rows, s) for s in start)
        out, _ = self._run(packed.view(length, n_rows, -1), init)
        return out.reshape(length * n_rows, -1).index_select(0, where).view(t_len, n, -1)


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
