"""The sb3-contrib baseline: ``sb3_contrib.RecurrentPPO`` trained on an rlmem env batch.

rlmem's own agents are measured against this one, through the same run-directory outputs
(``config.yaml``, ``checkpoints/``, TensorBoard events, ``eval.json``), so both are compared
by the same commands. It steps the batch through :class:`rlmem.SB3VecEnvView`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from rlmem.device import resolve_device
from rlmem.envs.adapters import SB3VecEnvView
from rlmem.envs.registry import make_vec_env


@dataclass
class SB3BaselineConfig:
    """What a baseline run needs; written to ``config.yaml`` in the run directory."""

    env: str = "rlmem/RepeatPreviousEasy-v0"
    """Env id (rlmem or any gymnasium id)."""
    algo: str = "sb3-ppo-lstm"
    """Which agent: only the sb3-contrib RecurrentPPO baseline for now."""
    steps: int = 100_000
    """Total env-steps to train for."""
    seed: int = 0
    """Seed of the env batch and of the agent."""
    n_envs: int = 8
    """Envs stepped together."""
    n_steps: int = 128
    """Rollout length per env between updates."""
    hidden_size: int = 64
    """LSTM hidden size."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    device: str = "cpu"
    """Where the agent's network runs ('cpu', 'cuda', 'auto')."""
    eval_episodes: int = 100
    """Episodes evaluated (deterministically) at the end, into eval.json."""


class _EpisodeLogger(BaseCallback):
    """Writes rlmem's TensorBoard tags (charts/episodic_return, ...) for the SB3 baseline too."""

    def __init__(self) -> None:
        super().__init__()
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            episode = info.get("episode")
            if episode is not None:
                self.logger.record_mean("charts/episodic_return", episode["r"])
                self.logger.record_mean("charts/episodic_length", episode["l"])
        self.logger.record("charts/SPS", self.num_timesteps / (time.perf_counter() - self._start))
        return True


def evaluate_sb3(model: Any, env_id: str, n_episodes: int, seed: int, device: str = "cpu") -> dict[str, float]:
    """Deterministic returns of ``model`` over ``n_episodes`` fresh episodes, state carried per env."""
    n_envs = min(n_episodes, 64)
    venv = SB3VecEnvView(make_vec_env(env_id, n_envs, device="cpu", seed=seed))
    obs = venv.reset()
    state, starts = None, np.ones(n_envs, dtype=bool)
    returns: list[float] = []
    lengths: list[int] = []
    while len(returns) < n_episodes:
        action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        obs, _, starts, infos = venv.step(action)
        for info in infos:
            if "episode" in info and len(returns) < n_episodes:
                returns.append(info["episode"]["r"])
                lengths.append(info["episode"]["l"])
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "n_episodes": len(returns),
    }


def train_sb3_baseline(config: SB3BaselineConfig, run_dir: str | Path) -> dict[str, float]:
    """Train sb3-contrib's RecurrentPPO as ``config`` says, filling ``run_dir``; return the eval."""
    from sb3_contrib import RecurrentPPO  # the baseline; imported only when it is used

    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    venv = SB3VecEnvView(make_vec_env(config.env, config.n_envs, device="cpu", seed=config.seed))
    model = RecurrentPPO(
        "MlpLstmPolicy",
        venv,
        n_steps=config.n_steps,
        batch_size=config.n_steps * config.n_envs // 4,
        learning_rate=config.learning_rate,
        policy_kwargs={"lstm_hidden_size": config.hidden_size},
        tensorboard_log=str(run_dir),
        seed=config.seed,
        device=device,
        verbose=0,
    )
    model.learn(total_timesteps=config.steps, callback=_EpisodeLogger(), tb_log_name="tb")
    model.save(run_dir / "checkpoints" / "final.zip")
    result = evaluate_sb3(model, config.env, config.eval_episodes, seed=config.seed + 10_000)
    result["steps"] = int(model.num_timesteps)
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
