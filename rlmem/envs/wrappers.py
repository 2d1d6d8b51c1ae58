"""POMDP wrappers: make any gymnasium ``Env`` partially observable.

Most classic control and locomotion tasks are *fully* observable: the current observation
is a Markov state, so a feed-forward policy is enough and a recurrent one has nothing to
remember. These wrappers remove or corrupt information in the observation so that the
agent has to integrate it over time, turning a fully observable task into a memory task:

* :class:`MaskObservation` hides chosen entries (e.g. CartPole's velocities, which must
  then be inferred from successive positions).
* :class:`FlickerObservation` blanks the whole observation at random steps (the agent must
  carry its state estimate through the blank frames).
* :class:`ObservationNoise` adds Gaussian noise (the agent must filter over time).
* :class:`PreviousActionReward` appends the previous action and reward, the usual extra
  input of recurrent agents (RL^2, R2D2, POPGym baselines).

All wrappers are ordinary :class:`gymnasium.Wrapper` subclasses that accept an
environment whose observation space is a 1-D :class:`gymnasium.spaces.Box` (wrap other
spaces in :class:`gymnasium.wrappers.FlattenObservation` first) and update
``observation_space`` accordingly. They record their constructor arguments
(:class:`gymnasium.utils.RecordConstructorArgs`), so ``env.spec`` can rebuild them.

Randomness (flicker, noise) comes from the wrapper's own :class:`numpy.random.Generator`,
reseeded on ``reset(seed=s)`` from ``np.random.default_rng([s, salt])`` with a fixed
per-class salt: it is reproducible, and it never touches the inner environment's
``np_random``, so the underlying trajectory is the same with or without the wrapper.
Before the first seeded reset the generator is drawn from fresh OS entropy.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "FlickerObservation",
    "MaskObservation",
    "ObservationNoise",
    "PreviousActionReward",
]

Obs = np.ndarray
StepResult = tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]

# Fixed salts mixed into the reset seed, one per randomised wrapper, so their streams differ
# from each other and from anything else seeded with the bare seed.
_FLICKER_SALT = 0x466C_6963  # "Flic"
_NOISE_SALT = 0x4E6F_6973  # "Nois"


def _check_box_obs(env: gym.Env, wrapper: str) -> spaces.Box:
    """Return the env's observation space if it is a 1-D Box, else raise a ValueError."""
    space = env.observation_space
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"{wrapper} needs a 1-D Box observation space, got {space}; wrap the env in "
            "gymnasium.wrappers.FlattenObservation first to flatten other spaces."
        )
    return space


def _float_dtype(space: spaces.Box) -> np.dtype:
    """The space's dtype if it is floating point, else float32 (for wrappers that do arithmetic)."""
    dtype = np.dtype(space.dtype)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)


def _fill_value(space: spaces.Box) -> np.ndarray:
    """Per-entry "blank" value: 0 where 0 lies in [low, high], else the bound nearest to 0."""
    return np.clip(np.zeros(space.shape), space.low, space.high).astype(space.dtype)


class _SeededRng:
    """Mixin: the wrapper's own generator, seeded on ``reset(seed=s)`` with a per-class salt."""

    _salt: int
    _wrapper_rng: np.random.Generator | None = None

    def _seed_rng(self, seed: int | None) -> None:
        if seed is not None:
            self._wrapper_rng = np.random.default_rng([int(seed), self._salt])

    @property
    def wrapper_rng(self) -> np.random.Generator:
        """The generator this wrapper draws from (fresh OS entropy until a seeded reset)."""
        if self._wrapper_rng is None:
            self._wrapper_rng = np.random.default_rng()
        return self._wrapper_rng


class MaskObservation(
    gym.ObservationWrapper[np.ndarray, Any, np.ndarray], gym.utils.RecordConstructorArgs
):
    """Hide the observation entries at ``indices`` (e.g. ``[1, 3]``: CartPole's velocities).

    ``mode="remove"`` drops them (the Box shrinks to the kept entries); ``mode="zero"`` keeps
    the shape and writes 0 there (or, for an entry whose bounds exclude 0, the bound nearest
    to 0, so the observation stays inside the space). The dtype of the env's Box is kept.
    """

    MODES = ("remove", "zero")

    def __init__(self, env: gym.Env, indices: Sequence[int], mode: str = "remove") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, indices=indices, mode=mode)
        gym.ObservationWrapper.__init__(self, env)
        space = _check_box_obs(env, type(self).__name__)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        size = space.shape[0]
        self.indices: tuple[int, ...] = self._check_indices(indices, size)
        self.mode = mode
        if mode == "remove":
            if len(self.indices) == size:
                raise ValueError(
                    f"mode='remove' with indices {list(self.indices)} would remove all {size} "
                    "observation entries; keep at least one (or use mode='zero')"
                )
            hidden = set(self.indices)
            self.kept_indices: tuple[int, ...] = tuple(i for i in range(size) if i not in hidden)
            keep = np.asarray(self.kept_indices, dtype=np.intp)
            self._keep = keep
            self.observation_space = spaces.Box(
                low=space.low[keep], high=space.high[keep], dtype=space.dtype
            )
        else:
            hidden = set(self.indices)
            self.kept_indices = tuple(i for i in range(size) if i not in hidden)
            self._hide = np.asarray(self.indices, dtype=np.intp)
            self._fill = _fill_value(space)[self._hide]
            self.observation_space = spaces.Box(
                low=space.low.copy(), high=space.high.copy(), dtype=space.dtype
            )

    @staticmethod
    def _check_indices(indices: Any, size: int) -> tuple[int, ...]:
        if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray)):
            raise ValueError(f"indices must be a sequence of ints, got {indices!r}")
        checked: list[int] = []
        for index in list(indices):
            if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral):
                raise ValueError(f"indices must be ints, got {index!r} in {indices!r}")
            index = int(index)
            if not 0 <= index < size:
                raise ValueError(
                    f"index {index} is out of range for an observation of size {size} "
                    f"(valid indices: 0..{size - 1})"
                )
            if index in checked:
                raise ValueError(f"indices must be unique, index {index} appears more than once")
            checked.append(index)
        if not checked:
            raise ValueError(f"indices must name at least one observation entry, got {indices!r}")
        return tuple(checked)

    def observation(self, observation: Obs) -> Obs:
        """Return a new array with the hidden entries removed or blanked."""
        obs = np.asarray(observation, dtype=self.observation_space.dtype)
        if self.mode == "remove":
            return obs[self._keep]  # fancy indexing: always a copy
        obs = obs.copy()
        obs[self._hide] = self._fill
        return obs


class FlickerObservation(
    _SeededRng, gym.Wrapper[np.ndarray, Any, np.ndarray, Any], gym.utils.RecordConstructorArgs
):
    """With probability ``p`` per step, replace the whole observation by a blank vector.

    The blank is 0 in every entry whose bounds contain 0, otherwise the bound nearest to 0
    (``clip(0, low, high)``), so it always lies in the observation space. The observation
    returned by ``reset`` is never blanked (as in POPGym-style flicker tasks), so every
    episode starts with one clean view. The observation space and dtype are unchanged.
    """

    _salt = _FLICKER_SALT

    def __init__(self, env: gym.Env, p: float) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, p=p)
        gym.Wrapper.__init__(self, env)
        space = _check_box_obs(env, type(self).__name__)
        if (
            isinstance(p, (bool, np.bool_))
            or not isinstance(p, numbers.Real)
            or not 0.0 <= float(p) <= 1.0  # also rejects NaN
        ):
            raise ValueError(f"p must be a probability in the range [0, 1], got {p!r}")
        self.p = float(p)
        self._blank = _fill_value(space)

    def _visible(self, observation: Obs) -> Obs:
        return np.array(observation, dtype=self.observation_space.dtype, copy=True)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset the env (and, given a seed, this wrapper's generator); the first view is clean."""
        self._seed_rng(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        return self._visible(obs), info

    def step(self, action: Any) -> StepResult:
        """Step the env and blank the observation with probability ``p``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.wrapper_rng.random() < self.p:
            return self._blank.copy(), reward, terminated, truncated, info
        return self._visible(obs), reward, terminated, truncated, info


class ObservationNoise(
    _SeededRng, gym.ObservationWrapper[np.ndarray, Any, np.ndarray], gym.utils.RecordConstructorArgs
):
    """Add zero-mean Gaussian noise of standard deviation ``std`` to every observation.

    ``std`` is a scalar or one value per observation entry (all >= 0). Entries with
    ``std > 0`` get unbounded Box bounds ``(-inf, inf)`` (noise can push them anywhere);
    entries with ``std == 0`` keep their bounds and are returned exactly. The reset
    observation is noisy too. Floating dtypes are kept; an integer Box becomes float32.
    """

    _salt = _NOISE_SALT

    def __init__(self, env: gym.Env, std: float | Sequence[float] | np.ndarray) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, std=std)
        gym.ObservationWrapper.__init__(self, env)
        space = _check_box_obs(env, type(self).__name__)
        size = space.shape[0]
        try:
            std_arr = np.asarray(std, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"std must be a number or a sequence of numbers, got {std!r}"
            ) from None
        if std_arr.ndim == 0:
            if not (std_arr >= 0 and np.isfinite(std_arr)):
                raise ValueError(f"std must be a finite number >= 0, got {std!r}")
            std_arr = np.full(size, float(std_arr))
        else:
            if std_arr.shape != (size,):
                raise ValueError(
                    f"std must be a scalar or have shape ({size},) (the observation size), "
                    f"got shape {std_arr.shape}: {std!r}"
                )
            bad = np.flatnonzero(~((std_arr >= 0) & np.isfinite(std_arr)))
            if bad.size:
                i = int(bad[0])
                raise ValueError(
                    f"std must be finite and >= 0, got std[{i}] = {float(std_arr[i])!r}"
                )
        self.std: np.ndarray = std_arr
        dtype = _float_dtype(space)
        noisy = std_arr > 0
        low = np.where(noisy, -np.inf, space.low).astype(dtype)
        high = np.where(noisy, np.inf, space.high).astype(dtype)
        self.observation_space = spaces.Box(low=low, high=high, dtype=dtype)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset the env (and, given a seed, this wrapper's generator); the first view is noisy."""
        self._seed_rng(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        return self.observation(obs), info

    def observation(self, observation: Obs) -> Obs:
        """Return ``observation + std * N(0, 1)`` as a new array of the space's dtype."""
        noise = self.wrapper_rng.standard_normal(self.std.shape) * self.std
        obs = np.asarray(observation, dtype=np.float64) + noise
        return obs.astype(self.observation_space.dtype)


class PreviousActionReward(
    gym.Wrapper[np.ndarray, Any, np.ndarray, Any], gym.utils.RecordConstructorArgs
):
    """Append the previous action and the previous reward to the observation.

    Layout: ``[obs, action_encoding, reward]``. The action encoding is a one-hot for
    ``Discrete`` (of ``action - start``), concatenated one-hots for ``MultiDiscrete``
    (flattened ``nvec`` order) and the flattened action for ``Box``; the reward is one float
    with bounds ``(-inf, inf)``. After ``reset`` both parts are zeros. For ``Box`` actions the
    recorded action is clipped to the action bounds and the appended bounds are widened to
    include 0, so the observation stays inside the space. Floating dtypes are kept; an
    integer observation Box becomes float32.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        space = _check_box_obs(env, type(self).__name__)
        action_space = env.action_space
        if isinstance(action_space, spaces.Discrete):
            act_low = np.zeros(int(action_space.n))
            act_high = np.ones(int(action_space.n))
        elif isinstance(action_space, spaces.MultiDiscrete):
            total = int(np.sum(action_space.nvec))
            act_low, act_high = np.zeros(total), np.ones(total)
            self._offsets = np.concatenate([[0], np.cumsum(action_space.nvec.ravel())[:-1]])
        elif isinstance(action_space, spaces.Box):
            act_low = np.minimum(action_space.low.ravel().astype(np.float64), 0.0)
            act_high = np.maximum(action_space.high.ravel().astype(np.float64), 0.0)
        else:
            raise ValueError(
                f"PreviousActionReward supports Discrete, MultiDiscrete and Box action spaces, "
                f"got {action_space}"
            )
        self.obs_size: int = space.shape[0]
        self.action_size: int = act_low.shape[0]
        dtype = _float_dtype(space)
        low = np.concatenate([space.low.astype(np.float64), act_low, [-np.inf]]).astype(dtype)
        high = np.concatenate([space.high.astype(np.float64), act_high, [np.inf]]).astype(dtype)
        self.observation_space = spaces.Box(low=low, high=high, dtype=dtype)

    def encode_action(self, action: Any) -> np.ndarray:
        """The action's encoding as appended to the observation (float64, ``action_size``)."""
        action_space = self.env.action_space
        encoded = np.zeros(self.action_size)
        if isinstance(action_space, spaces.Discrete):
            index = int(np.asarray(action).item()) - int(action_space.start)
            if not 0 <= index < self.action_size:
                raise ValueError(f"action {action!r} is not in {action_space}")
            encoded[index] = 1.0
        elif isinstance(action_space, spaces.MultiDiscrete):
            index = np.asarray(action, dtype=np.int64).ravel() - action_space.start.ravel()
            nvec = action_space.nvec.ravel()
            if index.shape != nvec.shape or np.any(index < 0) or np.any(index >= nvec):
                raise ValueError(f"action {action!r} is not in {action_space}")
            encoded[self._offsets + index] = 1.0
        else:
            flat = np.asarray(action, dtype=np.float64).ravel()
            if flat.shape != (self.action_size,):
                raise ValueError(f"action {action!r} does not have the shape of {action_space}")
            encoded[:] = np.clip(flat, action_space.low.ravel(), action_space.high.ravel())
        return encoded

    def _augment(self, obs: Obs, action_part: np.ndarray, reward: float) -> Obs:
        return np.concatenate(
            [np.asarray(obs, dtype=np.float64).ravel(), action_part, [reward]]
        ).astype(self.observation_space.dtype)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset the env; the appended action and reward are zeros."""
        obs, info = self.env.reset(seed=seed, options=options)
        return self._augment(obs, np.zeros(self.action_size), 0.0), info

    def step(self, action: Any) -> StepResult:
        """Step the env and append this step's action and reward to the new observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        augmented = self._augment(obs, self.encode_action(action), float(reward))
        return augmented, reward, terminated, truncated, info
