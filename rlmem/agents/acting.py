"""Stepping an env batch with an agent: one helper for training, evaluation and the probes alike.

:func:`step_env` takes one step of the batch and does the bookkeeping every caller needs
(tensors on the agent's device, ``done``, the bootstrap mask of truncated episodes, the
returns and lengths of the episodes that ended); :func:`episode_sums` folds a step into the
running ``[sum of returns, sum of lengths, episodes]`` a learn loop logs. Both are pure tensor
work (nothing read to the host), so a rollout built on them can be recorded in a CUDA graph.

:class:`Actor` is an agent acting on a batch with its memory carried from step to step (the
previous action and reward too, for agents that take them): what ``evaluate`` and the probes
run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlmem import observations
from rlmem.observations import Obs


@dataclass
class Transition:
    """One step of an env batch, every tensor on the agent's device, ``[N, ...]``."""

    obs: Obs
    """The next observation (already the first of a new episode where one ended: same-step autoreset)."""
    reward: torch.Tensor
    """float32 rewards."""
    terminated: torch.Tensor
    truncated: torch.Tensor
    done: torch.Tensor
    """The episode ended at this step (terminated or truncated)."""
    bootstrap: torch.Tensor
    """Truncated and not terminated: the value of ``info["final_obs"]`` belongs to this step's target."""
    info: dict[str, Any]
    """The env's info (``final_obs``, ``episode``), as the env gave it (on the env's device)."""
    episode_return: torch.Tensor
    """Return of the episode that ended at this step (float64; valid where ``done``)."""
    episode_length: torch.Tensor
    """Length of the episode that ended at this step (int64; valid where ``done``)."""

    def final_obs(self) -> Obs:
        """The observations the ended episodes ended on (for bootstrapping), on the agent's device."""
        return observations.to(self.info["final_obs"], self.reward.device)


def step_env(env: Any, actions: torch.Tensor, device: torch.device) -> Transition:
    """Step ``env`` with ``actions`` (as the env takes them) and return the step on ``device``."""
    obs, reward, terminated, truncated, info = env.step(actions)
    terminated, truncated = terminated.to(device), truncated.to(device)
    episode = info["episode"]
    return Transition(obs=observations.to(obs, device), reward=reward.to(device).float(), terminated=terminated,
                      truncated=truncated, done=terminated | truncated, bootstrap=truncated & ~terminated, info=info,
                      episode_return=episode["r"].to(device), episode_length=episode["l"].to(device))


def new_episode_sums(device: torch.device) -> torch.Tensor:
    """Zeroed ``[sum of returns, sum of lengths, episodes]`` (float64) for :func:`episode_sums`."""
    return torch.zeros(3, dtype=torch.float64, device=device)


def episode_sums(step: Transition) -> torch.Tensor:
    """``[sum of returns, sum of lengths, count]`` of the episodes that ended at ``step`` (float64, no host read)."""
    done = step.done
    return torch.stack(((step.episode_return * done).sum(), (step.episode_length * done).sum().double(),
                        done.sum().double()))


class Actor:
    """An rlmem agent acting on ``n`` envs with its memory carried: zeroed where an episode starts.

    ``act`` gives the env's actions for a batch of observations; ``observe`` tells the actor
    what the step gave (the episode starts and, for agents that take them, the reward).
    """

    def __init__(self, agent: Any, n: int, deterministic: bool = True) -> None:
        self.agent, self.n, self.deterministic = agent, n, deterministic
        device = agent.device
        self.state = agent.initial_state(n)
        self.episode_start = torch.ones(n, dtype=torch.bool, device=device)
        self.prev_action = torch.zeros((n, *agent.action_space.shape), dtype=agent.action_dtype, device=device)
        self.prev_reward = torch.zeros(n, device=device)

    def act(self, obs: Obs, reset_memory: bool = False) -> torch.Tensor:
        """The env's actions for ``obs`` ``[n, ...]``; ``reset_memory`` zeroes every env's memory first."""
        start = torch.ones_like(self.episode_start) if reset_memory else self.episode_start
        action, self.state = self.agent.act(observations.to(obs, self.agent.device), self.state, start,
                                            self.prev_action, self.prev_reward, self.deterministic)
        self.prev_action = action
        return self.agent.env_action(action)

    def observe(self, step: Transition) -> None:
        """The step's outcome: episode starts for the next ``act``, and the reward it feeds back."""
        device = self.agent.device  # a no-op where the step is already there
        self.episode_start, self.prev_reward = step.done.to(device), step.reward.to(device)


__all__ = ["Actor", "Transition", "episode_sums", "new_episode_sums", "step_env"]
