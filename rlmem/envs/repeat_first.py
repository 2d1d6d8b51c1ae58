"""RepeatFirst: name the first symbol of the episode (POPGym's RepeatFirst, batched in torch)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem.checks import check_int, check_positive_int
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.levels import make_levels


class RepeatFirst(TorchVecEnv):
    """Name the symbol that was shown at the first step of the episode.

    Probes a long-lived single memory: the agent must store one symbol at step 0 and hold it,
    unchanged, against a stream of distractors for the whole episode.

    ## Action space
    ``Discrete(num_symbols)``: the symbol the agent names.

    ## Observation space
    ``Box(0, 1, (num_symbols,), float32)``: a one-hot of the symbol shown at this step,
    drawn uniformly at random each step (step 0 shows the symbol to remember).

    ## Rewards
    At every step ``t`` (step 0 included) the action is compared with the symbol shown at
    step 0: ``+1/length`` if equal, ``-1/length`` otherwise. A perfect episode returns 1.0;
    a uniformly random policy returns ``2/num_symbols - 1`` in expectation (-0.5 with 4
    symbols).

    ## Episode end
    Terminated after ``length`` steps. Never truncated.

    ## Levels
    Easy ``length=52``; Medium ``length=416``; Hard ``length=832`` (the ``LEVELS`` table, from
    which the classes ``RepeatFirstEasy`` etc. are made).
    """

    can_truncate = False
    LEVELS = {"Easy": {"length": 52}, "Medium": {"length": 416}, "Hard": {"length": 832}}
    gap_parameter = "length"  # the symbol to name was shown at step 0: the last step needs it length - 1 steps later

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        *,
        length: int = 52,
        num_symbols: int = 4,
    ) -> None:
        length = check_positive_int("length", length)
        num_symbols = check_int("num_symbols", num_symbols, 2)
        super().__init__(num_envs, device, seed, check_actions)
        self.length, self.num_symbols = length, int(num_symbols)
        self.max_episode_steps = length
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (self.num_symbols,), np.float32)
        self.single_action_space = gym.spaces.Discrete(self.num_symbols)
        #: The symbol shown at step 0 (the target) and the symbol shown now, per env.
        self.first = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self.current = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._reward_scale = 1.0 / self.length

    def _draw(self) -> torch.Tensor:
        return torch.randint(
            self.num_symbols, (self.num_envs,), generator=self.generator, device=self.device
        )

    def _reset_where(self, mask: torch.Tensor) -> None:
        first = self._draw()
        self.first = torch.where(mask, first, self.first)
        self.current = torch.where(mask, first, self.current)

    def _observe(self) -> torch.Tensor:
        return self._one_hot(self.current, self.num_symbols)

    def chance_return(self) -> float:
        """Each step names one of ``num_symbols`` symbols blind: ``2/num_symbols - 1``."""
        return 2 / self.num_symbols - 1

    def gap_kwargs(self, gap: int) -> dict[str, Any]:
        """``length=gap`` with this env's ``num_symbols``."""
        return {"length": gap, "num_symbols": self.num_symbols}

    def oracle_actions(self) -> torch.Tensor:
        """The symbol shown at step 0."""
        return self.first

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sign = (actions == self.first).to(torch.float32) * 2.0 - 1.0
        reward = sign * self._reward_scale
        self.current = self._draw()
        terminated = self.elapsed_steps + 1 >= self.length
        return reward, terminated, torch.zeros_like(terminated)


RepeatFirstEasy, RepeatFirstMedium, RepeatFirstHard = make_levels(RepeatFirst)
