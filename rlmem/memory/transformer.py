"""A causal transformer over a sliding window of steps, with Transformer-XL-style memory for RL.

Dai et al. 2019, "Transformer-XL"; Parisotto et al. 2020, "Stabilizing Transformers for
Reinforcement Learning" (GTrXL: pre-LayerNorm blocks, GRU-type gates in place of residual
adds); the same memory design as CleanRL's ``ppo_trxl`` (Pleines et al. 2023, "Memory Gym").

Each step is a query that sees itself and the ``context_length - 1`` steps before it, within
its own episode. The state is what a step needs of the past: every layer's *inputs* over the
last ``context_length - 1`` steps, ``[num_layers, N, context_length - 1, hidden]`` (keys and
values are recomputed from them), and a validity mask ``[1, N, context_length - 1]`` (float
0/1). Zeros are a fresh episode: nothing is valid, nothing is attended to.

Position is relative only: a learned bias per head and distance ``0 .. context_length - 1``
added to the attention scores. A step therefore sees exactly the same thing in a rollout
(:meth:`TransformerCore.step`, one query against the cache) and in a training sequence
(``forward``: all queries at once, the cache in front, a mask that admits a key only within
the window, valid, and in the query's episode: episodes are told apart by the running count
of starts, so nothing attends across a start). The sequence is cut into blocks of queries
that each see one block of keys plus the window before it, so the work is ``O(T * window)``,
not ``O(T^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlmem.memory.base import MemoryCore, State, option_error


@dataclass
class TransformerOptions:
    """Options of the ``transformer`` core."""

    context_length: int = 16
    """Steps each query sees: itself and the ``context_length - 1`` before it (same episode)."""
    num_heads: int = 2
    """Attention heads per layer; must divide ``hidden_size``."""
    gated: bool = False
    """GTrXL's GRU-type gating in place of the residual adds, initialised near the identity."""
    ff_size: int = 0
    """Width of each block's MLP; 0: 4 x ``hidden_size``."""

    def check(self, core: str, hidden_size: int | None) -> None:
        if self.context_length < 1:
            raise option_error(core, "context_length", ">= 1", self.context_length)
        if self.num_heads < 1:
            raise option_error(core, "num_heads", ">= 1", self.num_heads)
        if hidden_size is not None and hidden_size % self.num_heads:
            raise option_error(core, "num_heads", f"a divisor of hidden_size {hidden_size}", self.num_heads)
        if self.ff_size < 0:
            raise option_error(core, "ff_size", ">= 0 (0: 4 x hidden_size)", self.ff_size)


class GRUGate(nn.Module):
    """GTrXL's gate ``g(x, y)``: a GRU update of the residual stream ``x`` by a sublayer's ``y``.

    ``z = sigmoid(W_z y + U_z x - b_g)`` with ``b_g = 2`` at the start, so the block begins
    close to the identity (the paper's key to stable RL training). ``b_g`` is a parameter of
    its own, not a Linear bias, so an agent's blanket ``zeros_(bias)`` init leaves it alone;
    the Linears keep (zero) biases so that such an init finds one on each.
    """

    def __init__(self, width: int, gate_bias: float = 2.0) -> None:
        super().__init__()
        self.from_y = nn.Linear(width, 3 * width)
        self.from_x = nn.Linear(width, 2 * width)
        self.candidate_from_x = nn.Linear(width, width)
        for linear in (self.from_y, self.from_x, self.candidate_from_x):
            nn.init.zeros_(linear.bias)
        self.gate_bias = nn.Parameter(torch.full((width,), gate_bias))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y_r, y_z, y_h = self.from_y(y).chunk(3, dim=-1)
        x_r, x_z = self.from_x(x).chunk(2, dim=-1)
        reset = torch.sigmoid(y_r + x_r)
        update = torch.sigmoid(y_z + x_z - self.gate_bias)
        candidate = torch.tanh(y_h + self.candidate_from_x(reset * x))
        return x + update * (candidate - x)


def _heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[..., L, H]`` -> ``[..., heads, L, H / heads]``."""
    return t.unflatten(-1, (num_heads, -1)).transpose(-3, -2)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``[..., heads, L, d]`` -> ``[..., L, heads * d]``."""
    return t.transpose(-3, -2).flatten(-2)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm attention + MLP, with residual adds or GTrXL gates."""

    def __init__(self, width: int, num_heads: int, context_length: int, ff_size: int, gated: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_out = nn.Linear(width, width)
        #: Score bias per head and distance (0: the step itself): relative position.
        self.distance_bias = nn.Parameter(torch.zeros(num_heads, context_length))
        self.ff_norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, ff_size), nn.ReLU(), nn.Linear(ff_size, width))
        self.attn_gate = GRUGate(width) if gated else None
        self.ff_gate = GRUGate(width) if gated else None

    def queries(self, normed: torch.Tensor) -> torch.Tensor:
        width = normed.shape[-1]
        return F.linear(normed, self.qkv.weight[:width], self.qkv.bias[:width])

    def keys_values(self, normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        width = normed.shape[-1]
        return F.linear(normed, self.qkv.weight[width:], self.qkv.bias[width:]).chunk(2, dim=-1)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias_index: torch.Tensor,
               visible: torch.Tensor) -> torch.Tensor:
        """Attention of ``q`` ``[B, Q, H]`` on ``k``, ``v`` ``[B, S, H]``: ``[B, Q, H]``.

        ``bias_index`` ``[Q, S]`` is each pair's distance (clamped into the window), ``visible``
        (broadcasting to ``[B, 1, Q, S]``) which keys each query may see; it always sees itself.
        """
        mask = self.distance_bias[:, bias_index].to(q.dtype).masked_fill(~visible, float("-inf"))
        heads = self.num_heads
        out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads), attn_mask=mask)
        return _merge_heads(out)

    def merge(self, gate: GRUGate | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The residual add, or GTrXL's gate of a ReLU'd sublayer output."""
        return x + y if gate is None else gate(x, torch.relu(y))

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The rest of the block after attention: output projection, merge, MLP, merge."""
        x = self.merge(self.attn_gate, x, self.attn_out(attended))
        return self.merge(self.ff_gate, x, self.ff(self.ff_norm(x)))


class TransformerCore(MemoryCore):
    """Causal sliding-window self-attention; state ``(cache [L, N, K-1, H], valid [1, N, K-1])``, K = context_length."""

    name = "transformer"
    state_size = 2
    Options = TransformerOptions
    #: The fewest queries a block of the sequence path holds (more blocks of fewer keys each).
    block_size = 16

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, unroll: str = "chunked",
                 options: object = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, unroll, options)
        opts = self.options
        self.context_length = opts.context_length
        self.in_proj = nn.Linear(input_size, hidden_size)
        ff_size = opts.ff_size or 4 * hidden_size
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size, opts.num_heads, opts.context_length, ff_size, opts.gated)
            for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_size)

    def state_shapes(self, batch_size: int) -> list[tuple[int, ...]]:
        past = self.context_length - 1
        return [(self.num_layers, batch_size, past, self.hidden_size), (1, batch_size, past)]

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        cache, valid = state
        past = self.context_length - 1
        h = self.in_proj(x)
        visible = torch.cat((valid[0] > 0.5, valid.new_ones(valid.shape[1], 1, dtype=torch.bool)), dim=1)
        visible = visible[:, None, None, :]  # [N, 1, 1, K]
        # Key j of the window [cache ..., self] is at distance past - j.
        bias_index = torch.arange(past, -1, -1, device=x.device).unsqueeze(0)
        inputs = []
        for layer, block in enumerate(self.blocks):
            inputs.append(h)
            normed = block.attn_norm(torch.cat((cache[layer], h.unsqueeze(1)), dim=1))  # [N, K, H]
            k, v = block.keys_values(normed)
            attended = block.attend(block.queries(normed[:, -1:]), k, v, bias_index, visible)
            h = block.finish(h, attended.squeeze(1))
        if past:
            cache = torch.cat((cache[:, :, 1:], torch.stack(inputs).unsqueeze(2)), dim=2)
            valid = torch.cat((valid[:, :, 1:], valid.new_ones(1, valid.shape[1], 1)), dim=2)
        return self.out_norm(h), (cache, valid)

    def _sequence(self, x: torch.Tensor, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        cache, valid = state
        steps, batch, _ = x.shape
        past = self.context_length - 1
        block = min(steps, max(self.context_length, self.block_size))
        blocks = -(-steps // block)
        pad = blocks * block - steps
        span = block + past  # the keys a block of queries sees: its own steps and the window before
        # Key positions: the cache (episode 0, valid as stored), the sequence, the padding (its
        # last episode, valid: only padded queries can see it, each at least itself).
        episode = torch.cumsum(episode_start, 0, dtype=torch.int32)
        query_episode = torch.cat((episode, episode[-1:].expand(pad, batch)))
        key_episode = torch.cat((episode.new_zeros(past, batch), query_episode))
        key_valid = torch.cat((valid[0].transpose(0, 1) > 0.5, episode_start.new_ones(blocks * block, batch)))
        rows = torch.arange(block, device=x.device).unsqueeze(1)
        distance = past + rows - torch.arange(span, device=x.device)  # [block, span]
        in_window = (distance >= 0) & (distance <= past)
        same_episode = key_episode.unfold(0, span, block).unsqueeze(2) == (
            query_episode.view(blocks, block, batch).transpose(1, 2).unsqueeze(-1))  # [blocks, N, block, span]
        visible = in_window & key_valid.unfold(0, span, block).unsqueeze(2) & same_episode
        visible = visible.reshape(blocks * batch, 1, block, span)
        bias_index = distance.clamp(0, past)
        # What the last step's episode keeps of the window: the final state, as stepping leaves it.
        last_episode = key_episode[steps : steps + past] == episode[-1]
        keep = last_episode.to(x.dtype).unsqueeze(-1)

        h = F.pad(self.in_proj(x), (0, 0, 0, 0, 0, pad))  # [T + pad, N, H]
        new_cache = []
        for layer, block_module in enumerate(self.blocks):
            inputs = torch.cat((cache[layer].transpose(0, 1), h))  # [past + T + pad, N, H]
            new_cache.append(inputs[steps : steps + past] * keep)
            normed = block_module.attn_norm(inputs)
            q = block_module.queries(normed[past:]).view(blocks, block, batch, -1).transpose(1, 2)
            k, v = (t.unfold(0, span, block).permute(0, 1, 3, 2) for t in block_module.keys_values(normed))
            attended = block_module.attend(
                q.reshape(blocks * batch, block, -1), k.reshape(blocks * batch, span, -1),
                v.reshape(blocks * batch, span, -1), bias_index, visible)
            attended = attended.view(blocks, batch, block, -1).transpose(1, 2).reshape(blocks * block, batch, -1)
            h = block_module.finish(h, attended)
        cache = torch.stack(new_cache).transpose(1, 2)
        valid = (key_valid[steps : steps + past] & last_episode).transpose(0, 1).unsqueeze(0).to(valid.dtype)
        return self.out_norm(h[:steps]), (cache, valid)
