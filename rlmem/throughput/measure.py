"""The env, rollout and train measurements: env-steps/s of rlmem's batched env (and popgym's),
of RecurrentPPO's rollouts, and of its end-to-end training (and sb3-contrib's).

What each measures, and how: docs/benchmarks.md, "How ``rlmem throughput`` measures".
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from rlmem.agents.ppo import RecurrentPPO
from rlmem.agents.sb3_baseline import matched_kwargs
from rlmem.envs.repeat_previous import RepeatPreviousEasy
from rlmem.throughput.settings import TRAIN_ENV_ID, hyperparameters, ppo_config
from rlmem.throughput.timing import (
    action_steps, peak_memory, reset_peak_memory, row, sync_for, timed_learn, timed_steps, train_row,
)


# ---------------------------------------------------------------------------- env
def measure_rlmem_env(
    num_envs: int, device: str, seconds: float, warmup: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Env-only env-steps/s of rlmem's batched ``RepeatPreviousEasy`` on ``device``."""
    dev = torch.device(device)
    env = RepeatPreviousEasy(num_envs=num_envs, device=dev, seed=seed)
    env.reset(seed=seed)
    n_actions = action_steps(num_envs)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed + 1)
    actions = torch.randint(
        env.single_action_space.n, (n_actions, num_envs), generator=gen, device=dev,
        dtype=torch.int64,
    )
    rows = actions.unbind(0)  # views made once, outside the timed loop

    def step(i: int) -> None:
        env.step(rows[i])

    sync = sync_for(dev)
    for i in range(warmup):
        step(i % n_actions)
    steps, elapsed = timed_steps(step, n_actions, seconds, sync)
    env.close()
    return row("env", "rlmem", str(dev), num_envs, steps, elapsed)


def measure_popgym_env(
    num_envs: int, seconds: float, warmup: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Env-only env-steps/s of popgym's numpy ``RepeatPreviousEasy`` in a ``SyncVectorEnv``."""
    import gymnasium as gym
    from popgym.envs.repeat_previous import RepeatPreviousEasy as PopgymRepeatPreviousEasy

    envs = gym.vector.SyncVectorEnv([PopgymRepeatPreviousEasy for _ in range(num_envs)])
    envs.reset(seed=seed)
    n_actions = action_steps(num_envs)
    n_symbols = int(envs.single_action_space.n)
    actions = np.random.default_rng(seed + 1).integers(0, n_symbols, (n_actions, num_envs))

    def step(i: int) -> None:
        envs.step(actions[i])

    for i in range(warmup):
        step(i % n_actions)
    steps, elapsed = timed_steps(step, n_actions, seconds, lambda: None)
    envs.close()
    return row("env", "popgym", "cpu", num_envs, steps, elapsed)


# ---------------------------------------------------------------------------- rollout
def graph_use(agent: RecurrentPPO) -> dict[str, Any]:
    """Which fast paths ``agent`` ran: the update's unroll and whether the rollout and the update
    were CUDA graph replays (``unroll``, ``rollout_cuda_graph``, ``update_cuda_graph``)."""
    return {"unroll": agent.unroll, **{f"{name}_cuda_graph": call is not None and call.active
                                       for name, call in agent.graph_calls.items()}}


def measure_rollout(
    num_envs: int, device: str, seconds: float, overrides: dict[str, Any], seed: int = 0
) -> dict[str, Any]:
    """Rollout env-steps/s of rlmem's RecurrentPPO: env + policy, no update.

    The agent of the train section (same config, ``--set`` included) fills its rollout buffer
    through its public step API: ``start()`` as ``learn()`` would, two untimed ``collect()`` calls
    (on CUDA the second records the graph), then rollouts repeated until ``seconds`` have passed
    (at least one). Each is ``num_envs * n_steps`` env-steps and ends with a host read of the
    episode statistics; on CUDA the clock is read after ``torch.cuda.synchronize()`` too.
    """
    dev = torch.device(device)
    config = ppo_config(num_envs, overrides)
    sync = sync_for(dev)
    baseline = reset_peak_memory(dev)
    agent = RecurrentPPO(TRAIN_ENV_ID, device=dev, seed=seed, verbose=0, **hyperparameters(config))
    agent.start()
    start = time.perf_counter()
    for _ in range(2):  # untimed: first-call kernels and caches; on CUDA the second call records the graph
        agent.collect()
    sync()
    warmup_s = time.perf_counter() - start
    calls = 0
    start = time.perf_counter()
    while True:
        agent.collect()
        calls += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    memory = peak_memory(dev, num_envs, baseline)
    agent.env.close()
    out = row("rollout", "rlmem", str(dev), num_envs, calls * config.n_steps, elapsed)
    out.update(n_steps=config.n_steps, calls=calls, warmup_s=warmup_s, **memory)
    out.update(graph_use(agent))
    return out


# ---------------------------------------------------------------------------- train
def measure_rlmem_train(
    num_envs: int, device: str, seconds: float, overrides: dict[str, Any], seed: int = 0
) -> dict[str, Any]:
    """End-to-end ``learn()`` env-steps/s of rlmem's RecurrentPPO on RepeatPreviousEasy."""
    dev = torch.device(device)
    config = ppo_config(num_envs, overrides)
    baseline = reset_peak_memory(dev)
    agent = RecurrentPPO(TRAIN_ENV_ID, device=dev, seed=seed, verbose=0, **hyperparameters(config))

    def learn_more(steps: int) -> int:
        before = agent.num_timesteps
        agent.learn(steps, progress_bar=False)
        return agent.num_timesteps - before

    timed = timed_learn(learn_more, num_envs * config.n_steps, seconds, sync_for(dev))
    memory = peak_memory(dev, num_envs, baseline)
    agent.env.close()
    out = train_row("rlmem", str(dev), num_envs, config.n_steps, timed)
    out.update(memory)
    out.update(graph_use(agent))
    return out


def measure_sb3_train(
    num_envs: int, seconds: float, overrides: dict[str, Any], seed: int = 0, settings: str = "matched",
    device: str = "cpu",
) -> dict[str, Any]:
    """End-to-end ``learn()`` env-steps/s of sb3-contrib's RecurrentPPO, its policy on ``device``.

    ``settings="matched"``: network, batch and update matched to rlmem's config (impl "sb3",
    :func:`rlmem.agents.sb3_baseline.matched_kwargs`); ``settings="defaults"``: sb3-contrib's own
    defaults, only the number of envs shared (impl "sb3-defaults": what a user of sb3-contrib
    gets out of the box). The env is an rlmem CPU batch seen through :class:`rlmem.SB3VecEnvView`
    whatever ``device`` is (that is how sb3 steps it: numpy arrays on the host); the row's
    ``device`` is the policy's, ``env_device`` "cpu".
    """
    from sb3_contrib import RecurrentPPO as SB3RecurrentPPO

    from rlmem.envs.adapters import SB3VecEnvView
    from rlmem.envs.registry import make_vec_env

    dev = torch.device(device)
    config = ppo_config(num_envs, overrides)
    baseline = reset_peak_memory(dev)
    torch.manual_seed(seed)
    venv = SB3VecEnvView(make_vec_env(TRAIN_ENV_ID, num_envs, device="cpu", seed=seed))
    kwargs = matched_kwargs(config, seed) if settings == "matched" else {"seed": seed}
    model = SB3RecurrentPPO("MlpLstmPolicy", venv, device=dev, verbose=0, **kwargs)
    if settings != "matched":
        config = dataclasses.replace(config, n_steps=model.n_steps,
                                     n_minibatches=max(1, num_envs * model.n_steps // model.batch_size))
    calls = [0]

    def learn_more(steps: int) -> int:
        before = model.num_timesteps
        # Continue where the last call stopped (no env reset, no counter reset).
        model.learn(steps, reset_num_timesteps=calls[0] == 0, progress_bar=False)
        calls[0] += 1
        return model.num_timesteps - before

    timed = timed_learn(learn_more, num_envs * config.n_steps, seconds, sync_for(dev))
    venv.close()
    out = train_row("sb3" if settings == "matched" else "sb3-defaults", str(dev), num_envs, config.n_steps, timed)
    out.update(batch_size=model.batch_size, env_device="cpu", **peak_memory(dev, num_envs, baseline))
    return out
