"""Device-resident storage: rollouts for recurrent on-policy agents (and PQN), sequence replay for off-policy ones.

A rollout is ``T`` steps of ``N`` envs, time-major ``[T, N, ...]``, plus the memory state at
its first step; minibatches are whole env columns, so every sequence stays intact and the
memory can be unrolled over it from that stored state. Observations are stored in their own
structure and dtype (:mod:`rlmem.observations`: an image as uint8, a Dict as a dict of tensors,
a vector as the one float32 tensor it always was).
"""

from __future__ import annotations

from typing import Any

import torch

from rlmem import observations
from rlmem.memory import State
from rlmem.observations import Layout


def buffer_tensors(buffer: object) -> list[torch.Tensor]:
    """The tensors a buffer holds as attributes, tuples of tensors (memory states) and observation dicts included."""
    found = []
    for value in vars(buffer).values():
        if isinstance(value, (tuple, dict)):
            found += [t for t in observations.leaves(value) if isinstance(t, torch.Tensor)]
        elif isinstance(value, torch.Tensor):
            found.append(value)
    return found


def tensor_nbytes(buffer: object) -> int:
    """Bytes of the tensors a buffer holds (tuples of tensors included). Built on the meta device,
    a buffer reports its size without allocating it: one rule for every buffer, nothing to keep in sync."""
    return sum(t.numel() * t.element_size() for t in buffer_tensors(buffer))


class RolloutBuffer:
    """``T x N`` transitions on one device, with GAE (truncated episodes bootstrapped by the caller)."""

    def __init__(self, n_steps: int, n_envs: int, obs_size: Layout | int, action_shape: tuple[int, ...],
                 action_dtype: torch.dtype, state_shapes: list[tuple[int, ...]], device: torch.device) -> None:
        t, n = n_steps, n_envs
        self.n_steps, self.n_envs = n_steps, n_envs

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        self.obs = observations.zeros(obs_size, (t, n), device)
        self.actions = zeros(t, n, *action_shape, dtype=action_dtype)
        self.prev_actions = zeros(t, n, *action_shape, dtype=action_dtype)
        self.prev_rewards = zeros(t, n)
        self.log_probs = zeros(t, n)
        self.values = zeros(t, n)
        #: Rewards, with ``gamma * V(final obs)`` already added where an episode was truncated.
        self.rewards = zeros(t, n)
        #: The episode ended at this step (terminated or truncated): nothing flows back across it.
        self.dones = zeros(t, n, dtype=torch.bool)
        #: This step's observation is the first of an episode: the memory is zeroed before it.
        self.episode_starts = zeros(t, n, dtype=torch.bool)
        self.advantages = zeros(t, n)
        self.returns = zeros(t, n)
        #: The memory state at the rollout's first step (each tensor with the envs on dim 1, as the core made it).
        self.initial_state: State = tuple(zeros(*shape) for shape in state_shapes)

    @classmethod
    def nbytes(cls, n_steps: int, n_envs: int, obs_size: Layout | int, action_shape: tuple[int, ...],
               action_dtype: torch.dtype, state_shapes: list[tuple[int, ...]]) -> int:
        """Bytes a buffer of these sizes takes on its device, the stored memory state included (nothing is allocated)."""
        return tensor_nbytes(cls(n_steps, n_envs, obs_size, action_shape, action_dtype, state_shapes,
                                 torch.device("meta")))

    def compute_gae(self, last_value: torch.Tensor, gamma: float, gae_lambda: float) -> None:
        """Generalised advantage estimation over the rollout; ``last_value`` is V of the next obs."""
        next_advantage = torch.zeros_like(last_value)
        next_value = last_value
        for t in reversed(range(self.n_steps)):
            not_done = (~self.dones[t]).to(torch.float32)
            delta = self.rewards[t] + gamma * next_value * not_done - self.values[t]
            next_advantage = delta + gamma * gae_lambda * not_done * next_advantage
            self.advantages[t] = next_advantage
            next_value = self.values[t]
        torch.add(self.advantages, self.values, out=self.returns)  # in place: a recorded rollout writes here


    def columns(self, envs: torch.Tensor) -> dict[str, torch.Tensor | State]:
        """The whole sequences of the env columns ``envs`` (a minibatch)."""
        return {
            "obs": observations.take(self.obs, (slice(None), envs)),
            "actions": self.actions[:, envs],
            "prev_actions": self.prev_actions[:, envs],
            "prev_rewards": self.prev_rewards[:, envs],
            "log_probs": self.log_probs[:, envs],
            "values": self.values[:, envs],
            "advantages": self.advantages[:, envs],
            "returns": self.returns[:, envs],
            "episode_starts": self.episode_starts[:, envs],
            "initial_state": tuple(s[:, envs] for s in self.initial_state),
        }


class QRolloutBuffer:
    """``T x N`` transitions for PQN: the greedy Q-value at collection, and Q(lambda) targets computed from it.

    No replay and no target network: the targets come from the Q-values the acting network gave
    while collecting (Gallici et al. 2024), so they are computed once per rollout, like GAE.
    """

    def __init__(self, n_steps: int, n_envs: int, obs_size: Layout | int, state_shapes: list[tuple[int, ...]],
                 device: torch.device) -> None:
        t, n = n_steps, n_envs
        self.n_steps, self.n_envs = n_steps, n_envs

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        self.obs = observations.zeros(obs_size, (t, n), device)
        self.actions = zeros(t, n, dtype=torch.int64)
        #: Rewards, with ``gamma * max Q(final obs)`` already added where an episode was truncated.
        self.rewards = zeros(t, n)
        #: The episode ended at this step (terminated or truncated): no target reaches across it.
        self.dones = zeros(t, n, dtype=torch.bool)
        #: This step's observation is the first of an episode: the memory is zeroed before it.
        self.episode_starts = zeros(t, n, dtype=torch.bool)
        #: ``max_a Q(obs_t, a)`` of the acting network (what the targets bootstrap from).
        self.values = zeros(t, n)
        #: The Q(lambda) targets of the actions taken.
        self.returns = zeros(t, n)
        #: The memory state at the rollout's first step (each tensor with the envs on dim 1, as the core made it).
        self.initial_state: State = tuple(zeros(*shape) for shape in state_shapes)

    @classmethod
    def nbytes(cls, n_steps: int, n_envs: int, obs_size: Layout | int, state_shapes: list[tuple[int, ...]]) -> int:
        """Bytes a buffer of these sizes takes on its device, the stored memory state included (nothing is allocated)."""
        return tensor_nbytes(cls(n_steps, n_envs, obs_size, state_shapes, torch.device("meta")))

    def compute_lambda_returns(self, last_value: torch.Tensor, gamma: float, td_lambda: float) -> None:
        """Peng's Q(lambda) targets, backwards: ``G_t = r_t + gamma (1 - done_t) ((1 - lambda) max Q_{t+1}
        + lambda G_{t+1})``, where ``last_value`` is max Q of the observation after the rollout."""
        next_return = next_value = last_value
        for t in reversed(range(self.n_steps)):
            not_done = (~self.dones[t]).to(torch.float32)
            next_return = self.rewards[t] + gamma * not_done * (
                (1 - td_lambda) * next_value + td_lambda * next_return)
            self.returns[t] = next_return  # in place: a recorded rollout writes here
            next_value = self.values[t]

    def columns(self, envs: torch.Tensor) -> dict[str, torch.Tensor | State]:
        """The whole sequences of the env columns ``envs`` (a minibatch)."""
        return {
            "obs": observations.take(self.obs, (slice(None), envs)),
            "actions": self.actions[:, envs],
            "returns": self.returns[:, envs],
            "episode_starts": self.episode_starts[:, envs],
            "initial_state": tuple(s[:, envs] for s in self.initial_state),
        }


class SequenceReplay:
    """R2D2-style replay of fixed-length sequences on one device, with the memory state at each start.

    Acting fills one rolling window per env (``[seq_len, N, ...]`` plus the state the actor had
    at the window's first step); every ``seq_len - overlap`` steps the full window of all N envs
    is written into a ring of sequence slots at once, then slides by that stride. A sequence
    therefore never mixes two envs; an episode that ends inside one is marked by ``dones`` and
    the next step's ``episode_starts`` (the learner's unroll zeroes the memory there).
    Priorities (one per slot) are used when ``prioritized``; new sequences get the largest seen.

    Device work and host counters are apart, so that a CUDA graph can record the acting steps:
    :meth:`store` writes one step's row (and, at a full window, the ring and the slide) reading
    the write slot from a device tensor, and changes no host number; :meth:`advance` then moves
    the host's counters (window position, next slot, size) as those steps did. :meth:`add` is
    both, one step at a time. Sampling likewise: :meth:`sample_slots` draws on the host's
    generator, :meth:`gather` reads those slots on the device.
    """

    def __init__(self, capacity: int, seq_len: int, overlap: int, n_envs: int, obs_size: Layout | int,
                 state_shapes: list[tuple[int, ...]], device: torch.device, store_state: bool = True) -> None:
        self.capacity, self.seq_len, self.overlap, self.n_envs = capacity, seq_len, overlap, n_envs
        self.store_state, self.device = store_state, device
        l, c, n = seq_len, capacity, n_envs

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        # The ring: [seq_len, capacity, ...] (time-major, like every other sequence in rlmem).
        self.obs = observations.zeros(obs_size, (l, c), device)
        self.actions = zeros(l, c, dtype=torch.int64)
        #: Rewards, with ``gamma * max Q(final obs)`` already added where an episode was truncated.
        self.rewards = zeros(l, c)
        self.dones = zeros(l, c, dtype=torch.bool)
        self.episode_starts = zeros(l, c, dtype=torch.bool)
        self.states = tuple(zeros(*shape[:1], c, *shape[1:]) for shape in state_shapes)
        #: Which env each slot came from (for checks and debugging; sequences never mix envs).
        self.env_ids = zeros(c, dtype=torch.int64)
        self.priorities = zeros(c)
        self.max_priority = torch.ones((), device=self.device)  # a tensor: updating it needs no host read
        self.next_slot = 0
        #: ``next_slot`` on the device: the ring write reads it (a recorded write must not bake the host's number in).
        self.slot_base = torch.zeros((), dtype=torch.int64, device=device)
        self.size = 0
        # The rolling windows being filled by the actor.
        self.w_obs = observations.zeros(obs_size, (l, n), device)
        self.w_actions = zeros(l, n, dtype=torch.int64)
        self.w_rewards = zeros(l, n)
        self.w_dones = zeros(l, n, dtype=torch.bool)
        self.w_starts = zeros(l, n, dtype=torch.bool)
        #: The actor's input state at every step of the window ``[seq_len, layers, N, H]``.
        self.w_states: State = tuple(zeros(l, *shape[:1], n, *shape[1:]) for shape in state_shapes)
        self.position = 0

    @classmethod
    def nbytes(cls, capacity: int, seq_len: int, overlap: int, n_envs: int, obs_size: Layout | int,
               state_shapes: list[tuple[int, ...]]) -> int:
        """Bytes a replay of these sizes takes on its device, ring and actor windows (nothing is allocated)."""
        return tensor_nbytes(cls(capacity, seq_len, overlap, n_envs, obs_size, state_shapes, torch.device("meta")))

    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, done: torch.Tensor,
            episode_start: torch.Tensor, state: State) -> None:
        """Append one step of all N envs; ``state`` is the memory the actor stepped from (before any reset)."""
        self.store(self.position, obs, action, reward, done, episode_start, state)
        self.advance(1)

    def window_rows(self, steps: int) -> list[int]:
        """The window row each of the next ``steps`` steps is stored in (host arithmetic, from ``position``)."""
        rows, t = [], self.position
        for _ in range(steps):
            rows.append(t)
            t = t + 1 if t + 1 < self.seq_len else self.overlap
        return rows

    def store(self, t: int, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, done: torch.Tensor,
              episode_start: torch.Tensor, state: State) -> None:
        """The device work of one step at window row ``t`` (from :meth:`window_rows`): the row, and where it
        fills the window, the ring write and the slide. Changes no host counter (:meth:`advance` does)."""
        for window, s in zip(self.w_states, state, strict=True):
            window[t] = s
        observations.assign(self.w_obs, t, obs)
        self.w_actions[t], self.w_rewards[t] = action, reward
        self.w_dones[t], self.w_starts[t] = done, episode_start
        if t == self.seq_len - 1:
            self._write()
            keep = self.overlap
            for window in (*observations.leaves(self.w_obs), self.w_actions, self.w_rewards, self.w_dones,
                           self.w_starts, *self.w_states):
                window[:keep] = window[self.seq_len - keep:].clone()

    def advance(self, steps: int) -> None:
        """The host's counters after ``steps`` stored steps (at the rows :meth:`window_rows` gave them):
        the window position is the row of the step after them, and each full window went into the ring."""
        *rows, self.position = self.window_rows(steps + 1)
        for _ in range(rows.count(self.seq_len - 1)):
            self.next_slot = (self.next_slot + self.n_envs) % self.capacity
            self.size = min(self.size + self.n_envs, self.capacity)

    def _write(self) -> None:
        """All N windows into the ring at once (slots wrap around), at the device's ``slot_base``."""
        n = self.n_envs
        slots = (self.slot_base + torch.arange(n, device=self.device)) % self.capacity
        observations.assign(self.obs, (slice(None), slots), self.w_obs)
        self.actions[:, slots], self.rewards[:, slots] = self.w_actions, self.w_rewards
        self.dones[:, slots], self.episode_starts[:, slots] = self.w_dones, self.w_starts
        for ring, window in zip(self.states, self.w_states, strict=True):
            ring[:, slots] = window[0] if self.store_state else torch.zeros_like(window[0])
        self.env_ids[slots] = torch.arange(n, device=self.device)
        self.priorities[slots] = self.max_priority
        self.slot_base.copy_((self.slot_base + n) % self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator, alpha: float | None = None,
               beta: float = 0.0) -> dict[str, Any]:
        """``batch_size`` sequences: uniform, or proportional to priority**alpha with IS weights."""
        slots, weights = self.sample_slots(batch_size, generator, alpha, beta)
        slots = slots.to(self.device)
        return {"slots": slots, "weights": weights, **self.gather(slots)}

    def sample_slots(self, batch_size: int, generator: torch.Generator, alpha: float | None = None,
                     beta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` slots drawn on the host's ``generator`` (uniform, or by priority**alpha) and their
        importance-sampling weights (ones when uniform); slots on the CPU when uniform, weights on the device."""
        if alpha is None:
            slots = torch.randint(self.size, (batch_size,), generator=generator)
            return slots, torch.ones(batch_size, device=self.device)
        probs = self.priorities[: self.size].clamp_min(1e-6) ** alpha
        probs = probs / probs.sum()
        slots = torch.multinomial(probs.cpu(), batch_size, replacement=True, generator=generator).to(self.device)
        weights = (self.size * probs[slots]) ** (-beta)
        return slots, weights / weights.max()

    def gather(self, slots: torch.Tensor) -> dict[str, Any]:
        """The sequences in ``slots`` (a device tensor): pure device work, recordable in a CUDA graph."""
        return {
            "obs": observations.take(self.obs, (slice(None), slots)),
            "actions": self.actions[:, slots],
            "rewards": self.rewards[:, slots],
            "dones": self.dones[:, slots],
            "episode_starts": self.episode_starts[:, slots],
            "initial_state": tuple(s[:, slots] for s in self.states),
        }

    _TENSORS = ("obs", "actions", "rewards", "dones", "episode_starts", "env_ids", "priorities", "max_priority",
                "w_obs", "w_actions", "w_rewards", "w_dones", "w_starts")
    _COUNTERS = ("next_slot", "size", "position")

    def state_dict(self) -> dict[str, Any]:
        """The replay's contents and positions (for training checkpoints; as large as the replay)."""
        return {"shape": [self.capacity, self.seq_len, self.overlap, self.n_envs],
                **{name: getattr(self, name) for name in (*self._TENSORS, *self._COUNTERS)},
                "states": list(self.states), "w_states": list(self.w_states)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Fill this replay (built with the same sizes) from :meth:`state_dict`'s output."""
        shape = [self.capacity, self.seq_len, self.overlap, self.n_envs]
        if state["shape"] != shape:
            raise ValueError(f"the saved replay has capacity, seq_len, overlap, n_envs {state['shape']}, "
                             f"this one {shape}")
        pairs = [pair for name in self._TENSORS
                 for pair in zip(observations.leaves(getattr(self, name)), observations.leaves(state[name]),
                                 strict=True)]
        pairs += list(zip(self.states, state["states"], strict=True))
        pairs += list(zip(self.w_states, state["w_states"], strict=True))
        for mine, saved in pairs:
            if mine.shape != saved.shape or mine.dtype != saved.dtype:
                raise ValueError(f"a saved replay tensor is {saved.dtype} {tuple(saved.shape)}, "
                                 f"expected {mine.dtype} {tuple(mine.shape)}")
        for mine, saved in pairs:
            mine.copy_(saved)
        for name in self._COUNTERS:
            setattr(self, name, state[name])
        self.slot_base.fill_(self.next_slot)

    def update_priorities(self, slots: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set the sampled slots' priorities (R2D2's mix of max and mean |TD error|)."""
        self.priorities[slots] = priorities.detach()
        self.max_priority.copy_(torch.maximum(self.max_priority, priorities.detach().max()))  # in place: graph-safe
