"""What a trained agent's memory holds: recall curves, linear probes of its state, its memory horizon.

Three measurements, from the outside in:

* :func:`recall_curve` (behaviour): the agent is evaluated on its task with the task's lag
  swept (RepeatPrevious's ``k``, PassiveTMaze's ``corridor_length``, MemoryChain's
  ``memory_length``); success is the fraction of recalls it gets right, against the lag.
* :func:`probe_curve` (representation): pairs (memory state at step t, observation at step
  t - k) are collected from a rollout, a linear read-out (ridge regression) is fitted per lag k on 70% of the
  envs and scored on the other 30%; :func:`probe_agent` does the same for an untrained agent of
  the same shape, so what the training put into the memory shows against what a random
  recurrent network carries anyway.
* :func:`memory_horizon`: one number per agent, the largest lag the probe still reads at
  ``HORIZON_THRESHOLD`` accuracy (:data:`HORIZON_RULE` says exactly how).

The probe's score is *balanced* accuracy (the mean over classes of the fraction of that class
read correctly), so a read-out that ignores the state scores 1 / (number of classes) however
uneven the classes are: that is the chance line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlmem.agents.acting import Actor, Transition, step_env
from rlmem.checks import check_int, check_positive_int
from rlmem.envs.base import PROBE_MAX_CLASSES as MAX_CLASSES  # noqa: F401 (kept importable from here)
from rlmem.envs.base import TorchVecEnv

HORIZON_THRESHOLD = 0.9
"""Probe accuracy a lag must reach to count as held in memory."""

HORIZON_RULE = ("memory horizon = the largest lag h such that the probe's held-out balanced accuracy is >= 0.9 "
                "at every lag 0..h; -1 if lag 0 is already below 0.9")
"""The rule behind :func:`memory_horizon`, written next to every horizon rlmem reports."""


# ---------------------------------------------------------------------- tasks with a lag
@dataclass(frozen=True)
class LagTask:
    """How a task's lag is swept and how its return converts to a fraction of recalls right.

    A view of the task's own facts (:attr:`~rlmem.envs.base.TorchVecEnv.lag_parameter` and the
    methods beside it), made by :func:`lag_task`.
    """

    parameter: str
    """The task's keyword argument that sets the lag."""
    kwargs: Callable[[Any, int], dict[str, Any]]
    """(an env of the level, lag) -> the task's keyword arguments at that lag, the rest as the level's."""
    accuracy: Callable[[float], float]
    """Mean episode return -> fraction of recalls right (every recall is rewarded the same)."""
    chance: Callable[[Any], float]
    """An env of the level -> the fraction right of a policy without memory."""


def lag_task(env_id: str) -> tuple[type[TorchVecEnv], LagTask]:
    """The task class and :class:`LagTask` of ``env_id``; a ValueError names the tasks that have a lag."""
    from rlmem.envs.registry import TASKS, unknown_env_error

    with_lag = ", ".join(dict.fromkeys(c.task_class.__name__ for c in TASKS.values()
                                      if c.lag_parameter is not None))
    if env_id not in TASKS:
        if not env_id.startswith("rlmem/"):
            raise ValueError(f"{env_id!r} has no lag to sweep; recall curves need one of {with_lag}")
        raise unknown_env_error(env_id)
    task = TASKS[env_id].task_class
    if task.lag_parameter is None:
        raise ValueError(f"{env_id!r} has no lag to sweep; recall curves need one of {with_lag}")
    return task, LagTask(task.lag_parameter, task.lag_kwargs, task.recall_accuracy, task.chance_accuracy)


# ---------------------------------------------------------------------- acting
class _Actor:
    """Deterministic acting for an rlmem agent or the sb3 baseline, exposing the memory state as features."""

    def __init__(self, agent: Any, n: int) -> None:
        self.agent, self.n = agent, n
        from rlmem.agents.sb3_baseline import SB3Baseline

        self.sb3 = isinstance(agent, SB3Baseline)  # sb3_contrib's model, behind rlmem's API
        self.state: Any = None
        self.actor = None if self.sb3 else Actor(agent, n)

    def act(self, obs: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The env actions for ``obs`` (memory zeroed where ``start``); updates the state."""
        if self.sb3:
            action, self.state = self.agent.model.predict(obs.cpu().numpy(), state=self.state,
                                                          episode_start=start.cpu().numpy(), deterministic=True)
            return torch.as_tensor(action)
        return self.actor.act(obs)

    def observe(self, step: Transition) -> None:
        if not self.sb3:
            self.actor.observe(step)

    def features(self) -> torch.Tensor:
        """The memory state after the last step, ``[n, features]``: every tensor of it, flattened per env."""
        parts = [torch.as_tensor(np.asarray(s)) for s in self.state] if self.sb3 else self.actor.state
        return torch.cat([p.detach().float().cpu().transpose(0, 1).reshape(self.n, -1) for p in parts], dim=1)


@dataclass
class Rollout:
    """What :func:`rollout` records, time-major: ``[T, N, ...]``."""

    features: torch.Tensor
    """Memory state after step t (it has seen the observation of step t)."""
    obs: torch.Tensor
    """Observation at step t."""
    episode_step: torch.Tensor
    """Steps since the episode began (0 at its first observation)."""
    returns: list[list[float]]
    """Per env, the returns of the episodes it finished, in order."""


def env_label(env: Any) -> str:
    return getattr(env, "name", None) or type(env).__name__


@torch.no_grad()
def rollout(agent: Any, env: TorchVecEnv, steps: int, seed: int = 0, record: bool = True) -> Rollout:
    """Run ``agent`` deterministically on every env of ``env`` for ``steps`` steps, memory carried."""
    n = env.num_envs
    actor = _Actor(agent, n)
    obs, _ = env.reset(seed=seed)
    if record and not isinstance(obs, torch.Tensor):
        raise ValueError(f"the probe reads observations that are one array; {env_label(env)}'s are "
                         f"{type(env.single_observation_space).__name__} ({env.single_observation_space})")
    start = torch.ones(n, dtype=torch.bool)
    episode_step = torch.zeros(n, dtype=torch.int64)
    features, observations, episode_steps = [], [], []
    returns: list[list[float]] = [[] for _ in range(n)]
    for _ in range(steps):
        action = actor.act(obs, start)
        if record:
            features.append(actor.features())
            observations.append(obs.detach().float().cpu())
            episode_steps.append(episode_step.clone())
        step = step_env(env, action.to(env.device), torch.device("cpu"))
        actor.observe(step)
        obs, done = step.obs, step.done
        if bool(done.any()):
            for i in torch.nonzero(done).flatten().tolist():
                returns[i].append(float(step.episode_return[i]))
        episode_step = torch.where(done, 0, episode_step + 1)
        start = done
    if not record:
        return Rollout(torch.empty(0), torch.empty(0), torch.empty(0), returns)
    return Rollout(torch.stack(features), torch.stack(observations), torch.stack(episode_steps), returns)


# ---------------------------------------------------------------------- behaviour
def recall_curve(agent: Any, env_id: str, lags: list[int], episodes: int = 100, seed: int = 0,
                 device: str = "cpu") -> list[dict[str, float]]:
    """Success against lag: ``agent`` evaluated on ``env_id``'s task with its lag set to each of ``lags``.

    Each point is ``{"lag", "mean_return", "recall_accuracy", "chance", "episodes"}``; every env
    of the batch contributes its first episodes, so short ones are not favoured. Other task
    settings stay the level's (RepeatPrevious keeps ``length - k``).
    """
    from rlmem.device import resolve_device
    from rlmem.envs.registry import TASKS, build_task

    check_positive_int("episodes", episodes)
    family, spec = lag_task(env_id)
    level = TASKS[env_id](num_envs=1)
    points = []
    for lag in lags:
        check_int(f"recall lag ({spec.parameter})", lag, 1)
        n = min(episodes, 64)
        env = build_task(family, f"{env_id} at lag {lag}", n, resolve_device(device), seed, False,
                         spec.kwargs(level, int(lag)))  # sized before it is allocated
        per_env = -(-episodes // n)
        run = rollout(agent, env, per_env * env.max_episode_steps, seed=seed, record=False)
        returns = [r for env_returns in run.returns for r in env_returns[:per_env]][:episodes]
        mean = float(np.mean(returns))
        points.append({"lag": int(lag), "mean_return": mean, "recall_accuracy": spec.accuracy(mean),
                       "chance": spec.chance(level), "episodes": len(returns)})
    return points


# ---------------------------------------------------------------------- what the probe reads
def probe_labels(env: TorchVecEnv, obs: torch.Tensor, episode_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The class the probe reads off each observation, where it is readable, and what it is.

    The task says (:meth:`~rlmem.envs.base.TorchVecEnv.probe_labels`): where it shows its cue
    only at an episode's first step (PassiveTMaze's goal side, MemoryChain's context bits), the
    probe reads that cue and only those steps count; anywhere else the class is the observation
    itself (each distinct observation vector is a class).
    Returns ``(labels [T, N], valid [T, N], description)``.
    """
    return env.probe_labels(obs, episode_step)


# ---------------------------------------------------------------------- the linear probe
def fit_linear_probe(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                     n_classes: int, ridge: float = 1e-2) -> float:
    """Held-out balanced accuracy of a linear read-out: class-balanced ridge regression onto one-hot classes.

    A closed-form least-squares classifier (one solve, deterministic, milliseconds) on
    standardised features with a bias; the predicted class is the largest output.
    """
    if x_train.shape[1] == 0:  # a memory that holds nothing (the mlp core): the read-out is its bias alone
        x_train, x_test = x_train.new_zeros(x_train.shape[0], 1), x_test.new_zeros(x_test.shape[0], 1)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xs = torch.cat(((x_train - mean) / std, torch.ones(x_train.shape[0], 1)), dim=1).double()
    xt = torch.cat(((x_test - mean) / std, torch.ones(x_test.shape[0], 1)), dim=1).double()
    counts = torch.bincount(y_train, minlength=n_classes).double()
    weight = (counts.sum() / (n_classes * counts.clamp(min=1)))[y_train].unsqueeze(1)
    targets = torch.nn.functional.one_hot(y_train, n_classes).double()
    gram = xs.T @ (weight * xs) + ridge * xs.shape[0] * torch.eye(xs.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, xs.T @ (weight * targets))
    return balanced_accuracy((xt @ w).argmax(-1), y_test)


def balanced_accuracy(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """The mean over the classes present in ``target`` of the fraction of them predicted right."""
    recalls = [float((predicted[target == c] == c).float().mean()) for c in torch.unique(target).tolist()]
    return float(np.mean(recalls))


def probe_curve(features: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, episode_step: torch.Tensor,
                max_lag: int, train_fraction: float = 0.7, max_samples: int = 20_000,
                seed: int = 0) -> list[dict[str, Any]]:
    """Probe accuracy against lag from ``[T, N, ...]`` records of one rollout.

    For lag k the pairs are (``features[t]``, ``labels[t - k]``) wherever ``labels[t - k]`` is
    ``valid`` and step t - k lies in the same episode as step t. The first ``train_fraction`` of
    the envs train the read-out, the rest score it (no env is in both). Each point is
    ``{"lag", "accuracy", "chance", "classes", "n_train", "n_test"}``; accuracy and chance are
    None where a lag has too few pairs (fewer than 2 classes or 10 pairs on either side).
    """
    check_int("max_lag", max_lag, 0)
    steps, n = labels.shape
    split = max(1, min(n - 1, round(n * train_fraction)))
    generator = torch.Generator().manual_seed(seed)
    points = []
    for lag in range(max_lag + 1):
        point: dict[str, Any] = {"lag": lag, "accuracy": None, "chance": None, "classes": 0, "n_train": 0, "n_test": 0}
        if lag < steps:
            x, y = features[lag:], labels[: steps - lag]
            mask = valid[: steps - lag] & (episode_step[lag:] >= lag)
            parts = []
            for envs in (slice(0, split), slice(split, n)):
                m = mask[:, envs]
                xs, ys = x[:, envs][m], y[:, envs][m]
                if xs.shape[0] > max_samples:
                    keep = torch.randperm(xs.shape[0], generator=generator)[:max_samples]
                    xs, ys = xs[keep], ys[keep]
                parts.append((xs, ys))
            (x_train, y_train), (x_test, y_test) = parts
            classes = torch.unique(torch.cat((y_train, y_test)))
            point.update(n_train=int(y_train.shape[0]), n_test=int(y_test.shape[0]), classes=int(classes.numel()))
            if classes.numel() >= 2 and y_train.shape[0] >= 10 and y_test.shape[0] >= 10:
                remap = torch.full((int(classes.max()) + 1,), -1, dtype=torch.int64)
                remap[classes] = torch.arange(classes.numel())
                point["accuracy"] = fit_linear_probe(x_train, remap[y_train], x_test, remap[y_test], classes.numel())
                point["chance"] = 1.0 / int(torch.unique(y_test).numel())
        points.append(point)
    return points


def memory_horizon(accuracies: list[float | None], threshold: float = HORIZON_THRESHOLD) -> int:
    """The largest lag h with ``accuracies[0..h]`` all ``>= threshold`` (see :data:`HORIZON_RULE`).

    ``accuracies[k]`` is the probe accuracy at lag k; a lag not measured (None or NaN) ends the
    run like a failing one. -1 when lag 0 fails.
    """
    horizon = -1
    for accuracy in accuracies:
        if accuracy is None or math.isnan(accuracy) or accuracy < threshold:
            break
        horizon += 1
    return horizon


# ---------------------------------------------------------------------- an agent, end to end
def probe_steps(env: TorchVecEnv) -> int:
    """Rollout length for a probe: at least 4 episodes (and 512 steps; 512 where the episode length is not
    known, as for a user's env without a time limit), at most 4096 steps."""
    return int(min(4096, max(512, 4 * (env.max_episode_steps or 0))))


def probe_agent(agent: Any, untrained: Any, env_id: str, max_lag: int, n_envs: int = 128,
                seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Probe curves of ``agent`` and ``untrained`` (same shape, not trained) on ``env_id``, and their horizons.

    Both see the same env batch, seeded the same. Returns a JSON-ready dict with one row per
    lag, both horizons, the rule and what the probe reads.
    """
    from rlmem.envs.registry import make_vec_env

    check_positive_int("n_envs", n_envs)
    result: dict[str, Any] = {"env": env_id, "max_lag": max_lag, "n_envs": n_envs, "seed": seed,
                              "horizon_rule": HORIZON_RULE, "threshold": HORIZON_THRESHOLD}
    curves = {}
    for name, who in (("trained", agent), ("untrained", untrained)):
        env = make_vec_env(env_id, n_envs, device=device, seed=seed)
        steps = probe_steps(env)
        run = rollout(who, env, steps, seed=seed)
        labels, valid, reads = probe_labels(env, run.obs, run.episode_step)
        curves[name] = probe_curve(run.features, labels, valid, run.episode_step, max_lag, seed=seed)
        result.update(reads=reads, rollout_steps=steps, state_features=int(run.features.shape[-1]))
        env.close()
    rows = []
    for trained, untrained_point in zip(curves["trained"], curves["untrained"], strict=True):
        rows.append({"lag": trained["lag"], "trained": trained["accuracy"], "untrained": untrained_point["accuracy"],
                     "chance": trained["chance"] if trained["chance"] is not None else untrained_point["chance"],
                     "classes": trained["classes"], "n_train": trained["n_train"], "n_test": trained["n_test"]})
    measured = [r["lag"] for r in rows if r["trained"] is not None]
    for name in ("trained", "untrained"):
        horizon = memory_horizon([r[name] for r in rows])
        result[f"horizon_{name}"] = horizon
        # Every measured lag passed: the memory may reach further than the probe looked.
        result[f"horizon_{name}_is_lower_bound"] = bool(measured) and horizon == max(measured)
    result["rows"] = rows
    return result


__all__ = [
    "HORIZON_RULE",
    "HORIZON_THRESHOLD",
    "balanced_accuracy",
    "fit_linear_probe",
    "lag_task",
    "memory_horizon",
    "probe_agent",
    "probe_curve",
    "probe_labels",
    "recall_curve",
    "rollout",
]
