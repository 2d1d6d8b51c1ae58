"""The sb3-contrib baseline: ``sb3_contrib.RecurrentPPO`` trained on an rlmem env batch.

rlmem's own agents are measured against this one through the same run-directory outputs
(``config.yaml``, ``checkpoints/``, TensorBoard events, ``eval.json``), so both are compared
by the same commands (``rlmem train --algo sb3-ppo-lstm``, ``rlmem eval``). It steps the batch
through :class:`rlmem.SB3VecEnvView`. stable-baselines3 is imported only when a model is built.

The settings -> sb3-contrib mapping lives here once: :func:`recurrent_ppo_kwargs` for what
:class:`SB3BaselineConfig` and rlmem's ``PPOConfig`` name alike, used by the baseline agent
(:meth:`SB3BaselineConfig.model_kwargs`) and, through :func:`matched_kwargs`, by the throughput
benchmark's like-for-like sb3 runs (``rlmem throughput --what train``).
"""

from __future__ import annotations

import io
import json
import pickle
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from rlmem.agents.config import build_config
from rlmem.device import resolve_device
from rlmem.envs.adapters import SB3VecEnvView
from rlmem.checks import check_positive_int
from rlmem.envs.registry import make_vec_env

if TYPE_CHECKING:
    from rlmem.agents.ppo import PPOConfig


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
        kwargs = recurrent_ppo_kwargs(self)
        kwargs["policy_kwargs"].update(
            net_arch={"pi": list(self.net_arch), "vf": list(self.net_arch)},
            enable_critic_lstm=self.enable_critic_lstm,
            shared_lstm=False,
        )
        return kwargs


# ---------------------------------------------------------------------------- rlmem settings -> sb3-contrib
def recurrent_ppo_kwargs(config: SB3BaselineConfig | PPOConfig) -> dict[str, Any]:
    """``sb3_contrib.RecurrentPPO``'s keyword arguments for the settings both configs name alike.

    ``config`` is an :class:`SB3BaselineConfig` or rlmem's ``PPOConfig`` (the same field names
    mean the same there): the rollout and batch (``batch_size`` = ``n_envs * n_steps /
    n_minibatches``, so both take ``n_minibatches`` gradient steps per epoch), the optimisation
    and the LSTM's size. ``policy_kwargs`` holds only the LSTM's size; the callers add the rest
    of the network (:meth:`SB3BaselineConfig.model_kwargs`, :func:`matched_kwargs`).
    """
    return {
        "n_steps": config.n_steps,
        "batch_size": config.n_envs * config.n_steps // config.n_minibatches,
        "n_epochs": config.n_epochs,
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "clip_range": config.clip_range,
        "clip_range_vf": config.clip_range_vf,
        "normalize_advantage": config.normalize_advantage,
        "ent_coef": config.ent_coef,
        "vf_coef": config.vf_coef,
        "max_grad_norm": config.max_grad_norm,
        "target_kl": config.target_kl,
        "policy_kwargs": {
            "lstm_hidden_size": config.hidden_size,
            "n_lstm_layers": config.num_layers,
        },
    }


def unsupported(config: PPOConfig) -> str | None:
    """Why sb3-contrib's RecurrentPPO cannot match rlmem's PPO ``config`` (None when it can)."""
    if config.memory != "lstm":
        return f"memory={config.memory!r} (sb3-contrib's RecurrentPPO has only an LSTM)"
    if config.prev_action_reward:
        return "prev_action_reward=True (sb3-contrib's policy sees only the observation)"
    return None


def matched_kwargs(config: PPOConfig, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments for ``sb3_contrib.RecurrentPPO("MlpLstmPolicy", env, ...)`` matching rlmem's
    RecurrentPPO with ``config``, like for like (the throughput benchmark's sb3 baseline).

    On top of :func:`recurrent_ppo_kwargs`: a linear learning-rate schedule for
    ``lr_schedule="linear"``; rlmem's network: the same Tanh MLP encoder before the LSTM
    (``encoder_sizes``, as a features extractor), linear actor and critic heads right on the LSTM
    output (``net_arch=[]``), the critic sharing the actor's LSTM unless
    ``separate_critic_memory``, orthogonal initialisation and Adam with ``eps=1e-5``; the seed.
    Raises a ValueError where it cannot match (:func:`unsupported`). docs/benchmarks.md says
    what stays as each library does it.
    """
    reason = unsupported(config)
    if reason is not None:
        raise ValueError(f"sb3-contrib's RecurrentPPO cannot match {reason}")
    kwargs = recurrent_ppo_kwargs(config)
    if config.lr_schedule == "linear":
        lr0 = config.learning_rate

        def learning_rate(progress_remaining: float) -> float:  # 1 -> 0, like rlmem's schedule
            return lr0 * progress_remaining

        kwargs["learning_rate"] = learning_rate
    separate = config.separate_critic_memory
    kwargs["policy_kwargs"].update(
        shared_lstm=not separate,
        enable_critic_lstm=separate,
        net_arch=[],
        activation_fn=torch.nn.Tanh,
        features_extractor_class=encoder_extractor_class(),
        features_extractor_kwargs={"sizes": tuple(config.encoder_sizes)},
        ortho_init=True,
        optimizer_kwargs={"eps": 1e-5},
    )
    kwargs["seed"] = seed
    return kwargs


def encoder_extractor_class() -> type:
    """An sb3 features extractor that is rlmem's encoder: flatten, then Linear+Tanh layers."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class MlpEncoder(BaseFeaturesExtractor):
        def __init__(self, observation_space: Any, sizes: Sequence[int] = (64,)) -> None:
            in_size = int(np.prod(observation_space.shape))
            super().__init__(observation_space, int(sizes[-1]) if sizes else in_size)
            layers: list[torch.nn.Module] = [torch.nn.Flatten()]
            for fan_in, fan_out in zip([in_size, *sizes[:-1]], sizes):
                layers += [torch.nn.Linear(fan_in, int(fan_out)), torch.nn.Tanh()]
            self.net = torch.nn.Sequential(*layers)

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.net(observations)

    return MlpEncoder


def describe_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` (as :func:`matched_kwargs` makes them) with classes and callables as names, for JSON."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, type):
            return value.__name__
        if callable(value):
            return "linear schedule"
        if isinstance(value, tuple):
            return list(value)
        return value

    return plain(kwargs)


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
        batch = make_vec_env(env, self.config.n_envs, device="cpu", seed=seed)
        space = batch.single_observation_space
        if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
            batch.close()
            name = env if isinstance(env, str) else getattr(env, "__name__", type(env).__name__)
            raise ValueError(f"sb3-ppo-lstm runs sb3-contrib's MlpLstmPolicy on one observation array; {name}'s "
                             f"observation space is {type(space).__name__} ({space}): use --algo ppo, whose "
                             "encoder takes one entry at a time")
        self.venv = SB3VecEnvView(batch)
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
        """stable-baselines3's zip, written atomically (a crash or a full disk leaves the previous file whole)."""
        from rlmem.files import atomic_write

        atomic_write(path, self.model.save, binary=True)

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
