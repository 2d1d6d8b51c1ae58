"""What rlmem's agents share: env and device set-up, the public step API, acting, predict and evaluate.

:class:`RecurrentAgent` is the base of RecurrentPPO and RecurrentDQN. The learn loop around
their iterations is :class:`~rlmem.agents.learn_loop.LearnLoop`, their files
:class:`~rlmem.agents.agent_files.AgentFiles`, and the checks of their configs
:mod:`rlmem.agents.config`: all three are written once, for every agent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem import distributed, observations
from rlmem.agents.acting import Actor, step_env
from rlmem.agents.agent_files import AgentFiles
from rlmem.agents.checkpoints import CheckpointManager
from rlmem.agents.config import build_config
from rlmem.agents.learn_loop import LearnLoop
from rlmem.checks import check_positive_int
from rlmem.device import resolve_device
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.registry import make_vec_env


def make_agent_env(env: Any, n_envs: int, device: str | torch.device, seed: int | None,
                   env_kwargs: dict[str, Any] | None = None) -> tuple[TorchVecEnv, torch.device]:
    """The training batch and the device the agent runs on (``"auto"``: the env's, or cuda if present)."""
    if env_kwargs and (isinstance(env, (TorchVecEnv, gym.vector.VectorEnv))):
        raise ValueError("env_kwargs apply to an env given by id or by a callable, not to an env batch "
                         f"({type(env).__name__}): build the batch with them instead")
    if isinstance(env, TorchVecEnv):
        agent_device = env.device if device == "auto" else resolve_device(device)
        return env, agent_device
    agent_device = resolve_device(device)
    return make_vec_env(env, n_envs, device=agent_device, seed=seed, env_kwargs=env_kwargs), agent_device


def check_episode_start(episode_start: Any, n: int) -> np.ndarray:
    """``predict``'s ``episode_start`` as ``[n]`` booleans; a wrong length or type is a ValueError giving both."""
    array = np.asarray(episode_start)
    if array.dtype.kind not in "buif" or (array.dtype.kind != "b" and not np.isin(array, (0, 1)).all()):
        raise ValueError(f"episode_start must be booleans (or 0 / 1), one per env, got {array.dtype} {array.tolist()!r}")
    if array.size != n or array.ndim > 1:
        raise ValueError(f"episode_start has shape {array.shape}; expected ({n},), one flag per env of the observation")
    return array.astype(bool).reshape(n)


class RecurrentAgent(LearnLoop, AgentFiles):
    """What RecurrentPPO and RecurrentDQN share: the learn loop, ``predict``, ``evaluate`` and files.

    The public step API, the same contract for every agent (``learn`` is a loop around it):

    * :meth:`start` -- allocate the training storage (rollout buffer, replay) and, where the agent
      has no place in its training env yet, reset the env;
    * :meth:`collect` -- step the training env for one iteration into that storage (advances
      ``num_timesteps`` by ``steps_per_iteration``); returns the episode sums;
    * :meth:`update` -- learn from the storage; returns the update's statistics;
    * :meth:`initial_state`, :meth:`act`, :meth:`env_action` -- act on any batch of observations
      with the memory carried by the caller (:class:`rlmem.agents.acting.Actor` does the carrying).

    A subclass has ``env``, ``env_source``, ``device``, ``seed``, ``observation_space``,
    ``action_space`` and ``_last`` (its position in the training env), all given by
    :meth:`_setup`, and implements :meth:`initial_state`, :meth:`act`, :meth:`collect`,
    :meth:`update`, :meth:`_start` (the position after a reset), ``steps_per_iteration`` and,
    where it needs them, :meth:`_prepare_learning`, :meth:`_schedule` and :meth:`_charts`; for
    files :meth:`_modules`, :meth:`_modules_state` and :meth:`_load_modules_state`
    (:meth:`_checkpoint_parts` and :meth:`_load_checkpoint_parts` for large training state).
    """

    algo: str
    data_parallel: bool = False
    """Whether the agent trains data-parallel under torchrun (:mod:`rlmem.distributed`)."""
    env: TorchVecEnv
    env_source: str | None
    env_kwargs: dict[str, Any]
    device: torch.device
    seed: int
    observation_space: gym.Space
    action_space: gym.Space
    _last: dict[str, Any] | None

    def _setup(self, config_cls: type, overrides: dict[str, Any], env: Any, device: str | torch.device,
               seed: int, tensorboard_log: str | Path | None, verbose: int,
               env_kwargs: dict[str, Any] | None = None) -> None:
        """Config (checked), seeding, the training env and the counters every agent starts with."""
        self.config = build_config(config_cls, overrides)
        self.seed = seed
        torch.manual_seed(seed)  # the same weights on every rank of a data-parallel run
        #: This process's seed for its envs and minibatch order: ``seed``, or another per rank of a data-parallel run.
        self.env_seed = distributed.rank_seed(seed)
        self.env_source = env if isinstance(env, str) else None
        self.env_kwargs = dict(env_kwargs or {})
        self.env, self.device = make_agent_env(env, self.config.n_envs, device, self.env_seed, self.env_kwargs)
        self.config.n_envs = self.env.num_envs
        self.config.validate()
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose
        self.num_timesteps = 0
        self.generator = torch.Generator(device="cpu").manual_seed(self.env_seed)
        self._last = None  # position in the training env between learn calls
        #: The learn call in progress (or last): env-steps at its start and at its end.
        self._plan: dict[str, int] | None = None
        self._checkpoints: CheckpointManager | None = None
        self.last_log: dict[str, float] = {}

    # ------------------------------------------------------------------ the learn loop
    @property
    def steps_per_iteration(self) -> int:
        """Env-steps of one iteration (one collect + update)."""
        raise NotImplementedError

    def start(self) -> None:
        """Get ready to :meth:`collect`: allocate the training storage if it is not there yet, and reset the
        training env unless the agent already has a place in it (from an earlier learn call or a restore)."""
        self._prepare_learning()
        if self._last is None:
            self._last = self._start()

    def collect(self) -> torch.Tensor:
        """Step the training env for one iteration (``steps_per_iteration`` env-steps) into the agent's storage.

        Advances ``num_timesteps``. Returns the episodes that ended meanwhile as
        ``[sum of returns, sum of lengths, count]`` (float64, on the CPU). Needs :meth:`start` first.
        """
        raise NotImplementedError

    def update(self) -> dict[str, float]:
        """Learn from what :meth:`collect` stored; returns the update's statistics by name (losses, ...).

        Empty where there was nothing to learn yet (RecurrentDQN before ``learning_starts``).
        """
        raise NotImplementedError

    def _start(self) -> dict[str, Any]:
        """Reset the training env; the agent's position in it (observation, memory, episode starts...)."""
        raise NotImplementedError

    def _prepare_learning(self) -> None:
        """Allocate what training needs (a rollout buffer, a replay) if not there yet."""

    def _schedule(self) -> dict[str, float]:
        """Set this iteration's scheduled values (a learning rate) before it runs; their TensorBoard tags."""
        return {}

    def _charts(self) -> dict[str, float]:
        """TensorBoard tags of the agent's own state after an iteration (epsilon, update count)."""
        return {}

    def _iteration(self) -> tuple[torch.Tensor, dict[str, float]]:
        """One :meth:`collect` and :meth:`update`: the episode sums and the iteration's TensorBoard tags."""
        scheduled = self._schedule()
        episodes = self.collect()
        losses = self.update()
        return episodes, {**scheduled, **self._charts(), **{f"losses/{k}": float(v) for k, v in losses.items()}}

    # ------------------------------------------------------------------ acting
    def initial_state(self, n: int) -> tuple[torch.Tensor, ...]:
        """The memory of ``n`` envs at an episode start (a tuple of tensors, the envs on dim 1), on the agent's device."""
        raise NotImplementedError

    def act(self, obs: torch.Tensor, state: tuple[torch.Tensor, ...], episode_start: torch.Tensor,
            prev_action: torch.Tensor, prev_reward: torch.Tensor,
            deterministic: bool = True) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One acting step for a batch ``obs`` ``[N, ...]`` on the agent's device: the actions and the new memory.

        The memory of the envs where ``episode_start`` ``[N]`` is True is zeroed first. The
        actions are as the agent stores them (:meth:`env_action` turns them into the env's);
        ``prev_action`` and ``prev_reward`` are the last step's (zeros at a start), used by
        agents that feed them into their memory.
        """
        raise NotImplementedError

    def _require_discrete_actions(self) -> int:
        """The number of actions of a Discrete action space; any other is refused in one line (value-based agents)."""
        if not isinstance(self.action_space, gym.spaces.Discrete):
            kind = "continuous" if isinstance(self.action_space, gym.spaces.Box) else type(self.action_space).__name__
            raise ValueError(f"{self.algo} needs a Discrete action space; this env's is {kind} "
                             f"({self.action_space}). MultiDiscrete is refused, not flattened: wrap the env to "
                             "a Discrete product space yourself, or use RecurrentPPO (any action space)")
        return int(self.action_space.n)

    def _needs_bootstrap(self, bootstrap: torch.Tensor) -> bool:
        """Whether this step must evaluate ``info["final_obs"]`` for the truncated envs in ``bootstrap`` ``[N]``.

        Never for an env batch that cannot truncate. On the CPU a read of the mask is free, so
        only the steps with a truncation pay for the extra forward pass; on an accelerator that
        read would stall the device every step, so the pass always runs (masked by ``bootstrap``).
        """
        if not getattr(self.env, "can_truncate", True):
            return False
        if self.device.type == "cpu":
            return bool(bootstrap.any())
        return True

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """The agent's actions as the env takes them (clipped to a Box, shifted by a Discrete start)."""
        if isinstance(self.action_space, gym.spaces.Box):
            low = torch.as_tensor(self.action_space.low, device=action.device)
            high = torch.as_tensor(self.action_space.high, device=action.device)
            return torch.clamp(action, low, high)
        if isinstance(self.action_space, gym.spaces.Discrete) and self.action_space.start != 0:
            return action + int(self.action_space.start)
        return action

    @property
    def action_dtype(self) -> torch.dtype:
        """The dtype of the actions :meth:`act` returns: float32 for a Box, int64 otherwise."""
        return torch.float32 if isinstance(self.action_space, gym.spaces.Box) else torch.int64

    @torch.no_grad()
    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        prev_action: np.ndarray | None = None,
        prev_reward: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """sb3-contrib's recurrent ``predict``: actions for a batch of observations, and the new state.

        ``observation`` is one env's or a batch's, in the env's own structure (an array; a dict of arrays for a
        Dict space; an image as the env gives it); a wrong structure or shape names the expected one.

        ``state`` is the memory returned by the previous call (None: zeros), as numpy arrays of
        shape ``[layers, n_envs, hidden]``; ``episode_start`` ``[n_envs]`` marks envs whose
        memory must be zeroed first. An agent that feeds the previous action and reward into
        its memory takes them as ``prev_action`` and ``prev_reward`` (zeros when omitted).
        """
        batch, n, single = observations.as_batch(self.observation_space, observation)
        obs_t = observations.from_numpy(self.observation_space, batch, self.device)
        state_t = self.initial_state(n) if state is None else self._check_state(state, n)
        start = np.zeros(n, dtype=bool) if episode_start is None else check_episode_start(episode_start, n)
        start_t = torch.as_tensor(start, device=self.device)
        pa = torch.zeros((n, *self.action_space.shape), dtype=self.action_dtype, device=self.device)
        if prev_action is not None:
            pa = torch.as_tensor(np.asarray(prev_action), dtype=pa.dtype, device=self.device).reshape(pa.shape)
        pr = torch.zeros(n, device=self.device)
        if prev_reward is not None:
            pr = torch.as_tensor(np.asarray(prev_reward), dtype=torch.float32, device=self.device).reshape(n)
        action, new_state = self.act(obs_t, state_t, start_t, pa, pr, deterministic)
        actions = self.env_action(action).cpu().numpy()
        if single:
            actions = actions[0]
        return actions, tuple(s.cpu().numpy() for s in new_state)

    def _check_state(self, state: Any, n: int) -> tuple[torch.Tensor, ...]:
        """``predict``'s ``state`` as tensors on the device; a ValueError names what does not fit ``n`` envs."""
        expected = [tuple(s.shape) for s in self.initial_state(n)]
        memory = f"this agent's {self.config.memory} memory for {n} env(s)"
        if not isinstance(state, (tuple, list)) or len(state) != len(expected):
            got = f"{type(state).__name__} of {len(state)}" if isinstance(state, (tuple, list)) else type(state).__name__
            raise ValueError(f"state must be a tuple of {len(expected)} array(s) of shapes {expected} ({memory}: "
                             f"the state predict returned), got a {got}")
        arrays = []
        for i, (part, shape) in enumerate(zip(state, expected, strict=True)):
            array = np.asarray(part)
            if array.shape != shape:
                raise ValueError(f"state[{i}] has shape {array.shape}; expected {shape} ({memory})")
            arrays.append(torch.as_tensor(array, dtype=torch.float32, device=self.device))
        return tuple(arrays)

    @torch.no_grad()
    def evaluate(self, n_episodes: int = 100, deterministic: bool = True, env: Any = None,
                 seed: int | None = None, memory: str = "carry") -> dict[str, float]:
        """Mean, std of returns and mean length over ``n_episodes`` fresh episodes.

        Runs on ``env`` (default: a new batch of the training env when it was given by id, else
        the training env itself, reset afterwards by the next ``learn``). Every env contributes
        its first episodes, spread evenly, so short episodes are not favoured. ``memory="reset"``
        zeroes the memory at every step (an ablation: the agent without memory).
        """
        check_positive_int("n_episodes", n_episodes)
        if memory not in ("carry", "reset"):
            raise ValueError(f"memory must be 'carry' or 'reset', got {memory!r}")
        env_kwargs = None
        if env is None:
            if self.env_source is not None:
                env, env_kwargs = self.env_source, self.env_kwargs
            else:
                env = self.env
                self._last = None  # training resumes from a reset
        seed = self.seed + 1 if seed is None else seed
        n = min(n_episodes, self.env.num_envs if isinstance(env, str) or env is self.env else 64)
        batch, _ = make_agent_env(env, n, self.device, seed, env_kwargs)
        n = batch.num_envs
        targets = torch.tensor([(n_episodes + i) // n for i in range(n)], device=self.device)
        obs, _ = batch.reset(seed=seed)
        actor = Actor(self, n, deterministic)
        counts = torch.zeros(n, dtype=torch.int64, device=self.device)
        returns: list[torch.Tensor] = []
        lengths: list[torch.Tensor] = []
        while bool((counts < targets).any()):
            step = step_env(batch, actor.act(obs, reset_memory=memory == "reset"), self.device)
            actor.observe(step)
            obs = step.obs
            wanted = step.done & (counts < targets)
            returns.append(step.episode_return[wanted])
            lengths.append(step.episode_length[wanted])
            counts += step.done.long()
        if batch is not self.env:
            batch.close()
        r = torch.cat(returns).double().cpu().numpy()
        lens = torch.cat(lengths).double().cpu().numpy()
        return {"mean_return": float(r.mean()), "std_return": float(r.std()), "mean_length": float(lens.mean()),
                "n_episodes": int(r.size)}
