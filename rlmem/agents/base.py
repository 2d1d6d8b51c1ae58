"""What rlmem's agents share: config checking, env and device set-up, checkpoints, logging.

Checkpoints are plain ``torch.save`` dicts of tensors and JSON-like values, loaded with
``weights_only=True``: loading one never runs code from the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem.device import resolve_device
from rlmem.envs.base import TorchVecEnv, check_positive_int
from rlmem.envs.registry import make_vec_env
from rlmem.memory import CORES, UNROLL_MODES

CHECKPOINT_FORMAT = "rlmem-checkpoint"


def build_config(config_cls: type, overrides: dict[str, Any]) -> Any:
    """A ``config_cls`` dataclass from ``overrides``; an unknown key is a ValueError naming it."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key in overrides:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown hyperparameter {key!r} for {config_cls.__name__}{hint}")
    config = config_cls(**overrides)
    if hasattr(config, "validate"):
        config.validate()
    return config


def check_memory_fields(config: Any) -> None:
    """The checks every agent config shares: sizes, memory core, unroll mode, encoder widths.

    Turns ``encoder_sizes`` into a tuple (YAML gives a list).
    """
    for name in ("hidden_size", "num_layers", "n_envs"):
        check_positive_int(name, getattr(config, name))
    if config.memory not in CORES:
        raise ValueError(f"memory must be one of {sorted(CORES)}, got {config.memory!r}")
    if config.unroll not in UNROLL_MODES:
        raise ValueError(f"unroll must be one of {UNROLL_MODES}, got {config.unroll!r}")
    config.encoder_sizes = tuple(config.encoder_sizes)
    for size in config.encoder_sizes:
        check_positive_int("encoder_sizes entries", size)
    if not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate!r}")


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A JSON-like description of a Box / Discrete / MultiDiscrete space (for checkpoints)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist()}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(),
                "shape": list(space.shape), "dtype": str(space.dtype)}
    raise ValueError(f"unsupported space {space}; rlmem supports Box, Discrete and MultiDiscrete")


def space_from_dict(spec: dict[str, Any]) -> gym.Space:
    """The inverse of :func:`space_to_dict`."""
    if spec["type"] == "Discrete":
        return gym.spaces.Discrete(spec["n"], start=spec["start"])
    if spec["type"] == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(spec["nvec"])
    return gym.spaces.Box(np.array(spec["low"], dtype=spec["dtype"]), np.array(spec["high"], dtype=spec["dtype"]),
                          tuple(spec["shape"]), np.dtype(spec["dtype"]))


def load_checkpoint(path: str | Path, algo: str) -> dict[str, Any]:
    """Read an rlmem checkpoint of ``algo`` safely (no unpickling of arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or damaged files
        raise ValueError(f"{str(path)!r} is not an rlmem checkpoint (it could not be read safely: "
                         f"{type(error).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not an rlmem checkpoint")
    if data.get("algo") != algo:
        raise ValueError(f"{str(path)!r} holds a {data.get('algo')} agent, not a {algo}")
    return data


def make_agent_env(env: Any, n_envs: int, device: str | torch.device, seed: int | None) -> tuple[TorchVecEnv, torch.device]:
    """The training batch and the device the agent runs on (``"auto"``: the env's, or cuda if present)."""
    if isinstance(env, TorchVecEnv):
        agent_device = env.device if device == "auto" else resolve_device(device)
        return env, agent_device
    agent_device = resolve_device(device)
    return make_vec_env(env, n_envs, device=agent_device, seed=seed), agent_device


def check_observation(obs: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """``obs`` as a ``[N, D]`` float32 batch; a wrong shape is a ValueError with both shapes."""
    obs = np.asarray(obs, dtype=np.float32)
    if obs.shape == space.shape:
        return obs[None]
    if obs.ndim == len(space.shape) + 1 and obs.shape[1:] == space.shape:
        return obs
    raise ValueError(f"observation has shape {obs.shape}; expected {space.shape} (one env) "
                     f"or (n_envs, {', '.join(map(str, space.shape))})")


class TrainingLog:
    """TensorBoard events plus a progress display: a bar on a terminal, plain lines otherwise."""

    def __init__(self, log_dir: str | Path | None, total: int, progress_bar: bool | None, verbose: int) -> None:
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir))
        interactive = sys.stderr.isatty() if progress_bar is None else progress_bar
        self.bar = None
        if interactive and verbose > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", unit_scale=True, dynamic_ncols=True)
        self.verbose, self.total = verbose, total
        self._last_print = -math.inf
        self._start = time.perf_counter()

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(tag, value, step)

    def progress(self, done: int, step: int, sps: float, recent_return: float | None) -> None:
        """Advance the display to ``done`` of ``total`` steps (this learn call); ``step`` is global."""
        ret = "n/a" if recent_return is None else f"{recent_return:.3f}"
        if self.bar is not None:
            self.bar.n = min(done, self.total)
            self.bar.set_postfix_str(f"SPS {sps:,.0f} return {ret}", refresh=True)
        elif self.verbose > 0 and (time.perf_counter() - self._last_print > 10 or done >= self.total):
            self._last_print = time.perf_counter()
            print(f"step {step:>10,}  ({100 * min(done, self.total) / self.total:5.1f}%)  "
                  f"SPS {sps:>10,.0f}  return {ret}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def save_checkpoint(agent: Any, path: str | Path, **tensors: Any) -> None:
    """Write ``agent`` (its config, seed, counters, spaces, env id) and ``tensors`` (state dicts) to ``path``."""
    from rlmem import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": CHECKPOINT_FORMAT,
        "rlmem_version": __version__,
        "algo": agent.algo,
        "config": dataclasses.asdict(agent.config),
        "seed": agent.seed,
        "num_timesteps": agent.num_timesteps,
        "observation_space": space_to_dict(agent.observation_space),
        "action_space": space_to_dict(agent.action_space),
        "env_source": agent.env_source,
        **tensors,
    }, path)


def rebuild_agent(cls: type, path: str | Path, env: Any, device: str | torch.device,
                  kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A new ``cls`` agent with a checkpoint's config and counters, and the checkpoint's data.

    ``env`` defaults to the id it was trained on (if it had one); the spaces must match. The
    caller loads its own state dicts from the data.
    """
    data = load_checkpoint(path, cls.algo)
    config = data["config"]
    config.pop("extra", None)
    env = env if env is not None else data["env_source"]
    if env is None:
        raise ValueError("this agent was trained on an env given as an object; pass env= to load it")
    agent = cls(env, device=device, seed=data["seed"], **{**config, **kwargs})
    for name in ("observation_space", "action_space"):
        saved, given = space_from_dict(data[name]), getattr(agent, name)
        if saved != given:
            raise ValueError(f"the checkpoint's {name.replace('_', ' ')} {saved} does not match the env's {given}")
    agent.num_timesteps = data["num_timesteps"]
    return agent, data


def markdown_table(values: dict[str, Any]) -> str:
    """A two-column markdown table (hyperparameters as TensorBoard text)."""
    rows = "\n".join(f"|{key}|{value}|" for key, value in values.items())
    return f"|param|value|\n|-|-|\n{rows}"


Callback = Callable[[Any], Any]


class RecurrentAgent:
    """What RecurrentPPO and RecurrentDQN share once trained: ``predict`` and ``evaluate``.

    A subclass has ``env``, ``env_source``, ``device``, ``seed``, ``observation_space``,
    ``action_space`` and ``_last`` (its position in the training env), and implements
    :meth:`_initial_state` and :meth:`_act_step`; :meth:`_setup` gives it the first ones.
    """

    env: TorchVecEnv
    env_source: str | None
    device: torch.device
    seed: int
    observation_space: gym.spaces.Box
    action_space: gym.Space
    _last: dict[str, Any] | None

    def _setup(self, config_cls: type, overrides: dict[str, Any], env: Any, device: str | torch.device,
               seed: int, tensorboard_log: str | Path | None, verbose: int) -> None:
        """Config (checked), seeding, the training env and the counters every agent starts with."""
        self.config = build_config(config_cls, overrides)
        self.seed = seed
        torch.manual_seed(seed)
        self.env_source = env if isinstance(env, str) else None
        self.env, self.device = make_agent_env(env, self.config.n_envs, device, seed)
        self.config.n_envs = self.env.num_envs
        self.config.validate()
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose
        self.num_timesteps = 0
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self._last = None  # position in the training env between learn calls
        self.last_log: dict[str, float] = {}

    def _initial_state(self, n: int) -> tuple[torch.Tensor, ...]:
        """Zero memory for ``n`` envs."""
        raise NotImplementedError

    def _act_step(self, obs: torch.Tensor, state: tuple[torch.Tensor, ...], episode_start: torch.Tensor,
                  prev_action: torch.Tensor, prev_reward: torch.Tensor,
                  deterministic: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One acting step: the agent's actions (as it stores them) and the new memory state."""
        raise NotImplementedError

    def _env_action(self, action: torch.Tensor) -> torch.Tensor:
        """The agent's actions as the env takes them (clipped to a Box, shifted by a Discrete start)."""
        if isinstance(self.action_space, gym.spaces.Box):
            low = torch.as_tensor(self.action_space.low, device=action.device)
            high = torch.as_tensor(self.action_space.high, device=action.device)
            return torch.clamp(action, low, high)
        if isinstance(self.action_space, gym.spaces.Discrete) and self.action_space.start != 0:
            return action + int(self.action_space.start)
        return action

    def _action_dtype(self) -> torch.dtype:
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
        if state is None:
            state_t = self._initial_state(n)
        else:
            state_t = tuple(torch.as_tensor(np.asarray(s), dtype=torch.float32, device=self.device) for s in state)
        start = np.zeros(n, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool).reshape(n)
        start_t = torch.as_tensor(start, device=self.device)
        pa = torch.zeros((n, *self.action_space.shape), dtype=self._action_dtype(), device=self.device)
        if prev_action is not None:
            pa = torch.as_tensor(np.asarray(prev_action), dtype=pa.dtype, device=self.device).reshape(pa.shape)
        pr = torch.zeros(n, device=self.device)
        if prev_reward is not None:
            pr = torch.as_tensor(np.asarray(prev_reward), dtype=torch.float32, device=self.device).reshape(n)
        action, new_state = self._act_step(obs_t, state_t, start_t, pa, pr, deterministic)
        actions = self._env_action(action).cpu().numpy()
        if np.asarray(observation).shape == self.observation_space.shape:
            actions = actions[0]
        return actions, tuple(s.cpu().numpy() for s in new_state)

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
        if env is None:
            if self.env_source is not None:
                env = self.env_source
            else:
                env = self.env
                self._last = None  # training resumes from a reset
        seed = self.seed + 1 if seed is None else seed
        n = min(n_episodes, self.env.num_envs if isinstance(env, str) or env is self.env else 64)
        batch, _ = make_agent_env(env, n, self.device, seed)
        n = batch.num_envs
        targets = torch.tensor([(n_episodes + i) // n for i in range(n)], device=self.device)
        obs, _ = batch.reset(seed=seed)
        obs = obs.to(self.device)
        state = self._initial_state(n)
        start = torch.ones(n, dtype=torch.bool, device=self.device)
        prev_action = torch.zeros((n, *self.action_space.shape), dtype=self._action_dtype(), device=self.device)
        prev_reward = torch.zeros(n, device=self.device)
        counts = torch.zeros(n, dtype=torch.int64, device=self.device)
        returns: list[torch.Tensor] = []
        lengths: list[torch.Tensor] = []
        while bool((counts < targets).any()):
            if memory == "reset":
                start = torch.ones_like(start)
            action, state = self._act_step(obs, state, start, prev_action, prev_reward, deterministic)
            obs, reward, terminated, truncated, info = batch.step(self._env_action(action))
            obs, reward = obs.to(self.device), reward.to(self.device)
            done = (terminated | truncated).to(self.device)
            wanted = done & (counts < targets)
            returns.append(info["episode"]["r"].to(self.device)[wanted])
            lengths.append(info["episode"]["l"].to(self.device)[wanted])
            counts += done.long()
            start, prev_action, prev_reward = done, action, reward
        if batch is not self.env:
            batch.close()
        r = torch.cat(returns).double().cpu().numpy()
        lens = torch.cat(lengths).double().cpu().numpy()
        return {"mean_return": float(r.mean()), "std_return": float(r.std()), "mean_length": float(lens.mean()),
                "n_episodes": int(r.size)}
