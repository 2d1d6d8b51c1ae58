"""PassiveTMaze: recall a goal side shown once at the start (Ni et al. 2023's passive T-maze, batched in torch)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem.checks import check_positive_int
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.levels import make_levels


class PassiveTMaze(TorchVecEnv):
    """Turn towards the goal side that was shown only at the start of a long corridor.

    The passive T-maze of Ni et al. (2023), "When Do Transformers Shine in RL? Decoupling
    Memory from Credit Assignment", in its simplest memory-only form: the agent is carried
    along the corridor one cell per step whatever it does, so the task probes how long a
    single bit can be held, not exploration.

    ## Action space
    ``Discrete(2)``: 0 = turn up, 1 = turn down. Ignored in the corridor (steps
    ``0 .. corridor_length - 1``); at the junction (step ``corridor_length``) it is the turn.

    ## Observation space
    ``Box(0, 1, (3,), float32)`` = ``[goal is up, goal is down, at junction]``. At step 0
    the first two entries are a one-hot of the goal side, drawn uniformly at reset; in the
    corridor the observation is all zeros; at the junction only the third entry is 1.

    ## Rewards
    ``+1`` for the turn at the junction if it matches the goal side, 0 otherwise; every
    corridor step gives 0. A perfect episode returns 1.0; a uniformly random policy (or any
    policy without memory) returns 0.5 in expectation.

    ## Episode end
    Terminated by the turn at the junction, so every episode lasts ``corridor_length + 1``
    steps. Never truncated.

    ## Levels
    Easy ``corridor_length=10``; Medium ``corridor_length=100``; Hard ``corridor_length=400``
    (the ``LEVELS`` table, from which the classes ``PassiveTMazeEasy`` etc. are made).
    """

    can_truncate = False
    LEVELS = {"Easy": {"corridor_length": 10}, "Medium": {"corridor_length": 100}, "Hard": {"corridor_length": 400}}
    lag_parameter = "corridor_length"
    gap_parameter = "corridor_length"

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        *,
        corridor_length: int = 10,
    ) -> None:
        corridor_length = check_positive_int("corridor_length", corridor_length)
        super().__init__(num_envs, device, seed, check_actions)
        self.corridor_length = corridor_length
        self.max_episode_steps = corridor_length + 1
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        #: The goal side of each env's current episode: 0 = up, 1 = down.
        self.goal = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)

    def chance_return(self) -> float:
        """A blind turn is right half the time: 0.5."""
        return 0.5

    def lag_kwargs(self, lag: int) -> dict[str, Any]:
        """``corridor_length=lag`` (the task's only setting)."""
        return {"corridor_length": lag}

    @staticmethod
    def recall_accuracy(mean_return: float) -> float:
        """One turn per episode, rewarded 1 or 0: the return is the fraction right."""
        return mean_return

    def chance_accuracy(self) -> float:
        """A blind turn is right half the time."""
        return 0.5

    def probe_labels(self, obs: torch.Tensor, episode_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The goal side (0 up, 1 down), read where it is shown: at the episode's first step."""
        return obs[..., :2].argmax(-1), episode_step == 0, "the goal side shown at the episode's first step"

    def oracle_actions(self) -> torch.Tensor:
        """Turn towards the goal (corridor actions are ignored)."""
        return self.goal

    def _reset_where(self, mask: torch.Tensor) -> None:
        new_goal = torch.randint(2, (self.num_envs,), generator=self.generator, device=self.device)
        self.goal = torch.where(mask, new_goal, self.goal)

    def _observe(self) -> torch.Tensor:
        t = self.elapsed_steps
        at_start = (t == 0).to(torch.float32)
        obs = torch.stack(
            (
                at_start * (self.goal == 0).to(torch.float32),
                at_start * (self.goal == 1).to(torch.float32),
                (t == self.corridor_length).to(torch.float32),
            ),
            dim=1,
        )
        return obs

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        at_junction = self.elapsed_steps >= self.corridor_length
        reward = (at_junction & (actions == self.goal)).to(torch.float32)
        return reward, at_junction, torch.zeros_like(at_junction)


PassiveTMazeEasy, PassiveTMazeMedium, PassiveTMazeHard = make_levels(PassiveTMaze)
