"""Device-resident rollout storage for recurrent on-policy agents.

A rollout is ``T`` steps of ``N`` envs, time-major ``[T, N, ...]``, plus the memory state at
its first step; minibatches are whole env columns, so every sequence stays intact and the
memory can be unrolled over it from that stored state.
"""

from __future__ import annotations

import torch

from rlmem.memory import State


class RolloutBuffer:
    """``T x N`` transitions on one device, with GAE (truncated episodes bootstrapped by the caller)."""

    def __init__(self, n_steps: int, n_envs: int, obs_size: int, action_shape: tuple[int, ...],
                 action_dtype: torch.dtype, device: torch.device) -> None:
        t, n = n_steps, n_envs
        self.n_steps, self.n_envs = n_steps, n_envs

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        self.obs = zeros(t, n, obs_size)
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
        self.initial_state: State = ()

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
        self.returns = self.advantages + self.values

    def columns(self, envs: torch.Tensor) -> dict[str, torch.Tensor | State]:
        """The whole sequences of the env columns ``envs`` (a minibatch)."""
        return {
            "obs": self.obs[:, envs],
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
