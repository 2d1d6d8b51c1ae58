"""TorchVecEnv: a batch of N environments whose whole state lives in tensors on one device.

A task subclasses :class:`TorchVecEnv` and writes three batched hooks; the base class owns
the step loop around them (same-step autoreset, final observations, episode statistics,
seeding), so every task gets the same semantics and no task loops over envs in Python.

A task also carries what is known about it, so that callers ask the task rather than keep
lists of tasks: its levels (the ``LEVELS`` table, made into classes by :func:`rlmem.envs.levels.make_levels`),
the return of a policy without memory (:meth:`TorchVecEnv.chance_return`), the lag a recall
curve sweeps (:attr:`TorchVecEnv.lag_parameter` and the methods beside it), the gap a horizon
sweep trains at (:attr:`TorchVecEnv.gap_parameter`), what a linear probe reads off its
observations (:meth:`TorchVecEnv.probe_labels`) and, for tests, the actions of an optimal
policy (:meth:`TorchVecEnv.oracle_actions`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from rlmem.checks import check_positive_int, is_int

Info = dict[str, Any]


PROBE_MAX_CLASSES = 64
"""More distinct observations than this and the observation is not a class the probe can read."""


class TorchVecEnv:
    """A batch of ``num_envs`` environments stepped together as tensors on ``device``.

    Semantics (shared by every rlmem task):

    * ``reset(seed=...)`` returns ``(obs, info)`` with ``obs`` of shape ``[N, *obs_shape]``.
    * ``step(actions)`` returns ``(obs, reward, terminated, truncated, info)``, all tensors
      on ``device`` (``reward`` float32 ``[N]``, the flags bool ``[N]``).
    * Environments that finish are reset **in the same step**: ``obs`` is already the first
      observation of the next episode, and ``info["final_obs"]`` holds the observation the
      finished episode ended on (for bootstrapping truncated episodes). ``info["_final_obs"]``
      is the ``[N]`` bool mask of envs that finished this step.
    * ``info["episode"]`` holds ``{"r": return, "l": length}`` (float64 and int64 ``[N]``) of
      the episode that finished, valid where ``info["_episode"]`` is True.
    * All randomness comes from ``self.generator`` (a ``torch.Generator`` on ``device``),
      seeded at construction and re-seeded by ``reset(seed=...)``.

    Nothing in ``step`` reads a tensor back to the host, so a GPU batch never synchronises;
    action validation (which must read the actions) runs only when ``check_actions=True``.

    Subclasses set ``single_observation_space``, ``single_action_space`` and
    ``max_episode_steps`` and implement :meth:`_reset_where`, :meth:`_observe` and
    :meth:`_transition`; a task also states its facts (``LEVELS``, :meth:`chance_return`,
    the lag attributes, :meth:`oracle_actions`; :meth:`probe_labels` where the default is wrong).
    """

    metadata: dict[str, Any] = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Space
    #: The longest an episode can last, in steps (for listings and buffer sizing).
    max_episode_steps: int
    #: Whether an episode can end truncated. Tasks that never truncate say False, and agents then
    #: skip the bootstrap from ``info["final_obs"]`` (and, on a GPU, the work or sync it costs).
    can_truncate: bool = True
    #: Whether :meth:`state_dict` captures the whole state (False where it lives outside torch).
    restorable: bool = True
    #: Whether ``step`` is pure tensor work on ``device``: state only in tensor attributes, random
    #: draws only from ``self.generator``, nothing read to the host. Then agents may record it in a
    #: CUDA graph (:mod:`rlmem.agents.graphs`). A task that keeps Python state that changes per
    #: step, or calls numpy, says False.
    capturable: bool = True
    #: A task's state that is not a tensor attribute (a Python counter), saved by :meth:`state_dict`.
    _state_attributes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ levels
    #: The task's levels: level name -> the keyword arguments that set it, e.g.
    #: ``{"Easy": {"k": 4, "length": 52}, ...}``. The source of the level classes
    #: (``<Task><Level>``, made by :func:`make_levels`) and of the registered ``<Task><Level>`` ids.
    LEVELS: ClassVar[dict[str, dict[str, Any]]] = {}
    #: On a level class, its name in the task's ``LEVELS`` ("Easy"); None on the task itself.
    level: ClassVar[str | None] = None
    #: On a level class, its settings (a read-only view of ``LEVELS[level]``); empty on the task.
    level_settings: ClassVar[MappingProxyType[str, Any]] = MappingProxyType({})
    #: The task a class is, or is a level of: the class itself for a task, the task for a level.
    task_class: ClassVar[type[TorchVecEnv]]

    # ------------------------------------------------------------------ what a recall curve sweeps
    #: The keyword argument that sets the task's lag (how far back the cue lies), swept by
    #: :func:`rlmem.probes.recall_curve`; None for a task without one. A task with a lag
    #: implements :meth:`lag_kwargs`, :meth:`recall_accuracy` and :meth:`chance_accuracy`.
    lag_parameter: ClassVar[str | None] = None

    # ------------------------------------------------------------------ what a horizon sweep trains at
    #: The keyword argument a horizon sweep trains at several values, one run each (a suite entry's
    #: ``gaps``, :mod:`rlmem.suites`): how many steps separate the cue from the step that needs it.
    #: The lag where the task has one; RepeatFirst's episode length; None for a task without one.
    #: The agent's unroll must be longer than it for a gradient to reach the cue.
    gap_parameter: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.level is None:
            cls.task_class = cls

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
    ) -> None:
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.device = torch.device(device)
        self.check_actions = check_actions
        # A batch built on the meta device (to size it before allocating: state_nbytes) draws from a CPU generator.
        self.generator = torch.Generator(device="cpu" if self.device.type == "meta" else self.device)
        self._seed(seed)
        #: Steps taken so far in each env's current episode (the task's clock).
        self.elapsed_steps = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        # float64 so that hundreds of small scaled rewards still sum to exactly 1.0 (within 1e-6).
        self.episode_return = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
        self._all = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._eyes: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------ hooks for tasks
    def _reset_where(self, mask: torch.Tensor) -> None:
        """Draw a fresh initial state for the envs where ``mask`` ([N] bool) is True.

        Must not read ``mask`` on the host: update every env with ``torch.where``.
        ``elapsed_steps`` is reset by the base class.
        """
        raise NotImplementedError

    def _observe(self) -> torch.Tensor:
        """The current observation of every env, ``[N, *obs_shape]`` float32."""
        raise NotImplementedError

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every env by one step; return ``(reward, terminated, truncated)``.

        ``self.elapsed_steps`` still counts the steps *before* this one while it runs.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ facts about the task
    def chance_return(self) -> float | None:
        """The expected episode return of a uniformly random policy, which on a memory task is what
        a policy without memory gets: the 0 of a normalised return. None where the task does not
        know it."""
        return None

    def lag_kwargs(self, lag: int) -> dict[str, Any]:
        """The task's keyword arguments with its lag (:attr:`lag_parameter`) set to ``lag`` and
        everything else as this env's, so that every lag is scored alike."""
        raise NotImplementedError(f"{type(self).__name__} has no lag to sweep")

    def gap_kwargs(self, gap: int) -> dict[str, Any]:
        """The task's keyword arguments at ``gap`` (:attr:`gap_parameter`), the rest as this env's:
        :meth:`lag_kwargs` where the gap is the lag."""
        if self.gap_parameter is not None and self.gap_parameter == self.lag_parameter:
            return self.lag_kwargs(gap)
        raise NotImplementedError(f"{type(self).__name__} has no gap to sweep")

    @staticmethod
    def recall_accuracy(mean_return: float) -> float:
        """The fraction of recalls right, from a mean episode return (every recall is rewarded the same)."""
        raise NotImplementedError("this task has no lag to sweep")

    def chance_accuracy(self) -> float:
        """The fraction of recalls a policy without memory gets right."""
        raise NotImplementedError(f"{type(self).__name__} has no lag to sweep")

    def probe_labels(self, obs: torch.Tensor, episode_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The class a linear probe reads off each recorded observation, where it is readable, and what it is.

        ``obs`` is ``[T, N, *obs_shape]`` and ``episode_step`` ``[T, N]`` (steps since the episode
        began), as :func:`rlmem.probes.rollout` records them. Returns ``(labels [T, N], valid [T, N],
        description)``. By default each distinct observation vector (to 1e-3) is a class, readable
        at every step; more than :data:`PROBE_MAX_CLASSES` of them is a ValueError. A task that
        shows its cue only at an episode's first step overrides this to read that cue there.
        """
        flat = torch.round(obs.reshape(episode_step.numel(), -1).float() * 1000) / 1000  # one row per step
        classes, labels = torch.unique(flat, dim=0, return_inverse=True)
        if classes.shape[0] > PROBE_MAX_CLASSES:
            raise ValueError(f"{type(self).__name__} shows {classes.shape[0]} distinct observations (more than "
                             f"{PROBE_MAX_CLASSES}): the probe reads discrete observations, e.g. RepeatPrevious, "
                             "PassiveTMaze, MemoryChain, RepeatFirst, CountRecall")
        return labels.reshape(episode_step.shape), torch.ones_like(episode_step == 0), \
            "the observation (each distinct one a class)"

    def oracle_actions(self) -> torch.Tensor:
        """The actions ``[N]`` an optimal policy takes at this step, read from the task's hidden state.

        A reference for tests (every episode it plays returns 1.0), not a policy an agent could
        have: it looks at what the observations hide.
        """
        raise NotImplementedError(f"{type(self).__name__} has no reference oracle")

    # ------------------------------------------------------------------ spaces
    @property
    def observation_space(self) -> gym.Space:
        """The batched observation space (gymnasium's ``VectorEnv`` convention)."""
        return batch_space(self.single_observation_space, self.num_envs)

    @property
    def action_space(self) -> gym.Space:
        """The batched action space (gymnasium's ``VectorEnv`` convention)."""
        return batch_space(self.single_action_space, self.num_envs)

    @property
    def unwrapped(self) -> TorchVecEnv:
        return self

    # ------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, Info]:
        """Reset every env; with ``seed``, re-seed the generator first (deterministic)."""
        if seed is not None:
            self._seed(seed)
        self._reset_where(self._all)
        self.elapsed_steps.zero_()
        self.episode_return.zero_()
        return self._observe(), {}

    def step(
        self, actions: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Info]:
        """Step every env with ``actions`` (``[N, *action_shape]``); see the class docstring."""
        actions = self._as_action_tensor(actions)
        if self.check_actions:
            self._validate_actions(actions)
        reward, terminated, truncated = self._transition(actions)
        done = terminated | truncated
        self.elapsed_steps = self.elapsed_steps + 1
        info = self._end_step(reward, done, final_obs=self._observe())
        self._reset_where(done)
        return self._observe(), reward, terminated, truncated, info

    def _end_step(self, reward: torch.Tensor, done: torch.Tensor, final_obs: torch.Tensor) -> Info:
        """Book the step's reward, build the step's info, and zero the counters of finished envs.

        ``elapsed_steps`` must already count this step. Updates are out of place, so the
        tensors handed out in ``info`` are never modified afterwards.
        """
        self.episode_return = self.episode_return + reward
        info: Info = {
            "final_obs": final_obs,
            "_final_obs": done,
            "episode": {"r": self.episode_return, "l": self.elapsed_steps},
            "_episode": done,
        }
        self.elapsed_steps = self.elapsed_steps.masked_fill(done, 0)
        self.episode_return = self.episode_return.masked_fill(done, 0.0)
        return info

    def state_nbytes(self) -> int:
        """Bytes the batch holds: its state tensors and one step's observations (the next and the final ones).

        Exact for a batch built on the meta device, which allocates nothing: how a batch is sized
        before it is built (:func:`rlmem.make_vec_env`).
        """
        state = sum(getattr(self, name).nbytes for name in self._state_tensor_names())
        obs = 2 * 4 * self.num_envs * int(np.prod(self.single_observation_space.shape))
        return state + obs

    def close(self) -> None:
        """Nothing to release; present so every env batch can be closed alike."""

    # ------------------------------------------------------------------ saving the state
    def _state_tensor_names(self) -> list[str]:
        return sorted(name for name, value in vars(self).items() if isinstance(value, torch.Tensor))

    def state_dict(self) -> dict[str, Any]:
        """The batch's whole state, to carry a run across a checkpoint: the generator's state,
        every tensor attribute (each task's fields, the episode statistics ``elapsed_steps`` and
        ``episode_return``) and the attributes a task names in ``_state_attributes``.

        A task therefore keeps its state in tensor attributes (or names its Python counters);
        loading the dict into a batch built with the same arguments continues it exactly.
        """
        return {
            "type": type(self).__name__,
            "num_envs": self.num_envs,
            "generator": self.generator.get_state(),
            "tensors": {name: getattr(self, name).clone() for name in self._state_tensor_names()},
            "attributes": {name: getattr(self, name) for name in self._state_attributes},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output; a batch of another kind or shape is a ValueError."""
        if state["type"] != type(self).__name__ or state["num_envs"] != self.num_envs:
            raise ValueError(f"the saved env state is of {state['num_envs']} {state['type']} envs, "
                             f"not of {self.num_envs} {type(self).__name__} envs")
        names = self._state_tensor_names()
        if sorted(state["tensors"]) != names:
            raise ValueError(f"the saved {type(self).__name__} state has fields {sorted(state['tensors'])}, "
                             f"expected {names}")
        for name in names:
            current, saved = getattr(self, name), state["tensors"][name]
            if saved.shape != current.shape or saved.dtype != current.dtype:
                raise ValueError(f"the saved {type(self).__name__}.{name} is {saved.dtype} {tuple(saved.shape)}, "
                                 f"expected {current.dtype} {tuple(current.shape)}")
        for name in names:
            setattr(self, name, state["tensors"][name].to(self.device).clone())
        for name, value in state["attributes"].items():
            setattr(self, name, value)
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_envs={self.num_envs}, device={str(self.device)!r})"

    # ------------------------------------------------------------------ helpers
    def _one_hot(self, index: torch.Tensor, n: int) -> torch.Tensor:
        """Float32 one-hot rows ``[..., n]`` of ``index``, for observations.

        Rows of a cached identity matrix: faster than ``F.one_hot`` on the CPU (which scans
        ``index`` for its range) and free of host syncs on every device.
        """
        eye = self._eyes.get(n)
        if eye is None:
            eye = self._eyes[n] = torch.eye(n, dtype=torch.float32, device=self.device)
        return torch.index_select(eye, 0, index.reshape(-1)).reshape(*index.shape, n)

    def _seed(self, seed: int | None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
        if not is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.generator.manual_seed(int(seed))

    def _as_action_tensor(self, actions: Any) -> torch.Tensor:
        space = self.single_action_space
        dtype = torch.float32 if isinstance(space, gym.spaces.Box) else torch.int64
        if isinstance(actions, torch.Tensor):
            if actions.device != self.device or actions.dtype != dtype:
                actions = actions.to(self.device, dtype)
            return actions
        return torch.as_tensor(np.asarray(actions), dtype=dtype, device=self.device)

    def _validate_actions(self, actions: torch.Tensor) -> None:
        """Raise a ValueError naming the bad actions and the allowed ones (reads them on the host)."""
        space = self.single_action_space
        expected = (self.num_envs, *space.shape)
        if tuple(actions.shape) != expected:
            raise ValueError(
                f"actions must have shape {expected} for {self.num_envs} envs with action space "
                f"{space}, got shape {tuple(actions.shape)}"
            )
        if isinstance(space, gym.spaces.Discrete):
            low = torch.as_tensor(int(space.start), device=self.device)
            high = low + int(space.n) - 1
        elif isinstance(space, gym.spaces.MultiDiscrete):
            low = torch.as_tensor(space.start, device=self.device)
            high = low + torch.as_tensor(space.nvec, device=self.device) - 1
        elif isinstance(space, gym.spaces.Box):
            low = torch.as_tensor(space.low, device=self.device)
            high = torch.as_tensor(space.high, device=self.device)
        else:  # pragma: no cover - tasks only use the three spaces above
            return
        bad = (actions < low) | (actions > high)
        if isinstance(space, gym.spaces.Box):
            bad |= ~torch.isfinite(actions)
        if bool(bad.any()):
            env_idx = int(bad.reshape(self.num_envs, -1).any(dim=1).nonzero()[0, 0])
            raise ValueError(
                f"action {actions[env_idx].tolist()} of env {env_idx} is outside the action "
                f"space {space}"
            )


TorchVecEnv.task_class = TorchVecEnv
