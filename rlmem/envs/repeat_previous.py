"""RepeatPrevious: name the symbol shown k steps ago (POPGym's RepeatPrevious, batched in torch)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem.checks import check_int, check_positive_int, is_int
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.levels import make_levels


class RepeatPrevious(TorchVecEnv):
    """Name the symbol that was shown ``k`` steps earlier.

    Probes a fixed-lag memory: the agent must hold the last ``k`` symbols in order.

    ## Action space
    ``Discrete(num_symbols)``: the symbol the agent names.

    ## Observation space
    ``Box(0, 1, (num_symbols,), float32)``: a one-hot of the symbol shown at this step,
    drawn uniformly at random each step.

    ## Rewards
    At step ``t >= k`` the action is compared with the symbol shown at step ``t - k``:
    ``+1/(length - k)`` if equal, ``-1/(length - k)`` otherwise; steps before ``k`` give 0.
    A perfect episode returns 1.0; a uniformly random policy returns ``2/num_symbols - 1``
    in expectation (-0.5 with 4 symbols).

    ## Episode end
    Terminated after ``length`` steps. Never truncated.

    ## Levels
    Easy ``k=4, length=52``; Medium ``k=32, length=104``; Hard ``k=64, length=156``
    (the ``LEVELS`` table, from which the classes ``RepeatPreviousEasy`` etc. are made).
    """

    can_truncate = False
    LEVELS = {"Easy": {"k": 4, "length": 52}, "Medium": {"k": 32, "length": 104}, "Hard": {"k": 64, "length": 156}}
    lag_parameter = "k"
    gap_parameter = "k"

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        *,
        k: int = 4,
        length: int = 52,
        num_symbols: int = 4,
    ) -> None:
        length = check_positive_int("length", length)
        if not is_int(k) or not 0 <= k < length:
            raise ValueError(f"k must be an integer with 0 <= k < length ({length}), got {k!r}")
        num_symbols = check_int("num_symbols", num_symbols, 2)
        super().__init__(num_envs, device, seed, check_actions)
        self.k, self.length, self.num_symbols = int(k), length, int(num_symbols)
        self.max_episode_steps = length
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (self.num_symbols,), np.float32)
        self.single_action_space = gym.spaces.Discrete(self.num_symbols)
        # Ring buffer of the last k+1 symbols of every env, indexed by a batch-wide step counter.
        # Column c(g) = g % (k+1) holds the symbol shown at batch step g; at step g the target
        # (shown k steps earlier) sits in column c(g+1), the column step g+1 overwrites. An env
        # only reads the target once it is k steps into its episode, so it never sees a symbol
        # of its previous episode. The counter is a device tensor, not a Python int, so a step
        # holds no state outside its tensors and a CUDA graph of it replays correctly.
        self.history = torch.zeros(self.num_envs, self.k + 1, dtype=torch.int64, device=self.device)
        self.step_count = torch.zeros(1, dtype=torch.int64, device=self.device)
        self._reward_scale = 1.0 / (self.length - self.k)

    def _draw(self) -> torch.Tensor:
        return torch.randint(
            self.num_symbols, (self.num_envs,), generator=self.generator, device=self.device
        )

    def _column(self, offset: int = 0) -> torch.Tensor:
        """The ring column of batch step ``step_count + offset``, as a one-element index tensor."""
        return (self.step_count + offset) % (self.k + 1)

    def _symbols(self, column: torch.Tensor) -> torch.Tensor:
        return self.history.index_select(1, column).squeeze(1)

    def _reset_where(self, mask: torch.Tensor) -> None:
        column = self._column()
        fresh = torch.where(mask, self._draw(), self._symbols(column))
        self.history.index_copy_(1, column, fresh.unsqueeze(1))

    def _observe(self) -> torch.Tensor:
        return self._one_hot(self._symbols(self._column()), self.num_symbols)

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.elapsed_steps
        column = self._column(1)
        target = self._symbols(column)  # the symbol shown k steps ago
        reward = torch.where(actions == target, self._reward_scale, -self._reward_scale)
        reward = reward * (t >= self.k)
        self.history.index_copy_(1, column, self._draw().unsqueeze(1))  # the symbol shown at the next step
        self.step_count.add_(1)
        terminated = t >= self.length - 1
        return reward, terminated, torch.zeros_like(terminated)

    def chance_return(self) -> float:
        """Each scored step names one of ``num_symbols`` symbols blind: ``2/num_symbols - 1``."""
        return 2 / self.num_symbols - 1

    def lag_kwargs(self, lag: int) -> dict[str, Any]:
        """``k=lag`` with this env's ``length - k`` and ``num_symbols``."""
        return {"k": lag, "length": lag + self.length - self.k, "num_symbols": self.num_symbols}

    @staticmethod
    def recall_accuracy(mean_return: float) -> float:
        """Every scored step gives ``+-1/(length - k)``: the fraction right is ``(R + 1) / 2``."""
        return (mean_return + 1) / 2

    def chance_accuracy(self) -> float:
        """A blind guess is right once in ``num_symbols``."""
        return 1 / self.num_symbols

    def oracle_actions(self) -> torch.Tensor:
        """The symbol shown ``k`` steps ago (read from the ring; any action before step ``k``)."""
        return self._symbols(self._column(1))

    def load_state_dict(self, state: dict) -> None:
        """As :meth:`TorchVecEnv.load_state_dict`; also reads states saved when the counter was a Python int."""
        if "_step_count" in state.get("attributes", {}):
            state = {**state, "attributes": {k: v for k, v in state["attributes"].items() if k != "_step_count"},
                     "tensors": {**state["tensors"],
                                 "step_count": torch.tensor([state["attributes"]["_step_count"]], dtype=torch.int64)}}
        super().load_state_dict(state)


RepeatPreviousEasy, RepeatPreviousMedium, RepeatPreviousHard = make_levels(RepeatPrevious)
