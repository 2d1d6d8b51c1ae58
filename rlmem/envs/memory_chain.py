"""MemoryChain: recall a queried bit of the step-0 context (bsuite's MemoryChain, batched in torch)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem.checks import check_positive_int
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.levels import make_levels


class MemoryChain(TorchVecEnv):
    """Name the bit of the step-0 context that the last step's query points at.

    Probes memory length with a single sparse reward: ``num_bits`` context bits are shown
    once, at step 0, and only at the last step is the agent told which one it is asked for,
    so it must carry all of them across ``memory_length - 1`` blank steps.

    ## Action space
    ``Discrete(2)``: the bit the agent names.

    ## Observation space
    ``Box(-1, 1, (1 + 2 * num_bits,), float32)``, laid out as
    ``[time left, query one-hot (num_bits), context (num_bits)]``:

    * time left is ``1 - t/memory_length`` at step ``t`` (1.0 at step 0);
    * the query one-hot is shown only at the last step ``t = memory_length - 1``, zeros before;
    * the context bits are shown as ``+1``/``-1`` (bit 1/0) only at step 0, zeros after.

    Context bits and the query index are drawn uniformly at random at the start of each
    episode.

    ## Rewards
    At the last step ``+1`` if the action equals the queried context bit, ``-1`` otherwise;
    every earlier step gives 0. A perfect episode returns 1.0; a uniformly random policy
    returns 0 in expectation.

    ## Episode end
    Terminated after ``memory_length`` steps. Never truncated.

    ## Levels
    Easy ``memory_length=10, num_bits=2``; Medium ``memory_length=30, num_bits=4``;
    Hard ``memory_length=100, num_bits=8`` (the ``LEVELS`` table, from which the classes
    ``MemoryChainEasy`` etc. are made).
    """

    can_truncate = False
    LEVELS = {"Easy": {"memory_length": 10, "num_bits": 2}, "Medium": {"memory_length": 30, "num_bits": 4},
              "Hard": {"memory_length": 100, "num_bits": 8}}
    lag_parameter = "memory_length"
    gap_parameter = "memory_length"

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        *,
        memory_length: int = 10,
        num_bits: int = 2,
    ) -> None:
        memory_length = check_positive_int("memory_length", memory_length)
        num_bits = check_positive_int("num_bits", num_bits)
        super().__init__(num_envs, device, seed, check_actions)
        self.memory_length, self.num_bits = memory_length, num_bits
        self.max_episode_steps = memory_length
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (1 + 2 * num_bits,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        #: The context bits (0/1) and the queried index, per env.
        self.context = torch.zeros(self.num_envs, num_bits, dtype=torch.int64, device=self.device)
        self.query = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)

    def chance_return(self) -> float:
        """One blind answer per episode, +1 or -1 with even odds: 0."""
        return 0.0

    def lag_kwargs(self, lag: int) -> dict[str, Any]:
        """``memory_length=lag`` with this env's ``num_bits``."""
        return {"memory_length": lag, "num_bits": self.num_bits}

    @staticmethod
    def recall_accuracy(mean_return: float) -> float:
        """One answer per episode, +1 or -1: the fraction right is ``(R + 1) / 2``."""
        return (mean_return + 1) / 2

    def chance_accuracy(self) -> float:
        """A blind bit is right half the time."""
        return 0.5

    def probe_labels(self, obs: torch.Tensor, episode_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The context bits as one class (bit i weighs ``2**i``), read where they are shown: at the
        episode's first step (the layout ``[time left, query (num_bits), context (num_bits)]``)."""
        bits = (obs[..., 1 + self.num_bits:] > 0).long()
        weights = 2 ** torch.arange(self.num_bits, device=obs.device)
        return (bits * weights).sum(-1), episode_step == 0, "the context bits shown at the episode's first step"

    def oracle_actions(self) -> torch.Tensor:
        """The queried context bit (only the last step's answer is scored)."""
        return self.context.gather(1, self.query.unsqueeze(1)).squeeze(1)

    def _reset_where(self, mask: torch.Tensor) -> None:
        context = torch.randint(
            2, (self.num_envs, self.num_bits), generator=self.generator, device=self.device
        )
        query = torch.randint(
            self.num_bits, (self.num_envs,), generator=self.generator, device=self.device
        )
        self.context = torch.where(mask.unsqueeze(1), context, self.context)
        self.query = torch.where(mask, query, self.query)

    def _observe(self) -> torch.Tensor:
        t = self.elapsed_steps
        time_left = 1.0 - t.to(torch.float32) / self.memory_length
        is_last = (t == self.memory_length - 1).unsqueeze(1)
        is_first = (t == 0).unsqueeze(1)
        query = self._one_hot(self.query, self.num_bits) * is_last
        context = (self.context.to(torch.float32) * 2.0 - 1.0) * is_first
        return torch.cat((time_left.unsqueeze(1), query, context), dim=1)

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        target = self.context.gather(1, self.query.unsqueeze(1)).squeeze(1)
        sign = (actions == target).to(torch.float32) * 2.0 - 1.0
        terminated = self.elapsed_steps + 1 >= self.memory_length
        reward = torch.where(terminated, sign, torch.zeros_like(sign))
        return reward, terminated, torch.zeros_like(terminated)


MemoryChainEasy, MemoryChainMedium, MemoryChainHard = make_levels(MemoryChain)
