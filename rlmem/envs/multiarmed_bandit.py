"""MultiarmedBandit: find the best arm of a fresh bandit each episode (POPGym's MultiarmedBandit, batched in torch)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rlmem.checks import check_int, check_positive_int
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.levels import make_levels


class MultiarmedBandit(TorchVecEnv):
    """Pull the arms of a Bernoulli bandit drawn afresh each episode; learn in context which pays best.

    Probes in-context learning: the agent must keep per-arm payout statistics in memory and
    trade exploration off against exploitation within a single episode.

    Each episode draws a payout probability ``p[i] ~ Uniform(0, 1)`` for every arm,
    kept in ``self.arm_probs`` (``[N, num_arms]`` float32).

    ## Action space
    ``Discrete(num_arms)``: the arm to pull.

    ## Observation space
    ``Box(0, 1, (num_arms + 1,), float32)`` = ``one_hot(previous action) ++ [previous payout]``:
    the arm pulled at the previous step and its sampled Bernoulli(``p[a]``) payout, 0 or 1.
    All zeros at step 0.

    ## Rewards
    The reward is **not** the sampled payout: it is the pulled arm's *expected* payout,
    normalised by what the best arm would have paid, ``p[a_t] / (max(p) * length)``.
    An oracle that always pulls ``argmax(p)`` returns exactly 1.0, and ``1 - return`` is
    exactly the episode's (normalised, expected) regret; the agent still has to learn from
    the noisy sampled payouts it sees in its observation. A uniformly random policy returns
    ``mean(p) / max(p)`` in expectation (about ``0.5 + 1/(2*num_arms)`` on average, over
    draws of ``p``).

    ## Episode end
    Terminated after ``length`` steps. Never truncated.

    ## Levels
    Easy ``num_arms=10, length=200``; Medium ``num_arms=20, length=400``;
    Hard ``num_arms=30, length=600`` (the ``LEVELS`` table, from which the classes
    ``MultiarmedBanditEasy`` etc. are made).
    """

    can_truncate = False
    LEVELS = {"Easy": {"num_arms": 10, "length": 200}, "Medium": {"num_arms": 20, "length": 400},
              "Hard": {"num_arms": 30, "length": 600}}

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        *,
        num_arms: int = 10,
        length: int = 200,
    ) -> None:
        num_arms = check_int("num_arms", num_arms, 2)
        length = check_positive_int("length", length)
        super().__init__(num_envs, device, seed, check_actions)
        self.num_arms, self.length = int(num_arms), length
        self.max_episode_steps = length
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (self.num_arms + 1,), np.float32)
        self.single_action_space = gym.spaces.Discrete(self.num_arms)
        #: Payout probability of every arm in each env's current episode, ``[N, num_arms]``.
        self.arm_probs = torch.zeros(self.num_envs, self.num_arms, dtype=torch.float32, device=self.device)
        # The observation: one-hot of the previous pull and its sampled payout.
        self.last_pull = torch.zeros(
            self.num_envs, self.num_arms + 1, dtype=torch.float32, device=self.device
        )

    def chance_return(self) -> float:
        """``E[mean(p) / max(p)]`` over the draws of ``p``: exactly ``0.5 + 1/(2*num_arms)`` (given the
        best arm's payout, the others are uniform below it)."""
        return 0.5 + 1 / (2 * self.num_arms)

    def oracle_actions(self) -> torch.Tensor:
        """The arm with the best payout probability (the known best arm)."""
        return self.arm_probs.argmax(dim=1)

    def _reset_where(self, mask: torch.Tensor) -> None:
        # 1 - U[0, 1) is uniform on (0, 1]: the best arm always pays out with p > 0.
        fresh = 1.0 - torch.rand(
            self.num_envs, self.num_arms, generator=self.generator, device=self.device
        )
        rows = mask.unsqueeze(1)
        self.arm_probs = torch.where(rows, fresh, self.arm_probs)
        self.last_pull = torch.where(rows, torch.zeros_like(self.last_pull), self.last_pull)

    def _observe(self) -> torch.Tensor:
        return self.last_pull.clone()

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.arm_probs.gather(1, actions.unsqueeze(1)).squeeze(1)
        u = torch.rand(self.num_envs, generator=self.generator, device=self.device)
        payout = (u < p).to(torch.float32)
        self.last_pull = torch.cat(
            (self._one_hot(actions, self.num_arms), payout.unsqueeze(1)), dim=1
        )
        best = self.arm_probs.amax(dim=1)
        reward = p / (best * self.length)
        terminated = self.elapsed_steps + 1 >= self.length
        return reward, terminated, torch.zeros_like(terminated)


MultiarmedBanditEasy, MultiarmedBanditMedium, MultiarmedBanditHard = make_levels(MultiarmedBandit)
