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
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.registry import make_vec_env

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
