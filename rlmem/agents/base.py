"""What rlmem's agents share: config checking, env and device set-up, the learn loop, predict / evaluate, files.

The learn loop (:meth:`RecurrentAgent.learn`) is written once here, around each agent's one
iteration of collect + update: logging, progress, callbacks, checkpoints every
``checkpoint_every`` env-steps (:mod:`rlmem.agents.checkpoints`), a checkpoint and a clean stop
on SIGINT / SIGTERM, and the guard that stops a run whose loss or weights become nan or inf.
Files are read with ``weights_only=True``: loading one never runs code from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem import distributed
from rlmem.agents.acting import Actor, step_env
from rlmem.agents.checkpoints import (
    CheckpointManager,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    space_from_dict,
)
from rlmem.agents.stops import StopSignals, StorageError, TrainingDiverged, TrainingInterrupted, TrainingOutOfMemory
from rlmem.agents.training_log import TrainingLog, markdown_table
from rlmem.checks import check_positive_int, did_you_mean
from rlmem.device import resolve_device
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.contract import EnvError
from rlmem.envs.registry import make_vec_env
from rlmem.memory import UNROLL_MODES, check_memory_options, core_class

DEFAULT_CHECKPOINT_EVERY = 100_000
"""Env-steps between training checkpoints (``rlmem train --checkpoint-every``)."""
DEFAULT_KEEP_CHECKPOINTS = 3
"""Periodic checkpoints kept (``rlmem train --keep-checkpoints``); ``final.pt`` is kept besides."""


def build_config(config_cls: type, overrides: dict[str, Any]) -> Any:
    """A ``config_cls`` dataclass from ``overrides``; an unknown key is a ValueError naming it."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key in overrides:
        if key not in fields:
            raise ValueError(f"unknown hyperparameter {key!r} for {config_cls.__name__}{did_you_mean(key, fields)}")
    hints = typing.get_type_hints(config_cls)
    for key, value in overrides.items():
        expected = _SCALAR_TYPES.get(hints[key])
        if expected is not None and not fits_scalar_field(value, hints[key]):
            raise ValueError(f"{key} must be {expected}, got {type(value).__name__} {value!r}")
    config = config_cls(**overrides)
    if hasattr(config, "validate"):
        config.validate()
    return config


_SCALAR_TYPES = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}


def fits_scalar_field(value: Any, annotation: type) -> bool:
    """Whether ``value`` fits a plain float / int / bool / str config field (numpy scalars count; a bool is not a number).

    The one rule for both ways in: agent constructors (:func:`build_config`) and presets / ``--set``.
    """
    if annotation is bool:
        return isinstance(value, (bool, np.bool_))
    if isinstance(value, (bool, np.bool_)):
        return False
    if annotation is float:
        return isinstance(value, numbers.Real)
    if annotation is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, str)


def check_memory_fields(config: Any, unroll_modes: tuple[str, ...] = UNROLL_MODES) -> None:
    """The checks every agent config shares: sizes, memory core and its options, unroll mode, encoder widths.

    Turns ``encoder_sizes`` into a tuple (YAML gives a list) and fills in the core's default options.
    """
    for name in ("hidden_size", "num_layers", "n_envs"):
        check_positive_int(name, getattr(config, name))
    core_class(config.memory)  # an unknown core names the known ones
    config.memory_options = check_memory_options(config.memory, config.memory_options, config.hidden_size)
    if config.unroll not in unroll_modes:
        raise ValueError(f"unroll must be one of {unroll_modes}, got {config.unroll!r}")
    config.encoder_sizes = tuple(config.encoder_sizes)
    for size in config.encoder_sizes:
        check_positive_int("encoder_sizes entries", size)
    if not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate!r}")


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


def check_observation(obs: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """``obs`` as a ``[N, D]`` float32 batch; a wrong shape is a ValueError with both shapes."""
    obs = np.asarray(obs, dtype=np.float32)
    if obs.shape == space.shape:
        return obs[None]
    if obs.ndim == len(space.shape) + 1 and obs.shape[1:] == space.shape:
        return obs
    raise ValueError(f"observation has shape {obs.shape}; expected {space.shape} (one env) "
                     f"or (n_envs, {', '.join(map(str, space.shape))})")


def check_episode_start(episode_start: Any, n: int) -> np.ndarray:
    """``predict``'s ``episode_start`` as ``[n]`` booleans; a wrong length or type is a ValueError giving both."""
    array = np.asarray(episode_start)
    if array.dtype.kind not in "buif" or (array.dtype.kind != "b" and not np.isin(array, (0, 1)).all()):
        raise ValueError(f"episode_start must be booleans (or 0 / 1), one per env, got {array.dtype} {array.tolist()!r}")
    if array.size != n or array.ndim > 1:
        raise ValueError(f"episode_start has shape {array.shape}; expected ({n},), one flag per env of the observation")
    return array.astype(bool).reshape(n)


Callback = Callable[[Any], Any]


class RecurrentAgent:
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
    observation_space: gym.spaces.Box
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

    @property
    def planned_end(self) -> int | None:
        """The env-step count the learn call in progress (or last, or restored) trains to; None before any."""
        return self._plan["end"] if self._plan is not None else None

    def learn(self, total_timesteps: int, callback: Callback | None = None, progress_bar: bool | None = None,
              checkpoint_dir: str | Path | None = None, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
              keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS) -> RecurrentAgent:
        """Train for ``total_timesteps`` more env-steps (rounded up to whole iterations); call again to continue.

        ``callback(agent)`` runs after every iteration; returning False stops training.
        ``progress_bar``: True, False, or None for a bar on a terminal and plain lines otherwise.

        With ``checkpoint_dir``, training checkpoints go there: ``step-<N>.pt`` every
        ``checkpoint_every`` env-steps (rounded up to whole iterations; the newest
        ``keep_checkpoints`` are kept) and ``final.pt`` at the end; :meth:`restore` and
        :meth:`resume` continue from one exactly. SIGINT or SIGTERM then writes a checkpoint at
        the end of the iteration and raises :class:`TrainingInterrupted` (a second signal acts
        at once). A nan or inf loss or weight raises :class:`TrainingDiverged`, naming the step
        and the last checkpoint, and writes nothing.
        """
        check_positive_int("total_timesteps", total_timesteps)
        batch = self.steps_per_iteration
        iterations = max(1, -(-total_timesteps // batch))
        self._plan = {"start": self.num_timesteps, "end": self.num_timesteps + iterations * batch}
        return self._train(callback, progress_bar, checkpoint_dir, checkpoint_every, keep_checkpoints)

    def plan_end(self, until: int) -> int:
        """The env-step count ``resume(until)`` trains to: ``until`` rounded up to whole iterations of the
        learn call in progress (the same rounding ``learn`` applied to its own total)."""
        if self._plan is None:
            raise ValueError("nothing to resume: this agent has no learn call in progress (use learn)")
        start, batch = self._plan["start"], self.steps_per_iteration
        return start + max(1, -(-(until - start) // batch)) * batch

    def resume(self, until: int | None = None, callback: Callback | None = None, progress_bar: bool | None = None,
               checkpoint_dir: str | Path | None = None, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
               keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS) -> RecurrentAgent:
        """Finish the learn call a :meth:`restore`-d checkpoint was written in, as if it had never stopped.

        ``until``: train on to this many env-steps in all instead (rounded up to whole
        iterations of the learn call; a linear schedule then stretches to the new end).
        The other arguments are :meth:`learn`'s.
        """
        if self._plan is None:
            raise ValueError("nothing to resume: this agent has no learn call in progress (use learn)")
        if until is not None:
            check_positive_int("until", until)
            if until < self.num_timesteps:
                raise ValueError(f"cannot resume until step {until:,}: the agent has trained {self.num_timesteps:,}")
            self._plan["end"] = self.plan_end(until)
        return self._train(callback, progress_bar, checkpoint_dir, checkpoint_every, keep_checkpoints)

    def _train(self, callback: Callback | None, progress_bar: bool | None, checkpoint_dir: str | Path | None,
               checkpoint_every: int, keep_checkpoints: int) -> RecurrentAgent:
        """Iterations until the plan's end: log, guard, checkpoint, stop on a signal, call back.

        In a data-parallel run (:mod:`rlmem.distributed`) every rank runs this loop in step with
        the others: rank 0's weights are copied to all first, episode statistics and stop signals
        are summed over the ranks each iteration, and only rank 0 logs and writes checkpoints.
        """
        parallel = distributed.active()
        if parallel and not self.data_parallel:
            raise ValueError(f"data-parallel training (torchrun, WORLD_SIZE={distributed.world_size()}) is not "
                             f"supported yet for {self.algo}; run it in one process (RecurrentPPO supports it)")
        main = distributed.is_main()
        end = self._plan["end"]
        checkpoints = None
        if checkpoint_dir is not None and main:
            checkpoints = CheckpointManager(checkpoint_dir, checkpoint_every, keep_checkpoints)
        self._checkpoints = checkpoints
        self._prepare_learning()  # before the broadcast: the optimizer's state is part of what ranks share
        if parallel:
            distributed.broadcast_parameters(self._modules().values())
            if not main:  # its own sampling stream, also after a resume (which loaded rank 0's generators)
                torch.manual_seed(self.env_seed + self.num_timesteps)
                self.generator.manual_seed(self.env_seed + self.num_timesteps)
        start_steps = self.num_timesteps
        try:
            # What an earlier writer logged after this step (a run killed after its last checkpoint) is dropped.
            log = TrainingLog(self.tensorboard_log if main else None, max(end - start_steps, 1), progress_bar,
                              self.verbose if main else 0, purge_step=start_steps + 1 if start_steps else None)
            if self.num_timesteps == 0:
                log.text("hyperparameters", markdown_table({**dataclasses.asdict(self.config), "seed": self.seed}))
            stop = StopSignals() if checkpoint_dir is not None else contextlib.nullcontext()
            try:
                self._loop(log, stop, end, start_steps, parallel, checkpoints, checkpoint_dir, callback)
            except BaseException:
                log.close(quiet=True)  # the error that stopped the run is the one to tell
                raise
            log.close()
        except StorageError as error:  # a file refused or vanished: one line, and the checkpoint to go on from
            kept = f"; {checkpoints.kept()}" if checkpoints is not None else ""
            raise StorageError(f"training stopped at step {self.num_timesteps:,}: {error}{kept}") from None
        except EnvError as error:  # the env broke its contract: said as the env's fault, not as a diverged loss
            if self.num_timesteps == 0:
                raise  # at its first reset: the env's line alone
            kept = f"; {checkpoints.kept()}" if checkpoints is not None else ""
            raise EnvError(f"training stopped at step {self.num_timesteps:,}: {error}; nothing was saved from "
                           f"this iteration{kept}") from None
        return self

    def _loop(self, log: TrainingLog, stop: Any, end: int, start_steps: int, parallel: bool,
              checkpoints: CheckpointManager | None, checkpoint_dir: str | Path | None,
              callback: Callback | None) -> None:
        """The iterations of :meth:`_train` (which set them up and says how they ended)."""
        with stop:
            self.start()
            start_time = time.perf_counter()
            while self.num_timesteps < end:
                previous = self.num_timesteps
                try:
                    episodes, stats = self._iteration()
                except torch.OutOfMemoryError as error:
                    raise TrainingOutOfMemory(self._out_of_memory_message(error)) from None
                if parallel:  # every rank's episodes; a signal on any rank stops all at this iteration
                    distributed.all_reduce_(episodes)
                    signal_seen = torch.tensor([getattr(stop, "signum", None) or 0])
                    distributed.all_reduce_(signal_seen, op="max")
                    if signal_seen.item() and checkpoint_dir is not None and stop.signum is None:
                        stop.signum = int(signal_seen.item())
                sps = (self.num_timesteps - start_steps) / (time.perf_counter() - start_time)
                ep_count = int(episodes[2])
                stats = {
                    "charts/episodic_return": float(episodes[0] / ep_count) if ep_count else None,
                    "charts/episodic_length": float(episodes[1] / ep_count) if ep_count else None,
                    "charts/SPS": sps,
                    **stats,
                }
                self.last_log = {k: v for k, v in stats.items() if v is not None}
                self._check_finite(stats.get("losses/loss"))
                log.scalars(stats, self.num_timesteps)
                log.progress(self.num_timesteps - start_steps, self.num_timesteps, sps,
                             stats["charts/episodic_return"])
                if checkpoints is not None:
                    due = self.num_timesteps < end and checkpoints.due(self.num_timesteps, previous)
                    if due or stop.signum is not None:
                        log.flush()  # the events up to a checkpoint are on disk before it
                    if due:
                        checkpoints.write(self)
                    if stop.signum is not None:
                        path = checkpoints.write(self, final=self.num_timesteps >= end)
                        raise TrainingInterrupted(stop.signum, self.num_timesteps, path)
                elif checkpoint_dir is not None and stop.signum is not None:  # rank > 0: rank 0 writes it
                    raise TrainingInterrupted(stop.signum, self.num_timesteps, Path(checkpoint_dir))
                if callback is not None and callback(self) is False:
                    break
            if checkpoints is not None:
                log.flush()
                checkpoints.write(self, final=True)
                if stop.signum is not None:
                    raise TrainingInterrupted(stop.signum, self.num_timesteps, checkpoints.last_path)
            elif checkpoint_dir is not None and stop.signum is not None:
                raise TrainingInterrupted(stop.signum, self.num_timesteps, Path(checkpoint_dir))

    def _modules(self) -> dict[str, torch.nn.Module]:
        """The networks whose weights are saved (and checked for nan / inf)."""
        raise NotImplementedError

    #: What to change when an iteration does not fit in memory (agents name their own sizes).
    memory_remedy = "lower n_envs"

    def _out_of_memory_message(self, error: Exception) -> str:
        """One line for an iteration that ran out of device memory: sizes, free memory, what to change."""
        free = ""
        if self.device.type == "cuda":
            available, total = torch.cuda.mem_get_info(self.device)
            free = f" ({available:,} of {total:,} bytes free after it)"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        checkpoints = getattr(self, "_checkpoints", None)
        kept = ""
        if checkpoints is not None and checkpoints.last_path is not None:
            kept = f"; the last checkpoint is {checkpoints.last_path}"
        return (f"training stopped at step {self.num_timesteps:,}: an iteration of {self.algo} with n_envs "
                f"{self.config.n_envs:,} ran out of memory on {self.device}{free}: {first_line}; "
                f"{self.memory_remedy}; nothing was saved from this iteration{kept}")

    def _check_finite(self, loss: float | None = None) -> None:
        """Raise TrainingDiverged if ``loss`` or a weight is nan or inf (one host read for all weights)."""
        problem = None
        if loss is not None and not math.isfinite(loss):
            problem = f"the loss is {loss}"
        else:
            params = [(f"{name}.{p_name}", p) for name, module in self._modules().items()
                      for p_name, p in module.named_parameters()]
            if not bool(torch.stack([torch.isfinite(p).all() for _, p in params]).all()):
                bad = next(name for name, p in params if not bool(torch.isfinite(p).all()))
                problem = f"weight {bad} holds nan or inf"
        if problem is None:
            return
        checkpoints = getattr(self, "_checkpoints", None)
        if checkpoints is None:
            where = ""
        elif checkpoints.last_path is None:
            where = "; no checkpoint had been written yet"
        else:
            where = f"; the last good checkpoint is {checkpoints.last_path} (left as it was)"
        raise TrainingDiverged(f"training stopped at step {self.num_timesteps:,}: {problem}; nothing was saved "
                               f"from these weights{where}")

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

        ``state`` is the memory returned by the previous call (None: zeros), as numpy arrays of
        shape ``[layers, n_envs, hidden]``; ``episode_start`` ``[n_envs]`` marks envs whose
        memory must be zeroed first. An agent that feeds the previous action and reward into
        its memory takes them as ``prev_action`` and ``prev_reward`` (zeros when omitted).
        """
        obs = check_observation(observation, self.observation_space)
        n = obs.shape[0]
        obs_t = torch.as_tensor(obs, device=self.device)
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
        if np.asarray(observation).shape == self.observation_space.shape:
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

    # ------------------------------------------------------------------ files
    def _modules_state(self) -> dict[str, Any]:
        """The state dicts (and counters) a saved agent holds: networks, optimizer."""
        raise NotImplementedError

    def _load_modules_state(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _checkpoint_parts(self) -> dict[str, Any]:
        """Large training state stored in files of its own beside a training checkpoint (name: data)."""
        return {}

    def _load_checkpoint_parts(self, parts: dict[str, Any]) -> None:
        """The inverse of :meth:`_checkpoint_parts`."""

    def _training_state(self) -> dict[str, Any]:
        """What a training checkpoint adds to a saved agent (besides its parts)."""
        return {
            "plan": self._plan,
            "rng": rng_state(self),
            "env": self.env.state_dict() if self.env.restorable else None,
            "last": self._last,
        }

    def save(self, path: str | Path) -> None:
        """Write the agent (weights, optimizer, config, counters, spaces) to ``path``, atomically.

        To continue training exactly later, use ``learn(..., checkpoint_dir=...)`` and
        :meth:`restore` instead: a training checkpoint also holds the random generators, the
        env batch and (RecurrentDQN) the replay.
        """
        save_checkpoint(self, path)

    @classmethod
    def _rebuild(cls, data: dict[str, Any], env: Any, device: str | torch.device,
                 kwargs: dict[str, Any], path: str | Path = "the checkpoint") -> RecurrentAgent:
        """A new agent with a checkpoint's config, env and counters and its state dicts loaded."""
        config = dict(data["config"])
        config.pop("extra", None)
        if env is None:
            env = data["env_source"]
            kwargs = {"env_kwargs": data.get("env_kwargs") or {}, **kwargs}
        if env is None:
            raise ValueError("this agent was trained on an env given as an object; pass env= to load it")
        agent = cls(env, device=device, seed=data["seed"], **{**config, **kwargs})
        for name in ("observation_space", "action_space"):
            saved, given = space_from_dict(data[name]), getattr(agent, name)
            if saved != given:
                raise ValueError(f"the checkpoint's {name.replace('_', ' ')} {saved} does not match the env's {given}")
        agent.num_timesteps = data["num_timesteps"]
        check_saved_weights(path, data, agent._modules())
        agent._load_modules_state(data)
        return agent

    @classmethod
    def load(cls, path: str | Path, env: Any = None, device: str | torch.device = "auto",
             **kwargs: Any) -> RecurrentAgent:
        """Rebuild a saved agent; ``env`` defaults to the id (and env kwargs) it was trained on, if it had one.

        The file is read safely (tensors and plain values only; nothing in it is run) and
        checked: a damaged file, another agent's checkpoint, or spaces that differ from
        ``env``'s are each a ValueError saying so.
        """
        return cls._rebuild(load_checkpoint(path, cls.algo), env, device, kwargs, path)

    @classmethod
    def restore(cls, path: str | Path, env: Any = None, device: str | torch.device = "auto",
                **kwargs: Any) -> RecurrentAgent:
        """Rebuild an agent from a training checkpoint exactly as it was: :meth:`resume` then goes on
        as if training had never stopped (bit for bit on the CPU, for rlmem's own tasks).

        Sets torch's, numpy's and Python's global random generators to the checkpoint's. An env
        batch whose state cannot be saved (a gymnasium env stepped in numpy) restarts its
        episodes instead. ``kwargs`` go to the constructor (``tensorboard_log``, ``verbose``).
        """
        data = load_checkpoint(path, cls.algo, training=True)
        agent = cls._rebuild(data, env, device, kwargs, path)
        training = data["training"]
        agent._plan = dict(training["plan"]) if training["plan"] is not None else None
        agent._load_checkpoint_parts(training["parts"])
        # A data-parallel run's checkpoint holds rank 0's envs: the other ranks start theirs afresh.
        if training["env"] is not None and agent.env.restorable and distributed.is_main():
            agent.env.load_state_dict(training["env"])
            agent._last = _to_device(training["last"], agent.device)
        else:
            agent._last = None  # the next learn call resets the env
        set_rng_state(agent, training["rng"])
        return agent


def check_saved_weights(path: str | Path, data: dict[str, Any], modules: dict[str, torch.nn.Module]) -> None:
    """Refuse, in one line, a checkpoint whose weights do not fit the networks its own config builds, or hold
    nan / inf: before anything is evaluated or trained from it."""
    where = repr(str(path))
    for name, module in modules.items():
        saved, own = data.get(name), module.state_dict()
        if not isinstance(saved, dict):
            raise ValueError(f"{where} holds no weights for its {name}")
        missing, unexpected = [k for k in own if k not in saved], [k for k in saved if k not in own]
        if missing or unexpected:
            raise ValueError(f"{where}: its {name} weights do not fit the network its config builds "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        for key, tensor in saved.items():
            if tuple(tensor.shape) != tuple(own[key].shape):
                raise ValueError(f"{where}: its weight {name}.{key} is {list(tensor.shape)}, but its config "
                                 f"builds {list(own[key].shape)}: the config and the weights do not belong together")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{where}: its weight {name}.{key} holds nan or inf; refused")


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value
