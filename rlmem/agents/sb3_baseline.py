"""The sb3-contrib baseline: ``sb3_contrib.RecurrentPPO`` trained on an rlmem env batch.

rlmem's own agents are measured against this one through the same run-directory outputs
(``config.yaml``, ``checkpoints/``, TensorBoard events, ``eval.json``), so both are compared
by the same commands (``rlmem train --algo sb3-ppo-lstm``, ``rlmem eval``). It steps the batch
through :class:`rlmem.SB3VecEnvView`. stable-baselines3 is imported only when a model is built.
"""

from __future__ import annotations

import io
import json
import pickle
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmem.agents.base import build_config
from rlmem.device import resolve_device
from rlmem.envs.adapters import SB3VecEnvView
from rlmem.checks import check_positive_int
from rlmem.envs.registry import make_vec_env


@dataclass
class SB3BaselineConfig:
    """sb3-contrib RecurrentPPO's hyperparameters, named as in PPOConfig where they mean the same.

    The defaults are rlmem's ppo-lstm values wherever sb3-contrib has the same knob, so a
    comparison of the two is one of implementations, not of settings (agents/sb3-ppo-lstm.yaml).
    """

    memory: str = "lstm"
    """Memory core: only 'lstm' (sb3-contrib's RecurrentPPO has no GRU)."""
    hidden_size: int = 64
    """LSTM hidden size (sb3's lstm_hidden_size)."""
    num_layers: int = 1
    """Stacked LSTM layers (sb3's n_lstm_layers)."""
    net_arch: tuple[int, ...] = (64, 64)
    """Widths of the MLPs after the LSTM, one for the actor and one for the critic (sb3's net_arch)."""
    enable_critic_lstm: bool = True
    """Give the critic an LSTM of its own (sb3's default); False: the critic sees no memory."""
    n_envs: int = 64
    """Envs stepped together."""
    n_steps: int = 64
    """Steps per env in one rollout."""
    n_minibatches: int = 4
    """Minibatches per epoch; sb3's batch_size is n_envs * n_steps / n_minibatches."""
    n_epochs: int = 4
    """Passes over each rollout."""
    learning_rate: float = 5e-3
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.7
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO's policy ratio clip."""
    clip_range_vf: float | None = None
    """Clip of the value change per update (None: no value clipping)."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    target_kl: float | None = None
    """Stop an update's epochs early once the approximate KL exceeds this (None: never)."""

    def validate(self) -> None:
        """Raise a ValueError naming the first field that breaks a rule."""
        for name in ("hidden_size", "num_layers", "n_envs", "n_steps", "n_minibatches", "n_epochs"):
            check_positive_int(name, getattr(self, name))
        if self.memory != "lstm":
            raise ValueError(f"memory must be 'lstm' for sb3-ppo-lstm (sb3-contrib has no GRU), got {self.memory!r}")
        self.net_arch = tuple(self.net_arch)
        for size in self.net_arch:
            check_positive_int("net_arch entries", size)
        rollout = self.n_envs * self.n_steps
        if rollout % self.n_minibatches:
            raise ValueError(f"n_minibatches ({self.n_minibatches}) must divide n_envs * n_steps "
                             f"({self.n_envs} * {self.n_steps} = {rollout})")
        if rollout // self.n_minibatches < 2:
            raise ValueError(f"n_envs * n_steps / n_minibatches ({rollout} / {self.n_minibatches}) must be >= 2: "
                             "sb3 needs minibatches of at least 2 steps")
        for name in ("learning_rate", "clip_range"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")

    def model_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``sb3_contrib.RecurrentPPO`` these settings mean."""
        return {
            "n_steps": self.n_steps,
            "batch_size": self.n_envs * self.n_steps // self.n_minibatches,
            "n_epochs": self.n_epochs,
            "learning_rate": self.learning_rate,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "clip_range": self.clip_range,
            "clip_range_vf": self.clip_range_vf,
            "normalize_advantage": self.normalize_advantage,
            "ent_coef": self.ent_coef,
            "vf_coef": self.vf_coef,
            "max_grad_norm": self.max_grad_norm,
            "target_kl": self.target_kl,
            "policy_kwargs": {
                "lstm_hidden_size": self.hidden_size,
                "n_lstm_layers": self.num_layers,
                "net_arch": {"pi": list(self.net_arch), "vf": list(self.net_arch)},
                "enable_critic_lstm": self.enable_critic_lstm,
                "shared_lstm": False,
            },
        }


def _episode_logger(verbose: int) -> Any:
    """A callback writing rlmem's TensorBoard tags (charts/episodic_return, ...) for the baseline too."""
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeLogger(BaseCallback):
        def _on_training_start(self) -> None:
            self._start, self._start_steps = time.perf_counter(), self.num_timesteps
            self._last_print = self._start
            self._recent: list[float] = []

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                episode = info.get("episode")
                if episode is not None:
                    self.logger.record_mean("charts/episodic_return", episode["r"])
                    self.logger.record_mean("charts/episodic_length", episode["l"])
                    self._recent = [*self._recent[-99:], float(episode["r"])]
            self.logger.record("charts/SPS", self._sps())
            if verbose > 0 and time.perf_counter() - self._last_print > 10:
                self._print()
            return True

        def _on_training_end(self) -> None:
            if verbose > 0:
                self._print()

        def _sps(self) -> float:
            return (self.num_timesteps - self._start_steps) / max(time.perf_counter() - self._start, 1e-9)

        def _print(self) -> None:
            self._last_print = time.perf_counter()
            ret = f"{np.mean(self._recent):.3f}" if self._recent else "n/a"
            print(f"step {self.num_timesteps:>10,}  SPS {self._sps():>10,.0f}  return {ret}", flush=True)

    return EpisodeLogger()


class SB3Baseline:
    """``sb3_contrib.RecurrentPPO`` behind RecurrentPPO's API (``learn``, ``evaluate``, ``save``, ``load``).

    ``env`` is an env id; hyperparameters are the fields of :class:`SB3BaselineConfig`.
    TensorBoard events go straight into ``tensorboard_log`` (no ``tb_1/`` subfolder), as
    RecurrentPPO's do.
    """

    algo = "sb3-ppo-lstm"

    def __init__(self, env: str, device: str | torch.device = "auto", seed: int = 0,
                 tensorboard_log: str | Path | None = None, verbose: int = 1, **hyperparameters: Any) -> None:
        from sb3_contrib import RecurrentPPO

        self.config = build_config(SB3BaselineConfig, hyperparameters)
        self.env_id, self.seed, self.verbose = env, seed, verbose
        self.device = resolve_device(device)
        torch.manual_seed(seed)
        self.venv = SB3VecEnvView(make_vec_env(env, self.config.n_envs, device="cpu", seed=seed))
        self.model = RecurrentPPO("MlpLstmPolicy", self.venv, seed=seed, device=self.device, verbose=0,
                                  **self.config.model_kwargs())
        if tensorboard_log is not None:
            self.set_tensorboard_log(tensorboard_log)

    def set_tensorboard_log(self, log_dir: str | Path) -> None:
        """Write TensorBoard events (only) into ``log_dir``."""
        from stable_baselines3.common.logger import configure

        self.model.set_logger(configure(str(log_dir), ["tensorboard"]))

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    def learn(self, total_timesteps: int) -> SB3Baseline:
        """Train for ``total_timesteps`` env-steps (rounded up to whole rollouts, as sb3 does)."""
        check_positive_int("total_timesteps", total_timesteps)
        self.model.learn(total_timesteps=total_timesteps, callback=_episode_logger(self.verbose),
                         reset_num_timesteps=False)
        return self

    def evaluate(self, n_episodes: int = 100, seed: int | None = None) -> dict[str, float]:
        """Deterministic returns over ``n_episodes`` fresh episodes (see :func:`evaluate_sb3`)."""
        return evaluate_sb3(self.model, self.env_id, n_episodes, self.seed + 1 if seed is None else seed)

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.model.save(path)

    @classmethod
    def load(cls, path: str | Path, env: str, device: str | torch.device = "auto", seed: int = 0,
             **hyperparameters: Any) -> SB3Baseline:
        """A saved model to evaluate on ``env``, built from ``hyperparameters`` (the run's config.yaml).

        Only the policy's weights (``policy.pth``, read with ``weights_only=True``) and the step
        count (plain JSON) are read from the file: stable-baselines3's own ``load`` would unpickle
        the objects stored in its ``data`` entry (cloudpickle), running any code they carry.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"checkpoint {str(path)!r} does not exist")
        try:
            with zipfile.ZipFile(path) as archive:
                data = json.loads(archive.read("data"))
                weights = archive.read("policy.pth")
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
            raise ValueError(f"{str(path)!r} is not a stable-baselines3 checkpoint, or it is damaged "
                             f"({type(error).__name__})") from None
        try:
            state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(f"{str(path)!r} is refused: its policy.pth holds a Python object that only running code "
                             "from the file could rebuild; nothing from it was run") from None
        except Exception as error:
            raise ValueError(f"{str(path)!r} is damaged: its policy.pth could not be read "
                             f"({type(error).__name__})") from None
        steps = data.get("num_timesteps") if isinstance(data, dict) else None
        if not isinstance(steps, int) or not isinstance(state, dict):
            raise ValueError(f"{str(path)!r} is not a stable-baselines3 RecurrentPPO checkpoint")
        agent = cls(env, device=device, seed=seed, verbose=0, **hyperparameters)
        try:
            agent.model.policy.load_state_dict(state)
        except RuntimeError:
            raise ValueError(f"{str(path)!r} holds a network that does not match the run's hyperparameters "
                             "and env") from None
        agent.model.num_timesteps = steps
        return agent


def evaluate_sb3(model: Any, env_id: str, n_episodes: int, seed: int) -> dict[str, float]:
    """Deterministic returns of ``model`` over ``n_episodes`` fresh episodes, state carried per env.

    Every env contributes its first episodes, spread evenly (as RecurrentPPO.evaluate does), so
    short episodes are not favoured.
    """
    check_positive_int("n_episodes", n_episodes)
    n_envs = min(n_episodes, 64)
    targets = [(n_episodes + i) // n_envs for i in range(n_envs)]
    venv = SB3VecEnvView(make_vec_env(env_id, n_envs, device="cpu", seed=seed))
    obs = venv.reset()
    state, starts = None, np.ones(n_envs, dtype=bool)
    counts = [0] * n_envs
    returns: list[float] = []
    lengths: list[int] = []
    while any(c < t for c, t in zip(counts, targets, strict=True)):
        action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        obs, _, starts, infos = venv.step(action)
        for i, info in enumerate(infos):
            if "episode" in info:
                if counts[i] < targets[i]:
                    returns.append(float(info["episode"]["r"]))
                    lengths.append(int(info["episode"]["l"]))
                counts[i] += 1
    venv.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "n_episodes": len(returns),
    }
