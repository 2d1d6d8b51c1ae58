"""Adapters between rlmem's batched torch envs and the APIs users already have.

Views look at a :class:`TorchVecEnv` through another API:

* :class:`GymEnvView`: one env as a gymnasium ``Env`` (the registered ``entry_point``).
* :class:`GymVectorEnvView`: the batch as a gymnasium ``VectorEnv`` (the ``vector_entry_point``).
* :class:`SB3VecEnvView`: the batch as a stable-baselines3 ``VecEnv`` (sb3-contrib's baseline).

:class:`GymVectorEnvAdapter` goes the other way: it turns any gymnasium ``VectorEnv`` (a user's
own numpy environment, stepped by gymnasium's sync or async vector env) into the TorchVecEnv
interface, converting to tensors at the edge.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import VecEnv

from rlmem import observations
from rlmem.envs.base import Info, TorchVecEnv
from rlmem.envs.contract import EnvError, check_spaces, env_name, first_bad_row

_NO_RENDER = "rendering is not supported by rlmem's batched tasks (allowed render_mode: None)"


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode is not None:
        raise ValueError(f"render_mode {render_mode!r} is not supported: {_NO_RENDER}")


class GymEnvView(gym.Env):
    """One environment of a :class:`TorchVecEnv` task as a plain gymnasium ``Env``.

    Actions are checked against the action space (a clear ValueError otherwise). When an
    episode ends, the batch has already drawn the next episode's start; the next
    ``reset()`` without a seed starts from exactly that state, so a single view and a
    batch of one env produce the same episodes under the same seed.
    """

    metadata = {"render_modes": []}

    def __init__(self, env: TorchVecEnv, render_mode: str | None = None) -> None:
        _check_render_mode(render_mode)
        if env.num_envs != 1:
            raise ValueError(f"GymEnvView needs a batch of exactly 1 env, got num_envs={env.num_envs}")
        env.check_actions = True
        self.env = env
        self.render_mode = None
        self.observation_space = env.single_observation_space
        self.action_space = env.single_action_space
        self._next_start: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and self._next_start is not None:
            obs = self._next_start
        else:
            obs = self.env.reset(seed=seed)[0][0].cpu().numpy()
        self._next_start = None
        return obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        actions = np.asarray(action)[None]
        obs, reward, terminated, truncated, info = self.env.step(actions)
        term, trunc = bool(terminated[0]), bool(truncated[0])
        if term or trunc:
            self._next_start = obs[0].cpu().numpy()
            obs = info["final_obs"]
        else:
            self._next_start = None
        return obs[0].cpu().numpy(), float(reward[0]), term, trunc, {}


class GymVectorEnvView(gym.vector.VectorEnv):
    """A :class:`TorchVecEnv` as a gymnasium ``VectorEnv`` (numpy in, numpy out).

    Follows gymnasium's same-step autoreset convention: ``info["final_obs"]`` is an object
    array holding the last observation of each env that finished (None elsewhere), and
    ``info["_final_obs"]`` the mask, so gymnasium's vector wrappers (e.g.
    ``RecordEpisodeStatistics``) work unchanged. Actions are always checked.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env: TorchVecEnv, render_mode: str | None = None) -> None:
        _check_render_mode(render_mode)
        env.check_actions = True
        self.env = env
        self.num_envs = env.num_envs
        self.render_mode = None
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, (list, tuple)):
            # One torch generator drives the whole batch: the first seed seeds it.
            seed = seed[0] if seed else None
        obs, _ = self.env.reset(seed=seed)
        return obs.cpu().numpy(), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions))
        done = info["_final_obs"].cpu().numpy()
        final_obs = np.full(self.num_envs, None, dtype=object)
        if done.any():
            final = info["final_obs"].cpu().numpy()
            for i in np.flatnonzero(done):
                final_obs[i] = final[i]
        infos = {"final_obs": final_obs, "_final_obs": done} if done.any() else {}
        return (
            obs.cpu().numpy(),
            reward.cpu().numpy(),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            infos,
        )

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()


def _leaf_arrays(space: gym.Space, batch: Any) -> list[tuple[gym.Space, np.ndarray]]:
    """The numpy arrays of a gymnasium batch of ``space``, one per leaf (Text left out)."""
    if isinstance(space, gym.spaces.Dict):
        return [pair for k, s in space.spaces.items() for pair in _leaf_arrays(s, batch[k])]
    if isinstance(space, gym.spaces.Tuple):
        return [pair for i, s in enumerate(space.spaces) for pair in _leaf_arrays(s, batch[i])]
    return [] if observations.is_text(space) else [(space, np.asarray(batch))]


class GymVectorEnvAdapter(TorchVecEnv):
    """Any gymnasium ``VectorEnv`` seen through the :class:`TorchVecEnv` interface.

    The vector env must autoreset in the same step (``AutoresetMode.SAME_STEP``), which is how
    :func:`rlmem.make_vec_env` builds one from an id or a callable. Observations keep their structure,
    shape and dtype (:mod:`rlmem.observations`: an image stays uint8, a Dict becomes a dict of tensors,
    a Discrete an int64 index; Text entries are left out) and are moved to ``device``; the agents'
    encoders (:mod:`rlmem.agents.encoders`) read them as they are. Actions come back to numpy.
    Episode statistics are tracked here, like the native tasks do. Its state lives in the
    gymnasium envs, outside torch: it is not ``restorable`` (a resumed run restarts its episodes).

    What the envs return is checked at this edge (:mod:`rlmem.envs.contract`): spaces rlmem cannot
    encode are refused here, and every step's observations and rewards are tested for nan and inf
    (one vectorised test on the host, where they already are): an :class:`EnvError` names the env,
    the env index and the step. ``name`` is how errors name the env (default: its id or class).
    """

    restorable = False
    capturable = False  # its envs step in numpy on the host

    def __init__(
        self,
        vec_env: gym.vector.VectorEnv,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        name: str | None = None,
    ) -> None:
        if not isinstance(vec_env, gym.vector.VectorEnv):
            raise TypeError(f"expected a gymnasium VectorEnv, got {type(vec_env).__name__}")
        self.name = name or env_name(vec_env) or type(vec_env).__name__
        check_spaces(self.name, vec_env.single_observation_space, vec_env.single_action_space)
        mode = vec_env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.SAME_STEP, AutoresetMode.SAME_STEP.value):
            raise ValueError(
                f"the VectorEnv autoresets with {mode!r}, but rlmem needs AutoresetMode.SAME_STEP; "
                "create it with vector_kwargs={'autoreset_mode': gymnasium.vector.AutoresetMode.SAME_STEP}, "
                "or pass the env id or a callable to rlmem.make_vec_env"
            )
        self.vec_env = vec_env
        self.single_observation_space = vec_env.single_observation_space
        observations.text_note(self.single_observation_space)
        self.single_action_space = vec_env.single_action_space
        self.max_episode_steps = self._spec_max_steps(vec_env)
        super().__init__(vec_env.num_envs, device, None, check_actions)
        self._first_seed = seed
        self._batch_steps = 0

    @staticmethod
    def _spec_max_steps(vec_env: gym.vector.VectorEnv) -> int | None:
        spec = getattr(vec_env, "spec", None)
        steps = getattr(spec, "max_episode_steps", None)
        if steps is None:
            envs = getattr(vec_env, "envs", None)
            if envs:
                steps = getattr(envs[0].spec, "max_episode_steps", None) if envs[0].spec else None
        return steps

    def _to_tensor(self, obs: Any, at_reset: bool | np.ndarray = False) -> observations.Obs:
        """The batch's observations, checked and on the device in their own structure and dtype (``at_reset``:
        the reset's, or ``[N]`` the envs whose observation starts a new episode)."""
        space = self.vec_env.single_observation_space
        self._check_batch(space, obs, at_reset)
        return observations.from_numpy(space, obs, self.device)

    def _check_batch(self, space: gym.Space, obs: Any, at_reset: bool | np.ndarray) -> None:
        """Discrete observations in range and floats finite, one vectorised test per entry, on the host."""
        for leaf, array in _leaf_arrays(space, obs):
            if isinstance(leaf, gym.spaces.Discrete):
                index = array.astype(np.int64) - int(leaf.start)
                row = first_bad_row((index < 0) | (index >= int(leaf.n)))
                if row is not None:
                    raise EnvError(f"env {self.name} returned observation {index[row] + int(leaf.start)}, outside "
                                   f"its observation space {leaf}, {self._where(row, at_reset)}")
            elif array.dtype.kind == "f":
                self._check_finite(array.reshape(array.shape[0], -1).astype(np.float32, copy=False),
                                   "an observation holding", at_reset)

    def _where(self, row: int, at_reset: bool | np.ndarray) -> str:
        """Where a bad value came from: ``at step 41 of an episode (env index 3 of 8; batch step 41)``."""
        if np.ndim(at_reset) == 0 and at_reset:
            return f"at reset (env index {row} of {self.num_envs})"
        if np.ndim(at_reset) > 0 and at_reset[row]:
            return (f"at the reset after an episode ended (env index {row} of {self.num_envs}; "
                    f"batch step {self._batch_steps})")
        return (f"at step {int(self.elapsed_steps[row]) + 1} of an episode (env index {row} of {self.num_envs}; "
                f"batch step {self._batch_steps})")

    def _check_finite(self, values: np.ndarray, what: str, at_reset: bool | np.ndarray = False) -> None:
        """Raise EnvError naming the env, the env index and the step when ``values`` ``[N, D]`` (float32) hold
        nan or inf."""
        bad = ~np.isfinite(values)
        row = first_bad_row(bad)
        if row is not None:
            value = values[row][bad[row]].reshape(-1)[0]
            raise EnvError(f"env {self.name} returned {what} {value} {self._where(row, at_reset)}; rlmem stops at "
                           "the env rather than train on it")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, Info]:
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        obs, _ = self.vec_env.reset(seed=seed, options=options)
        self.elapsed_steps.zero_()
        self.episode_return.zero_()
        return self._to_tensor(obs, at_reset=True), {}

    def step(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Info]:
        actions = self._as_action_tensor(actions)
        if self.check_actions:
            self._validate_actions(actions)
        np_actions = actions.cpu().numpy()
        if isinstance(self.single_action_space, gym.spaces.Box):
            np_actions = np_actions.astype(self.single_action_space.dtype, copy=False)
        obs, reward, terminated, truncated, infos = self.vec_env.step(np_actions)
        self._batch_steps += 1
        reward = np.asarray(reward, dtype=np.float64)
        reward32 = reward.astype(np.float32)
        row = first_bad_row(~np.isfinite(reward32))
        if row is not None:
            beyond = " (beyond float32's range)" if np.isfinite(reward[row]) else ""
            raise EnvError(f"env {self.name} returned reward {reward[row]}{beyond} {self._where(row, False)}; "
                           "rlmem stops at the env rather than train on it")
        obs_t = self._to_tensor(obs, at_reset=np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool))
        reward_t = torch.as_tensor(reward32, device=self.device)
        term_t = torch.as_tensor(np.asarray(terminated, dtype=bool), device=self.device)
        trunc_t = torch.as_tensor(np.asarray(truncated, dtype=bool), device=self.device)
        done = term_t | trunc_t
        final_obs = observations.clone(obs_t)
        if "_final_obs" in infos:
            single = self.vec_env.single_observation_space
            for i in np.flatnonzero(infos["_final_obs"]):
                final = batch_space_item(single, infos["final_obs"][i])
                for _, array in _leaf_arrays(single, final):
                    if array.dtype.kind == "f" and not np.isfinite(array).all():
                        bad = array[~np.isfinite(array)][0]
                        raise EnvError(f"env {self.name} returned an observation holding {bad} "
                                       f"{self._where(int(i), False)}, its episode's last; rlmem stops at the env "
                                       "rather than train on it")
                observations.assign(final_obs, int(i), observations.take(
                    observations.from_numpy(single, final, self.device), 0))
        self.elapsed_steps = self.elapsed_steps + 1
        info = self._end_step(reward_t, done, final_obs)
        return obs_t, reward_t, term_t, trunc_t, info

    def close(self) -> None:
        self.vec_env.close()

    def state_dict(self) -> dict[str, Any]:
        raise ValueError("a gymnasium env's state cannot be saved: it lives in the envs, outside torch")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise ValueError("a gymnasium env's state cannot be restored: it lives in the envs, outside torch")


def batch_space_item(space: gym.Space, obs: Any) -> Any:
    """Wrap one observation as a batch of one, in the layout ``batch_space(space, 1)`` uses."""
    return gym.vector.utils.concatenate(space, [obs], gym.vector.utils.create_empty_array(space, 1))


class SB3VecEnvView(VecEnv):
    """A :class:`TorchVecEnv` as a stable-baselines3 ``VecEnv``.

    This is how sb3-contrib's ``RecurrentPPO`` (the baseline rlmem is compared against) trains
    on rlmem tasks unchanged. Finished episodes report ``terminal_observation``,
    ``TimeLimit.truncated`` and a Monitor-style ``episode`` dict in their info, as SB3 expects.
    The per-env info dicts are built on the host, so this view is for the SB3 baseline, not
    for rlmem's own device-resident agents.
    """

    def __init__(self, env: TorchVecEnv) -> None:
        self.env = env
        self._actions: Any = None
        self._start = time.perf_counter()
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        done = (terminated | truncated).cpu().numpy()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            final = info["final_obs"].cpu().numpy()
            term = terminated.cpu().numpy()
            ep_r = info["episode"]["r"].cpu().numpy()
            ep_l = info["episode"]["l"].cpu().numpy()
            elapsed = round(time.perf_counter() - self._start, 6)
            for i in np.flatnonzero(done):
                infos[i] = {
                    "terminal_observation": final[i],
                    "TimeLimit.truncated": not bool(term[i]),
                    "episode": {"r": float(ep_r[i]), "l": int(ep_l[i]), "t": elapsed},
                }
        return obs.cpu().numpy(), reward.cpu().numpy(), done, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        count = len(self._get_indices(indices))
        if attr_name == "render_mode":
            return [None] * count
        return [getattr(self.env, attr_name)] * count

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
