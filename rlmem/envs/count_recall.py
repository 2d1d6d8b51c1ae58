"""CountRecall: count the dealt cards of a queried value (POPGym's CountRecall, batched in torch)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlmem.checks import check_int, check_positive_int
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.levels import make_levels


class CountRecall(TorchVecEnv):
    """Say how many times the queried value has been dealt so far from a shuffled deck.

    Probes a counting memory: the agent must keep a running tally of every value, since any
    of them may be queried at any step.

    The deck holds ``deck_size`` cards, each of the ``num_values`` values appearing
    ``deck_size / num_values`` times, dealt one per step without replacement.

    ## Action space
    ``Discrete(deck_size // num_values + 1)``: the count the agent names, from 0 up to the
    number of copies of a value in the deck.

    ## Observation space
    ``Box(0, 1, (2 * num_values,), float32)``: a one-hot of the value of the card dealt at
    this step, followed by a one-hot of the query value, drawn uniformly at random from the
    ``num_values`` values each step (independently of the deck).

    ## Rewards
    At every step the action is compared with the number of cards of the query value dealt
    so far this episode, the card dealt at this step included: ``+1/(deck_size - 1)`` if
    equal, ``-1/(deck_size - 1)`` otherwise. A perfect episode returns 1.0; a uniformly
    random policy returns ``2/(deck_size // num_values + 1) - 1`` in expectation.

    ## Episode end
    Terminated after ``deck_size - 1`` steps (the first card is dealt at reset, one more
    after every step; the observation the episode ends on shows the last card). Never
    truncated.

    ## Levels
    Easy ``num_values=2, deck_size=52``; Medium ``num_values=4, deck_size=104``;
    Hard ``num_values=13, deck_size=208`` (the ``LEVELS`` table, from which the classes
    ``CountRecallEasy`` etc. are made).
    """

    can_truncate = False
    LEVELS = {"Easy": {"num_values": 2, "deck_size": 52}, "Medium": {"num_values": 4, "deck_size": 104},
              "Hard": {"num_values": 13, "deck_size": 208}}

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        *,
        num_values: int = 2,
        deck_size: int = 52,
    ) -> None:
        num_values = check_int("num_values", num_values, 2)
        deck_size = check_positive_int("deck_size", deck_size)
        if deck_size % int(num_values) != 0:
            raise ValueError(
                f"deck_size must be a positive multiple of num_values ({int(num_values)}), "
                f"got {deck_size!r}"
            )
        super().__init__(num_envs, device, seed, check_actions)
        self.num_values, self.deck_size = int(num_values), deck_size
        self.copies = deck_size // self.num_values
        self.length = deck_size - 1
        self.max_episode_steps = self.length
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (2 * self.num_values,), np.float32)
        self.single_action_space = gym.spaces.Discrete(self.copies + 1)
        shape = (self.num_envs, self.num_values)
        #: Cards of each value still in the deck, and dealt so far this episode, per env.
        self.remaining = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.dealt = torch.zeros(shape, dtype=torch.int64, device=self.device)
        #: The value of the card dealt at this step, and the query value, per env.
        self.current = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self.query = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._reward_scale = 1.0 / self.length

    def chance_return(self) -> float:
        """Each step names one of the ``deck_size // num_values + 1`` counts blind (the true one always among
        them): ``2/(deck_size // num_values + 1) - 1``."""
        return 2 / (self.deck_size // self.num_values + 1) - 1

    def oracle_actions(self) -> torch.Tensor:
        """How many cards of the query value have been dealt, the current card included."""
        return self.dealt.gather(1, self.query.unsqueeze(1)).squeeze(1)

    def _draw_query(self) -> torch.Tensor:
        return torch.randint(
            self.num_values, (self.num_envs,), generator=self.generator, device=self.device
        )

    def _draw_card(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one card per env from ``remaining``; return its value ``[N]`` and one-hot ``[N, V]``.

        A uniform position in the deck is matched against the cumulative counts, so each value
        comes up in proportion to its remaining cards. An env with an empty deck gets a zero
        one-hot (nothing is dealt).
        """
        total = self.remaining.sum(dim=1)
        u = torch.rand(
            self.num_envs, dtype=torch.float64, generator=self.generator, device=self.device
        )
        position = (u * total).to(torch.int64).clamp(min=0)
        position = torch.minimum(position, (total - 1).clamp(min=0))
        below = self.remaining.cumsum(dim=1) <= position.unsqueeze(1)
        value = below.sum(dim=1).clamp(max=self.num_values - 1)
        one_hot = F.one_hot(value, self.num_values) * (total > 0).unsqueeze(1)
        return value, one_hot

    def _reset_where(self, mask: torch.Tensor) -> None:
        full = torch.full_like(self.remaining, self.copies)
        self.remaining = torch.where(mask.unsqueeze(1), full, self.remaining)
        self.dealt = self.dealt.masked_fill(mask.unsqueeze(1), 0)
        value, one_hot = self._draw_card()
        one_hot = one_hot * mask.unsqueeze(1)
        self.remaining = self.remaining - one_hot
        self.dealt = self.dealt + one_hot
        self.current = torch.where(mask, value, self.current)
        self.query = torch.where(mask, self._draw_query(), self.query)

    def _observe(self) -> torch.Tensor:
        return torch.cat(
            (self._one_hot(self.current, self.num_values), self._one_hot(self.query, self.num_values)), dim=1
        )

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        count = self.dealt.gather(1, self.query.unsqueeze(1)).squeeze(1)
        sign = (actions == count).to(torch.float32) * 2.0 - 1.0
        reward = sign * self._reward_scale
        value, one_hot = self._draw_card()
        self.remaining = self.remaining - one_hot
        self.dealt = self.dealt + one_hot
        self.current = value
        self.query = self._draw_query()
        terminated = self.elapsed_steps + 1 >= self.length
        return reward, terminated, torch.zeros_like(terminated)


CountRecallEasy, CountRecallMedium, CountRecallHard = make_levels(CountRecall)
