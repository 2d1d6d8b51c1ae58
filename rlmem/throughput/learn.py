"""The learn measurement: wall-clock seconds for rlmem's RecurrentPPO to reach a training
episodic return, per seed, and the median over seeds.

What it measures, and how: docs/benchmarks.md, "How ``rlmem throughput`` measures".
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Sequence

import torch

from rlmem.agents.ppo import RecurrentPPO
from rlmem.throughput.settings import LEARN_EVAL_EPISODES, hyperparameters, learn_config
from rlmem.throughput.timing import sync_for


def warm_up_learn(env_id: str, device: str, overrides: dict[str, Any]) -> float:
    """Build a throwaway agent and train it one iteration; return the seconds it took.

    Untimed warm-up before a device's first seed: the first agent of a process pays one-time
    costs (lazy imports, env registration, first-call kernels; ~2 s here) that are not learning.
    """
    dev = torch.device(device)
    config = learn_config(overrides)
    start = time.perf_counter()
    agent = RecurrentPPO(env_id, device=dev, seed=0, verbose=0, **hyperparameters(config))
    agent.learn(config.n_envs * config.n_steps, progress_bar=False)
    sync_for(dev)()
    agent.env.close()
    return time.perf_counter() - start


def measure_learn(
    env_id: str, device: str, seed: int, threshold: float, budget: int, overrides: dict[str, Any],
    eval_episodes: int = LEARN_EVAL_EPISODES,
) -> dict[str, Any]:
    """Wall-clock seconds until RecurrentPPO's training episodic return reaches ``threshold``.

    The clock starts before the agent (and its env batch) is built and stops in the ``learn``
    callback after the first iteration whose ``charts/episodic_return`` (the mean return of the
    episodes that ended in that iteration's rollout) is >= ``threshold``, which also stops
    training; ``budget`` env-steps at most. Then, untimed, a deterministic
    ``evaluate(eval_episodes)``.
    """
    dev = torch.device(device)
    config = learn_config(overrides)
    sync = sync_for(dev)
    reached: dict[str, Any] = {}
    start = time.perf_counter()
    agent = RecurrentPPO(env_id, device=dev, seed=seed, verbose=0, **hyperparameters(config))
    iterations = 0

    def callback(a: RecurrentPPO) -> bool:
        nonlocal iterations
        iterations += 1
        ret = a.last_log.get("charts/episodic_return")
        if ret is not None and ret >= threshold:
            sync()
            reached.update(seconds=time.perf_counter() - start, steps=a.num_timesteps,
                           iterations=iterations, episodic_return=ret)
            return False
        return True

    agent.learn(budget, callback=callback, progress_bar=False)
    sync()
    train_s = time.perf_counter() - start
    eval_start = time.perf_counter()
    evaluation = agent.evaluate(eval_episodes, deterministic=True)
    eval_s = time.perf_counter() - eval_start
    agent.env.close()
    return {
        "what": "learn", "impl": "rlmem", "env": env_id, "device": str(dev), "threshold": threshold,
        "seconds_to_threshold": reached.get("seconds"), "steps_to_threshold": reached.get("steps"),
        "iterations_to_threshold": reached.get("iterations"),
        "eval_mean_return": evaluation["mean_return"], "eval_std_return": evaluation["std_return"],
        "eval_episodes": evaluation["n_episodes"], "seeds": [seed], "seed": seed, "aggregate": None,
        "reached": bool(reached), "budget": budget, "num_timesteps": agent.num_timesteps,
        "iterations": iterations, "train_seconds": train_s, "eval_seconds": eval_s,
        "last_episodic_return": agent.last_log.get("charts/episodic_return"),
    }


def median(values: Sequence[float | None]) -> float | None:
    """The median, counting None (not reached) as +infinity; None if that median is infinite."""
    if not values:
        return None
    med = statistics.median(math.inf if v is None else float(v) for v in values)
    return None if math.isinf(med) else med


def learn_median_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median over seeds of per-seed ``learn`` rows (one env, device and threshold)."""
    first = rows[0]
    steps = median([r["steps_to_threshold"] for r in rows])
    return {
        "what": "learn", "impl": "rlmem", "env": first["env"], "device": first["device"],
        "threshold": first["threshold"], "seconds_to_threshold": median([r["seconds_to_threshold"] for r in rows]),
        "steps_to_threshold": None if steps is None else round(steps),
        "eval_mean_return": statistics.median(r["eval_mean_return"] for r in rows),
        "seeds": [r["seed"] for r in rows], "seed": None, "aggregate": "median",
        "reached_seeds": sum(r["reached"] for r in rows), "budget": first["budget"],
    }
