"""What a gymnasium env (a user's own numpy env) must give rlmem, checked where it meets rlmem.

rlmem's own batched tasks are not checked per step: their step reads nothing back to the host. A
gymnasium env goes through :class:`~rlmem.envs.adapters.GymVectorEnvAdapter`, which checks

* at construction: spaces rlmem can encode (:mod:`rlmem.observations`' one rule: Box, Discrete,
  MultiDiscrete, MultiBinary and Dict / Tuple of those, a Text entry (or another space of strings) left
  out; not Graph, Sequence, OneOf or a Text alone) and act in (Box, Discrete, MultiDiscrete): :func:`check_spaces`;
* at each env copy's first reset and first step (:class:`CheckedEnv`, put around every copy
  :func:`rlmem.make_vec_env` builds): gymnasium's API (``reset`` gives ``(observation, info)``,
  ``step`` five values) and an observation of the declared structure, shape and dtype;
* at every step, on the host, one vectorised test of the batch: no nan or inf in the observations
  or rewards, Discrete observations in range (:func:`first_bad_row`).

Each failure is one :class:`EnvError` line naming the env, the space and what was received.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from rlmem.observations import unsupported_message

ACTIONS = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete)
"""Action spaces rlmem's agents act in."""


class EnvError(ValueError):
    """A gymnasium env returned what gymnasium's API or its own declared spaces do not allow."""


def env_name(env: Any) -> str | None:
    """How errors name an env: its id (quoted), else the name of the class or function that builds it
    (None for a lambda: the env it builds is named by its class instead)."""
    if isinstance(env, str):
        return repr(env)
    spec = getattr(env, "spec", None)
    if getattr(spec, "id", None):
        return repr(spec.id)
    func = getattr(env, "func", env)  # functools.partial
    name = getattr(func, "__name__", None)
    if name == "<lambda>":
        return None
    return name or type(env).__name__


def check_spaces(name: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse, naming the env and the space, spaces rlmem cannot encode (observations) or act in (actions)."""
    message = unsupported_message(observation_space, f"env {name}")
    if message is not None:
        raise EnvError(message)
    if not isinstance(action_space, ACTIONS):
        raise EnvError(f"env {name}: action space {action_space} is not supported; rlmem's agents act in "
                       "Discrete, MultiDiscrete and Box")


def describe(value: Any) -> str:
    """What a value is, for an error: ``ndarray (4,) float64``, ``int 3``, ``dict with keys ['a']``."""
    if isinstance(value, np.ndarray):
        return f"ndarray {tuple(value.shape)} {value.dtype}"
    if isinstance(value, Mapping):
        return f"{type(value).__name__} with keys {sorted(map(str, value))}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)} values"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"


def _integers(value: Any) -> np.ndarray | None:
    array = np.asarray(value)
    return array if np.issubdtype(array.dtype, np.integer) or array.dtype == bool else None


def mismatch(space: gym.Space, value: Any, where: str = "") -> str | None:
    """How ``value`` departs from ``space`` in structure, shape or dtype (as gymnasium's ``contains`` judges
    them, bounds aside); None when it fits. ``where`` names the part (``['key']``, ``[1]``)."""
    got = f"{describe(value)}{' at ' + where if where else ''}"
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(value, Mapping) or set(value) != set(space.spaces):
            return f"{got}, not a dict with keys {sorted(space.spaces)}"
        return next((m for key, s in space.spaces.items() if (m := mismatch(s, value[key], f"{where}[{key!r}]"))),
                    None)
    if isinstance(space, gym.spaces.Tuple):
        if not isinstance(value, (tuple, list)) or len(value) != len(space.spaces):
            return f"{got}, not a tuple of {len(space.spaces)}"
        return next((m for i, s in enumerate(space.spaces) if (m := mismatch(s, value[i], f"{where}[{i}]"))), None)
    if isinstance(space, gym.spaces.Box):
        if not isinstance(value, np.ndarray):  # a Python number or list: gymnasium casts it
            try:
                value = np.asarray(value, dtype=space.dtype)
            except (TypeError, ValueError):
                return f"{got}, not an array"
        elif not np.can_cast(value.dtype, space.dtype):
            return f"{got}: dtype {value.dtype} where the space holds {space.dtype}"
        if value.shape != space.shape:
            return f"{got}: shape {tuple(value.shape)} where the space has {space.shape}"
        return None
    if isinstance(space, gym.spaces.Discrete):
        array = _integers(value)
        if array is None or array.shape != ():
            return f"{got}, not an integer"
        if not int(space.start) <= int(array) < int(space.start) + int(space.n):
            return f"{got}: outside the space"
        return None
    if isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        array = _integers(value)
        if array is None:
            return f"{got}, not integers"
        if array.shape != space.shape:
            return f"{got}: shape {tuple(array.shape)} where the space has {space.shape}"
        return None
    return None


def first_bad_row(bad: np.ndarray) -> int | None:
    """The first env index whose row of ``bad`` ``[N, ...]`` has a True (None: none)."""
    rows = bad.reshape(bad.shape[0], -1).any(axis=1)
    return int(np.argmax(rows)) if rows.any() else None


class CheckedEnv(gym.Wrapper):
    """One env copy whose first reset and first step are checked against gymnasium's API and its spaces.

    The rest pass through unchecked (the adapter's per-step test of the batch catches nan and inf).
    """

    def __init__(self, env: gym.Env, name: str, index: int) -> None:
        super().__init__(env)
        self.name, self.index = name, index
        self._reset_checked = self._step_checked = False

    def _fail(self, text: str) -> EnvError:
        return EnvError(f"env {self.name}: {text} (env index {self.index}; observation space "
                        f"{self.env.observation_space})")

    def reset(self, **kwargs: Any) -> Any:
        try:
            result = self.env.reset(**kwargs)
        except TypeError as error:
            if "unexpected keyword argument" not in str(error):
                raise
            raise self._fail(f"reset() does not take gymnasium's seed and options ({error}): old gym's API; "
                             "rlmem needs gymnasium's reset(*, seed=None, options=None)") from None
        if self._reset_checked:
            return result
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise self._fail(f"reset() returned {describe(result)}, not (observation, info): rlmem needs "
                             "gymnasium's API (old gym's reset returned the observation alone)")
        problem = mismatch(self.env.observation_space, result[0])
        if problem is not None:
            raise self._fail(f"reset() returned an observation that does not fit the space: {problem}")
        self._reset_checked = True
        return result

    def step(self, action: Any) -> Any:
        try:
            result = self.env.step(action)
        except ValueError as error:  # a wrapper (TimeLimit) unpacking old gym's four values
            if self._step_checked or "values to unpack" not in str(error):
                raise
            raise self._fail(f"step() failed with '{error}': a step returning four values (observation, reward, "
                             "done, info) is old gym's API; rlmem needs gymnasium's five (observation, reward, "
                             "terminated, truncated, info)") from None
        if self._step_checked:
            return result
        if not (isinstance(result, tuple) and len(result) == 5):
            count = f"{len(result)} values" if isinstance(result, tuple) else describe(result)
            raise self._fail(f"step() returned {count}; rlmem needs gymnasium's five (observation, reward, "
                             "terminated, truncated, info)"
                             + ("; four (observation, reward, done, info) is old gym's API"
                                if isinstance(result, tuple) and len(result) == 4 else ""))
        obs, reward, _, _, info = result
        problem = mismatch(self.env.observation_space, obs)
        if problem is not None:
            raise self._fail(f"step() returned an observation that does not fit the space: {problem}")
        scalar = isinstance(reward, (numbers.Real, np.number, np.bool_)) or (
            isinstance(reward, np.ndarray) and reward.ndim == 0 and reward.dtype.kind in "biuf")
        if not scalar:
            raise self._fail(f"step() returned reward {describe(reward)}, not a number")
        if not isinstance(info, dict):
            raise self._fail(f"step() returned info {describe(info)}, not a dict")
        self._step_checked = True
        return result


def checked_factory(make: Callable[[], Any], name: str | None, index: int) -> Callable[[], CheckedEnv]:
    """A factory of ``make()``'s env wrapped in :class:`CheckedEnv` (for gymnasium's vector envs);
    ``name`` None: the env is named by its class."""

    def build() -> CheckedEnv:
        env = make()
        if not isinstance(env, gym.Env):
            raise EnvError(f"env {name or 'callable'}: building it gave {describe(env)}, not a gymnasium.Env")
        return CheckedEnv(env, name or type(env.unwrapped).__name__, index)

    return build


__all__ = ["EnvError", "CheckedEnv", "check_spaces", "checked_factory", "describe", "env_name", "first_bad_row",
           "mismatch"]
