"""Throughput benchmark: env-steps/s of rlmem's batched envs, of rollouts and training on them,
peak device memory per env, the memory unroll, and the wall-clock time to learn a task.

Run it as ``rlmem throughput [OPTIONS]`` (the same program as ``python -m rlmem.throughput`` and
``python scripts/throughput.py``); ``rlmem throughput --help`` lists the options.

What it measures
----------------
Five sections, picked with ``--what env,rollout,train,unroll,learn`` (default: ``env,train``;
``--what all`` = ``env,rollout,train``; ``rollout``, ``unroll`` and ``learn`` are opt-in).

Numbers of envs ``N``: ``--num-envs`` (env), ``--rollout-num-envs`` (rollout) and
``--train-num-envs`` (train), or ``--sizes`` for all three at once (a section's own option, where
given, wins). With none given, a ``cuda`` device runs all three at ``N`` = 1,024, 4,096, 16,384
and 65,536, and the cpu at the defaults below (env: 1 .. 65,536; rollout and train: 64). So
``rlmem throughput --device cuda --what all`` is issue 6's GPU report.

``env``: env-only throughput (rows ``{"what": "env", ...}``).

* ``rlmem`` env-only throughput: ``rlmem.envs.repeat_previous.RepeatPreviousEasy`` with
  ``N`` environments in one batch (``N`` = 1, 4, 16, ..., 65,536 by default on the cpu), stepped
  on each requested device. Actions are uniformly random and generated on the device as one
  ``[steps, N]`` tensor *before* the clock starts, so only ``env.step`` is timed (no policy,
  no learning, no host transfers).
* ``popgym`` env-only throughput, the reference: POPGym's numpy
  ``popgym.envs.repeat_previous.RepeatPreviousEasy`` stepped through gymnasium's
  ``SyncVectorEnv`` (one Python env object per ``N``, looped over in Python), with random
  actions generated up front too. popgym always runs on the CPU.

  Each env measurement warms up for a few steps, then runs chunks of steps until the
  ``--seconds`` budget is spent (on CUDA the clock is read only after
  ``torch.cuda.synchronize()``).

``rollout``: env + policy throughput, no update (rows ``{"what": "rollout", "impl": "rlmem",
...}``, with ``n_steps`` and ``calls``). For each ``N`` and device, the train section's agent
(``RecurrentPPO("rlmem/RepeatPreviousEasy-v0", n_envs=N, ...)``, the same ``--set`` overrides) is
built, ``_prepare_learning()`` makes its rollout buffer and ``_last = _start()`` resets its envs;
two untimed ``_collect(buffer)`` calls warm up (on CUDA the first runs eagerly and the second
records the CUDA graph), then ``_collect(buffer)`` is repeated until
``--seconds`` have passed (at least once). One call is ``N * n_steps`` env-steps: the policy's
action for every env, the env step, the buffer writes and the advantages (GAE) at its end, which
ends with a host read of the episode statistics (on CUDA the clock is also read only after
``torch.cuda.synchronize()``).

``train``: end-to-end training throughput (rows ``{"what": "train", ...}``): rollouts *and*
PPO updates, i.e. the agent's ``learn()``, on ``rlmem/RepeatPreviousEasy-v0``.

* ``rlmem``: ``rlmem.agents.ppo.RecurrentPPO`` with its default hyperparameters
  (``PPOConfig``; ``--set KEY=VALUE`` overrides any of them), with ``N`` envs for each ``N`` in
  ``--train-num-envs`` (default: just ``PPOConfig``'s ``n_envs``, 64, on the cpu), on each
  requested device.
* ``sb3``: the baseline, sb3-contrib's ``RecurrentPPO("MlpLstmPolicy", ...)`` on an rlmem CPU
  batch of the same task through :class:`rlmem.SB3VecEnvView` (that is how sb3 steps it: numpy
  arrays on the host), at the same ``N`` (only up to ``--sb3-max-num-envs``, default 256: its
  iterations get slow; where no ``N`` of the section is that small, as with the cuda sizes, at
  ``--sb3-max-num-envs`` itself, once). Its policy runs on ``--sb3-device``: ``cpu`` (the
  default), ``cuda`` / ``cuda:N``, or ``same``, each rlmem device in turn (the row's ``device``
  is the policy's; ``env_device`` is always ``cpu``). Like for like, it gets the same settings
  as rlmem's config:

  - ``n_envs`` = ``N``, ``n_steps``, ``n_epochs``;
  - ``batch_size`` = ``N * n_steps / n_minibatches``, so both take ``n_minibatches`` gradient
    steps per epoch over the same rollout size;
  - the network: ``lstm_hidden_size`` = ``hidden_size``, ``n_lstm_layers`` = ``num_layers``,
    the same Tanh MLP encoder before the LSTM (``encoder_sizes``, as a features extractor),
    linear actor/critic heads right on the LSTM output (``net_arch=[]``), and the critic
    sharing the actor's LSTM (``shared_lstm=True``, ``enable_critic_lstm=False``) unless
    ``separate_critic_memory`` is set, then each has its own (sb3's default);
  - the optimisation: ``learning_rate`` (and a linear schedule for ``lr_schedule=linear``),
    ``gamma``, ``gae_lambda``, ``clip_range``, ``clip_range_vf``, ``normalize_advantage``,
    ``ent_coef``, ``vf_coef``, ``max_grad_norm``, ``target_kl``, the seed; both use Adam with
    ``eps=1e-5`` and orthogonal initialisation.

  Left as each library does it: sb3 runs the shared LSTM's value gradient not into the LSTM
  (it detaches), pads sequences split at episode starts (rlmem keeps whole env columns), and
  keeps its rollout buffer on the host. sb3 has no GRU and no previous action/reward input:
  with ``memory=gru`` or ``prev_action_reward=true`` the baseline is skipped (with a note).

  Each training measurement first runs two iterations (``learn(2 * N * n_steps)``, untimed: they
  build buffers, warm caches and, on CUDA, record the CUDA graphs), then times one
  ``learn(k * N * n_steps)`` call, with ``k`` estimated from the warm-up so that it takes about
  ``--train-seconds`` (at least one iteration; slow first iterations make the timed run shorter
  than the budget). rlmem's rows say which unroll the update ran and whether the rollout and
  the update were CUDA graph replays (``unroll``, ``rollout_cuda_graph``, ``update_cuda_graph``).

Peak device memory (rollout and train rows, sb3's too): on CUDA, ``torch.cuda.reset_peak_memory_stats``
just before the agent is built (after a ``gc.collect()``; ``memory_baseline_bytes`` is what was
still allocated then) and ``torch.cuda.max_memory_allocated`` after the timed run:
``peak_memory_bytes`` and ``peak_memory_bytes_per_env`` (= peak / ``N``), everything torch's
allocator handed out (weights, optimiser state, env batch, rollout buffer, activations), not
what the allocator caches beyond it. On the CPU torch keeps no such count: both are None ("n/a
on cpu" in the tables).

``unroll``: the memory unroll of the PPO update, ``unroll="chunked"`` against the
``unroll="per_step"`` reference (:mod:`rlmem.memory`), rows ``{"what": "unroll", "memory",
"hidden_size", "pattern", "mode", "device", "num_envs", "seq_len", "samples_per_s", ...}``.
This is the evidence for "measure which unroll is faster and keep the fastest correct one".

* One memory core (``lstm`` and ``gru``; ``--unroll-hidden-sizes``, default 64 and 128; one
  layer; input width 64, the default encoder's output) unrolls ``N`` sequences
  (``--unroll-num-envs``, default 16 = one default minibatch, and 64) of ``T`` steps
  (``--unroll-seq-len``, default 64 = ``n_steps``) from a zero state. One call is the forward
  and the backward, ``out, _ = core(x, state, episode_start); out.sum().backward()``, with ``x``
  requiring grad as the encoder's output does in the update.
* Two patterns of episode starts: ``synchronized``, every env starts together every 52 steps
  (t=0 and t=52, as in RepeatPreviousEasy), so the chunked unroll makes 2 RNN calls; and
  ``scattered``, each (step, env) starts with probability 1/25 (seeded; like CartPole's varied
  episode lengths), so a step has a start *somewhere* more often as N grows and the chunked
  unroll makes many more, shorter calls (its ``pieces``, in the rows and the table).
* Each mode warms up (``--warmup`` calls), then repeats the call for ``--seconds``;
  ``samples_per_s`` = ``T * N * calls / elapsed``. Both modes run the same weights on the same
  input, and each chunked row records ``max_abs_diff_vs_per_step``, the largest absolute
  difference of its output and final state from the per_step reference (correctness).

``learn``: the wall-clock time for rlmem's ``RecurrentPPO`` (``PPOConfig`` defaults; ``--set``
applies, ``n_envs`` included unless ``train`` is measured too) to reach a *training*
``charts/episodic_return`` >= ``--learn-threshold`` (default 0.9) on ``--learn-env`` (default
``rlmem/RepeatPreviousEasy-v0``), rows ``{"what": "learn", "impl": "rlmem", "env", "device",
"threshold", "seconds_to_threshold", "steps_to_threshold", "eval_mean_return", "seeds", ...}``.

* Per device, one untimed warm-up iteration of a throwaway agent first (the first agent of a
  process pays one-time costs: lazy imports, env registration, first-call kernels).
* Then per seed (``--learn-seeds``, default ``--seed``): the clock starts before the agent and
  its env batch are built, and a ``learn(--learn-budget)`` callback (default budget 2,000,000
  env-steps) stops it, and training, after the first iteration whose episodic return (the mean
  over the episodes that ended in that rollout) is >= the threshold. ``seconds_to_threshold``
  and ``steps_to_threshold`` are None where the budget ran out first. Then, untimed, a
  deterministic ``evaluate(200)`` (``eval_mean_return``).
* One row per seed (``"seed": s``, ``"seeds": [s]``, ``"aggregate": None``) and one median row
  per device (``"aggregate": "median"``, ``"seeds"``: all of them); a seed that did not reach
  the threshold counts as infinitely slow, so the median is None once half of them missed.

Every figure in ``env``, ``rollout`` and ``train`` is ``env-steps / elapsed``, where one env-step
is one environment advancing one step: a batched ``step`` call on ``N`` envs counts ``N``
env-steps, and a rollout or a training iteration counts ``N * n_steps`` (however many epochs its
update runs). Their rows share the keys ``what``, ``impl``, ``device``, ``num_envs``,
``steps_per_s``, ``env_steps``, ``batched_steps`` (env-steps / ``N``) and ``elapsed_s``.

How to read the output
----------------------
Env table: one row per (device, N): rlmem's env-steps/s on that device, popgym's env-steps/s
at the same N (always measured on the CPU, whatever the row's device), and their ratio
(rlmem / popgym; larger is better for rlmem). Per-step Python overhead dominates at small N,
so rlmem only pulls ahead as N grows; the figure to watch is the ratio at N=4096 on the CPU
(target: at least 100x on 2 CPU cores).

Training table: one row per (impl, device, N) with the end-to-end env-steps/s, the peak device
memory per env, and on rlmem's rows the ratio rlmem / sb3 at the same N (sb3 on the same device
if it ran there, else on the device it ran on, which the cell names). The figure to watch is the
line ``rlmem PPO / sb3-contrib RecurrentPPO end-to-end on cpu``: the ratio at the first
N of ``--train-num-envs`` where both ran on the CPU (target: at least 30x on 2 CPU cores).
Larger N only helps rlmem (its per-step cost is one batched call), so compare at the default N.

Summary table (after the others, whenever env, rollout or train ran): one line per (device, N)
with any rlmem env, rollout or train row: env-only, rollout and train env-steps/s, the rollout's
and the training's peak MiB per env, and train / sb3, the training figure over sb3-contrib's at
the same N, or, where sb3 was not measured at that N (``--sb3-max-num-envs``), at the largest N
below it that it was measured at; the last column names the device and N of that sb3 figure
(same-device sb3 preferred). ``summary["table"]`` holds the same lines with every figure
(``env_steps_per_s``, ``rollout_steps_per_s``, ``train_steps_per_s``,
``rollout_peak_memory_bytes_per_env``, ``train_peak_memory_bytes_per_env``, ``sb3_steps_per_s``,
``sb3_device``, ``sb3_num_envs``, ``train_over_sb3``; None where not measured).

Unroll table: one line per (device, memory, pattern, H, N): the chunked unroll's RNN calls
(``pieces``; per_step always makes ``T``), both modes' samples/s, which mode is faster and by
how much, and the largest |chunked - per_step| difference. The summary line counts the settings
each mode wins. ``summary["unroll_faster"]`` holds the same comparisons.

Learn lines: one per seed (reached or not, seconds, env-steps, evaluation return), then one per
device: ``RepeatPreviousEasy to 0.9: median X.X s over K seeds (target: well under 30 s on 2 CPU
cores)``; ``summary["learn_seconds_median"]`` is the first ``--device``'s median (None if not
reached).

The numbers depend on the machine, its load and the thread count, all printed below the
tables; compare runs only from the same machine. ``--json PATH`` writes every figure and the
machine description for later comparison. Large batches split each op over several torch
threads; on a machine whose cores are busy with other work this can make them far slower than
with ``--threads 1`` (the load average is printed and recorded for that reason).

Examples::

    rlmem throughput                        # cpu, both sections, ~1 min
    rlmem throughput --device auto --json results/throughput.json
    rlmem throughput --what env --num-envs 1024,4096 --no-popgym --seconds 2
    rlmem throughput --what train           # rlmem vs sb3-contrib at N=64, ~25 s
    rlmem throughput --device cuda --what all --sizes 1024,4096,16384,65536   # issue 6's report
    rlmem throughput --device cuda --what train --sb3-device cuda --train-num-envs 64,256
    rlmem throughput --what rollout --rollout-num-envs 64,1024 --seconds 2
    rlmem throughput --what train --train-num-envs 64,1024 --no-sb3 --device auto
    rlmem throughput --what train --set hidden_size=64 n_epochs=2
    rlmem throughput --what unroll          # chunked vs per_step, ~45 s
    rlmem throughput --what unroll --unroll-num-envs 16 --seconds 2 --device auto
    rlmem throughput --what learn --learn-seeds 0,1,2
    rlmem throughput --what learn --set memory=gru --learn-budget 500000
    rlmem throughput --what learn --learn-env rlmem/PassiveTMazeEasy-v0 --threads 1

The results dict (returned by :func:`main`, written by ``--json``) holds ``config`` (the N lists
as ``num_envs``, every N, and ``num_envs_by_device``), ``machine``, ``rows``, a list of
``{"what": "env" | "rollout" | "train", "impl": "rlmem" | "popgym" | "sb3" | "sb3-defaults",
"device", "num_envs", "steps_per_s", ...}``, ``{"what": "unroll", ...}`` and
``{"what": "learn", ...}`` rows as above, and ``summary`` with ``rlmem_over_popgym_cpu_n4096``
and ``ppo_over_sb3_train_cpu`` (None where not measured), ``table`` (the summary table's lines)
with env, rollout or train, ``unroll_faster`` with ``--what unroll`` and ``learn_seconds_median``
(and ``learn_seconds_median_by_device``) with ``--what learn``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from rlmem.agents.base import build_config
from rlmem.agents.ppo import PPOConfig, RecurrentPPO
from rlmem.agents.sb3_baseline import describe_kwargs as describe_sb3_kwargs
from rlmem.agents.sb3_baseline import encoder_extractor_class as _encoder_extractor_class  # noqa: F401
from rlmem.agents.sb3_baseline import matched_kwargs as sb3_kwargs
from rlmem.agents.sb3_baseline import unsupported as sb3_unsupported
from rlmem.envs.repeat_previous import RepeatPreviousEasy
from rlmem.memory import UNROLL_MODES, make_core

DEFAULT_NUM_ENVS = [4**i for i in range(9)]  # 1 .. 65,536
DEFAULT_POPGYM_NUM_ENVS = [1, 16, 256, 4096]
REFERENCE_NUM_ENVS = 4096  # the N of the headline rlmem/popgym ratio
TARGET_RATIO = 100.0
# Cap on the pre-generated action tensor ([steps, N] int64): 4M entries = 32 MiB.
MAX_ACTION_ENTRIES = 1 << 22
MAX_ACTION_STEPS = 1024
CUDA_MISSING = "error: --device cuda requested but no CUDA GPU is available"

TRAIN_ENV_ID = "rlmem/RepeatPreviousEasy-v0"
DEFAULT_TRAIN_NUM_ENVS = [PPOConfig().n_envs]  # the agent's default batch
DEFAULT_SB3_MAX_NUM_ENVS = 256
TARGET_TRAIN_RATIO = 30.0
SECTIONS = ("env", "rollout", "train", "unroll", "learn")
DEFAULT_SECTIONS = ("env", "train")  # rollout, unroll and learn are opt-in
ALL_SECTIONS = ("env", "rollout", "train")  # --what all
# With a CUDA device and no N list given, env, rollout and train run at these N (issue 6's report).
DEFAULT_CUDA_NUM_ENVS = [1024, 4096, 16384, 65536]
SB3_DEVICE_SAME = "same"  # --sb3-device same: sb3-contrib's policy on each rlmem device
MIB = 1 << 20

# --what unroll: the memory unroll of the PPO update, chunked vs per_step (rlmem.memory).
UNROLL_MEMORIES = ("lstm", "gru")
UNROLL_PATTERNS = ("synchronized", "scattered")
DEFAULT_UNROLL_HIDDEN_SIZES = [64, 128]
DEFAULT_UNROLL_NUM_ENVS = [16, 64]  # one minibatch (64 envs / 4) and a whole default rollout
DEFAULT_UNROLL_SEQ_LEN = PPOConfig().n_steps  # 64: the update's sequence length
UNROLL_INPUT_SIZE = PPOConfig().encoder_sizes[-1]  # the encoder's output feeds the core
SYNC_EPISODE_LENGTH = 52  # RepeatPreviousEasy: all envs start at t=0, 52, ...
SCATTERED_START_PROB = 1 / 25  # CartPole-like varied episode lengths

# --what learn: wall-clock seconds for rlmem's RecurrentPPO to reach a training return.
DEFAULT_LEARN_THRESHOLD = 0.9
DEFAULT_LEARN_BUDGET = 2_000_000
LEARN_EVAL_EPISODES = 200
TARGET_LEARN_SECONDS = 30.0
# PPOConfig fields that --set may not change: n_envs comes from --train-num-envs.
NOT_SETTABLE = ("n_envs", "extra")


# ---------------------------------------------------------------------------- timing
def _timed_steps(
    step: Callable[[int], None], num_actions: int, seconds: float, sync: Callable[[], None]
) -> tuple[int, float]:
    """Call ``step(i)`` (``i`` cycling over ``num_actions`` pre-made actions) for ``seconds``.

    Runs chunks of steps, synchronising and reading the clock only between chunks; each chunk
    is sized from the rate so far to end near the budget. Returns ``(steps, elapsed_s)``.
    """
    done, i, chunk = 0, 0, 1
    sync()
    start = time.perf_counter()
    while True:
        for _ in range(chunk):
            step(i)
            i = i + 1 if i + 1 < num_actions else 0
        sync()
        done += chunk
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done, elapsed
        remaining = int((seconds - elapsed) * done / elapsed) + 1 if elapsed > 0 else 2 * chunk
        chunk = max(1, min(remaining, 2 * chunk, num_actions))


def _action_steps(num_envs: int) -> int:
    """How many steps of actions to pre-generate for ``num_envs`` envs (then reused cyclically)."""
    return max(1, min(MAX_ACTION_STEPS, MAX_ACTION_ENTRIES // num_envs))


def _sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# ---------------------------------------------------------------------------- measurements
def measure_rlmem_env(
    num_envs: int, device: str, seconds: float, warmup: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Env-only env-steps/s of rlmem's batched ``RepeatPreviousEasy`` on ``device``."""
    dev = torch.device(device)
    env = RepeatPreviousEasy(num_envs=num_envs, device=dev, seed=seed)
    env.reset(seed=seed)
    n_actions = _action_steps(num_envs)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed + 1)
    actions = torch.randint(
        env.single_action_space.n, (n_actions, num_envs), generator=gen, device=dev,
        dtype=torch.int64,
    )
    rows = actions.unbind(0)  # views made once, outside the timed loop

    def step(i: int) -> None:
        env.step(rows[i])

    sync = _sync_for(dev)
    for i in range(warmup):
        step(i % n_actions)
    steps, elapsed = _timed_steps(step, n_actions, seconds, sync)
    env.close()
    return _row("env", "rlmem", str(dev), num_envs, steps, elapsed)


def measure_popgym_env(
    num_envs: int, seconds: float, warmup: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Env-only env-steps/s of popgym's numpy ``RepeatPreviousEasy`` in a ``SyncVectorEnv``."""
    import gymnasium as gym
    from popgym.envs.repeat_previous import RepeatPreviousEasy as PopgymRepeatPreviousEasy

    envs = gym.vector.SyncVectorEnv([PopgymRepeatPreviousEasy for _ in range(num_envs)])
    envs.reset(seed=seed)
    n_actions = _action_steps(num_envs)
    n_symbols = int(envs.single_action_space.n)
    actions = np.random.default_rng(seed + 1).integers(0, n_symbols, (n_actions, num_envs))

    def step(i: int) -> None:
        envs.step(actions[i])

    for i in range(warmup):
        step(i % n_actions)
    steps, elapsed = _timed_steps(step, n_actions, seconds, lambda: None)
    envs.close()
    return _row("env", "popgym", "cpu", num_envs, steps, elapsed)


# ---------------------------------------------------------------------------- training
def _timed_learn(
    learn_more: Callable[[int], int], batch: int, seconds: float, sync: Callable[[], None]
) -> dict[str, Any]:
    """Two untimed warm-up iterations, then one timed ``learn_more(k * batch)`` of about ``seconds``.

    ``learn_more(steps)`` trains for ``steps`` more env-steps and returns how many it trained
    (a multiple of ``batch``, the env-steps of one iteration). Two, because on CUDA the first
    iteration runs eagerly and the second records the CUDA graphs (``warmup_s`` holds both).
    """
    start = time.perf_counter()
    learn_more(2 * batch)
    sync()
    warmup_s = time.perf_counter() - start
    k = max(1, round(2 * seconds / warmup_s)) if warmup_s > 0 else 1
    sync()
    start = time.perf_counter()
    steps = learn_more(k * batch)
    sync()
    return {"env_steps": steps, "elapsed_s": time.perf_counter() - start, "iterations": k,
            "warmup_s": warmup_s}


def _train_row(impl: str, device: str, num_envs: int, n_steps: int, timed: dict[str, Any]) -> dict:
    row = _row("train", impl, device, num_envs, timed["env_steps"] // num_envs, timed["elapsed_s"])
    row.update(n_steps=n_steps, iterations=timed["iterations"], warmup_s=timed["warmup_s"])
    return row


def ppo_config(num_envs: int, overrides: dict[str, Any]) -> PPOConfig:
    """rlmem's ``PPOConfig`` defaults with ``overrides`` (from ``--set``) and ``n_envs=num_envs``."""
    return build_config(PPOConfig, {**overrides, "n_envs": num_envs})


def _hyperparameters(config: PPOConfig) -> dict[str, Any]:
    """The config as RecurrentPPO keyword arguments (all fields but ``extra``)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}


def measure_rlmem_train(
    num_envs: int, device: str, seconds: float, overrides: dict[str, Any], seed: int = 0
) -> dict[str, Any]:
    """End-to-end ``learn()`` env-steps/s of rlmem's RecurrentPPO on RepeatPreviousEasy."""
    dev = torch.device(device)
    config = ppo_config(num_envs, overrides)
    baseline = _reset_peak_memory(dev)
    agent = RecurrentPPO(TRAIN_ENV_ID, device=dev, seed=seed, verbose=0, **_hyperparameters(config))

    def learn_more(steps: int) -> int:
        before = agent.num_timesteps
        agent.learn(steps, progress_bar=False)
        return agent.num_timesteps - before

    timed = _timed_learn(learn_more, num_envs * config.n_steps, seconds, _sync_for(dev))
    memory = _peak_memory(dev, num_envs, baseline)
    agent.env.close()
    row = _train_row("rlmem", str(dev), num_envs, config.n_steps, timed)
    row.update(memory)
    row.update(_graph_use(agent))
    return row


def _graph_use(agent: RecurrentPPO) -> dict[str, Any]:
    """Which fast paths the measured agent ran: the update's unroll and whether rollout / update were graph replays."""
    calls = {"rollout": agent._rollout_call, "update": agent._minibatch_call}
    return {"unroll": agent.unroll,
            **{f"{name}_cuda_graph": call is not None and call.active for name, call in calls.items()}}


def measure_rollout(
    num_envs: int, device: str, seconds: float, overrides: dict[str, Any], seed: int = 0
) -> dict[str, Any]:
    """Rollout env-steps/s of rlmem's RecurrentPPO: env + policy, no update.

    The agent of the train section (same config, ``--set`` included) fills its rollout buffer:
    ``_prepare_learning()``, ``_last = _start()``, two untimed ``_collect`` calls (on CUDA the second
    records the graph), then ``_collect``
    repeated until ``seconds`` have passed (at least once). Each call is ``num_envs * n_steps``
    env-steps and ends with a host read of the episode statistics; on CUDA the clock is read
    after ``torch.cuda.synchronize()`` too.
    """
    dev = torch.device(device)
    config = ppo_config(num_envs, overrides)
    sync = _sync_for(dev)
    baseline = _reset_peak_memory(dev)
    agent = RecurrentPPO(TRAIN_ENV_ID, device=dev, seed=seed, verbose=0, **_hyperparameters(config))
    agent._prepare_learning()
    agent._last = agent._start()
    start = time.perf_counter()
    for _ in range(2):  # untimed: first-call kernels and caches; on CUDA the second call records the graph
        agent._collect(agent._buffer)
    sync()
    warmup_s = time.perf_counter() - start
    calls = 0
    start = time.perf_counter()
    while True:
        agent._collect(agent._buffer)
        calls += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    memory = _peak_memory(dev, num_envs, baseline)
    agent.env.close()
    row = _row("rollout", "rlmem", str(dev), num_envs, calls * config.n_steps, elapsed)
    row.update(n_steps=config.n_steps, calls=calls, warmup_s=warmup_s, **memory)
    row.update(_graph_use(agent))
    return row


def _reset_peak_memory(dev: torch.device) -> int | None:
    """On CUDA: free what earlier measurements left, reset the peak and return the bytes still
    allocated (the baseline the peak starts from). None on the CPU."""
    if dev.type != "cuda":
        return None
    gc.collect()
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    return torch.cuda.memory_allocated(dev)


def _peak_memory(dev: torch.device, num_envs: int, baseline: int | None) -> dict[str, Any]:
    """``peak_memory_bytes`` (``torch.cuda.max_memory_allocated`` since :func:`_reset_peak_memory`)
    and per env; None on the CPU, where torch keeps no such count."""
    if dev.type != "cuda":
        return {"peak_memory_bytes": None, "peak_memory_bytes_per_env": None, "memory_baseline_bytes": None}
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev)
    return {"peak_memory_bytes": peak, "peak_memory_bytes_per_env": peak / num_envs,
            "memory_baseline_bytes": baseline}


def sb3_available() -> bool:
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        return False
    return True


def measure_sb3_train(
    num_envs: int, seconds: float, overrides: dict[str, Any], seed: int = 0, settings: str = "matched",
    device: str = "cpu",
) -> dict[str, Any]:
    """End-to-end ``learn()`` env-steps/s of sb3-contrib's RecurrentPPO, its policy on ``device``.

    ``settings="matched"``: network, batch and update matched to rlmem's config (impl "sb3");
    ``settings="defaults"``: sb3-contrib's own defaults, only the number of envs shared
    (impl "sb3-defaults": what a user of sb3-contrib gets out of the box). The env is an rlmem
    CPU batch seen through :class:`rlmem.SB3VecEnvView` whatever ``device`` is (that is how sb3
    steps it: numpy arrays on the host); the row's ``device`` is the policy's, ``env_device`` "cpu".
    """
    from sb3_contrib import RecurrentPPO as SB3RecurrentPPO

    from rlmem import SB3VecEnvView, make_vec_env

    dev = torch.device(device)
    config = ppo_config(num_envs, overrides)
    baseline = _reset_peak_memory(dev)
    torch.manual_seed(seed)
    venv = SB3VecEnvView(make_vec_env(TRAIN_ENV_ID, num_envs, device="cpu", seed=seed))
    kwargs = sb3_kwargs(config, seed) if settings == "matched" else {"seed": seed}
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

    timed = _timed_learn(learn_more, num_envs * config.n_steps, seconds, _sync_for(dev))
    venv.close()
    row = _train_row("sb3" if settings == "matched" else "sb3-defaults", str(dev), num_envs, config.n_steps, timed)
    row.update(batch_size=model.batch_size, env_device="cpu", **_peak_memory(dev, num_envs, baseline))
    return row


def _row(what: str, impl: str, device: str, num_envs: int, steps: int, elapsed: float) -> dict:
    env_steps = num_envs * steps
    return {
        "what": what,
        "impl": impl,
        "device": device,
        "num_envs": num_envs,
        "steps_per_s": env_steps / elapsed,
        "env_steps": env_steps,
        "batched_steps": steps,
        "elapsed_s": elapsed,
    }


# ---------------------------------------------------------------------------- memory unroll
def episode_starts(pattern: str, seq_len: int, num_envs: int, seed: int = 0) -> torch.Tensor:
    """An ``episode_start`` mask ``[seq_len, num_envs]`` (bool, on the CPU) for ``pattern``.

    ``synchronized``: every env starts at once every ``SYNC_EPISODE_LENGTH`` (52) steps, from
    t=0, like RepeatPreviousEasy's fixed-length episodes. ``scattered``: each (step, env) starts
    with probability ``SCATTERED_START_PROB`` (1/25), independently and seeded, like
    CartPole-style varied episode lengths.
    """
    if pattern == "synchronized":
        starts = torch.zeros(seq_len, num_envs, dtype=torch.bool)
        starts[::SYNC_EPISODE_LENGTH] = True
        return starts
    if pattern == "scattered":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(seq_len, num_envs, generator=gen) < SCATTERED_START_PROB
    raise ValueError(f"pattern must be one of {UNROLL_PATTERNS}, got {pattern!r}")


def unroll_pieces(starts: torch.Tensor, mode: str) -> int:
    """How many RNN calls ``mode`` makes over ``starts`` ``[T, N]`` (as rlmem.memory cuts it)."""
    if mode == "per_step":
        return int(starts.shape[0])
    return 1 + int(starts[1:].any(dim=1).sum())


def measure_unroll(
    memory: str, hidden_size: int, pattern: str, num_envs: int, device: str, seconds: float,
    seq_len: int = DEFAULT_UNROLL_SEQ_LEN, warmup: int = 5, seed: int = 0,
) -> list[dict[str, Any]]:
    """Forward + backward samples/s of one memory core's unroll, chunked and per_step.

    One core (``num_layers=1``, input width ``UNROLL_INPUT_SIZE``, the encoder's output in
    PPO's default network), one ``[seq_len, num_envs]`` input that requires grad (as the
    encoder's output does in the update), a zero initial state and the ``pattern`` of episode
    starts; each call is ``out, _ = core(x, state, starts); out.sum().backward()``. Both modes
    run the same weights on the same input; the chunked row carries the largest absolute
    difference of its output and final state from the per_step reference.
    """
    dev = torch.device(device)
    torch.manual_seed(seed)
    core = make_core(memory, UNROLL_INPUT_SIZE, hidden_size, 1, unroll="per_step").to(dev)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(seq_len, num_envs, UNROLL_INPUT_SIZE, generator=gen).to(dev).requires_grad_()
    state = core.initial_state(num_envs, dev)
    starts = episode_starts(pattern, seq_len, num_envs, seed).to(dev)

    with torch.no_grad():  # correctness: chunked against the per_step reference
        outputs = {}
        for mode in UNROLL_MODES:
            core.unroll = mode
            outputs[mode] = core(x, state, starts)
        ref_out, ref_state = outputs["per_step"]
        out, fin = outputs["chunked"]
        max_diff = max(float((out - ref_out).abs().max()),
                       *(float((a - b).abs().max()) for a, b in zip(fin, ref_state, strict=True)))

    def call(_: int) -> None:
        core.zero_grad(set_to_none=True)
        x.grad = None
        out, _state = core(x, state, starts)
        out.sum().backward()

    sync = _sync_for(dev)
    rows = []
    for mode in UNROLL_MODES:
        core.unroll = mode
        for i in range(warmup):
            call(i)
        calls, elapsed = _timed_steps(call, 1 << 30, seconds, sync)
        samples = calls * seq_len * num_envs
        rows.append({
            "what": "unroll", "memory": memory, "hidden_size": hidden_size, "pattern": pattern,
            "mode": mode, "device": str(dev), "num_envs": num_envs, "seq_len": seq_len,
            "samples_per_s": samples / elapsed, "calls": calls, "elapsed_s": elapsed,
            "ms_per_call": 1000.0 * elapsed / calls, "pieces": unroll_pieces(starts.cpu(), mode),
            "max_abs_diff_vs_per_step": max_diff if mode == "chunked" else 0.0,
        })
    return rows


def unroll_comparisons(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (device, memory, hidden, pattern, N): which unroll mode is faster, and by how much."""
    by_key: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["what"] == "unroll":
            key = (r["device"], r["memory"], r["hidden_size"], r["pattern"], r["num_envs"])
            by_key.setdefault(key, {})[r["mode"]] = r
    out = []
    for (device, memory, hidden, pattern, n), modes in by_key.items():
        if not all(m in modes for m in UNROLL_MODES):
            continue
        chunked, per_step = modes["chunked"]["samples_per_s"], modes["per_step"]["samples_per_s"]
        faster = "chunked" if chunked >= per_step else "per_step"
        out.append({
            "device": device, "memory": memory, "hidden_size": hidden, "pattern": pattern,
            "num_envs": n, "faster": faster, "speedup": max(chunked, per_step) / min(chunked, per_step),
            "chunked_over_per_step": chunked / per_step,
            "chunked_pieces": modes["chunked"]["pieces"],
            "max_abs_diff_vs_per_step": modes["chunked"]["max_abs_diff_vs_per_step"],
        })
    return out


# ---------------------------------------------------------------------------- time to learn
def learn_config(overrides: dict[str, Any]) -> PPOConfig:
    """rlmem's ``PPOConfig`` defaults with ``overrides`` (from ``--set``; ``n_envs`` allowed)."""
    return build_config(PPOConfig, overrides)


def warm_up_learn(env_id: str, device: str, overrides: dict[str, Any]) -> float:
    """Build a throwaway agent and train it one iteration; return the seconds it took.

    Untimed warm-up before a device's first seed: the first agent of a process pays one-time
    costs (lazy imports, env registration, first-call kernels; ~2 s here) that are not learning.
    """
    dev = torch.device(device)
    config = learn_config(overrides)
    start = time.perf_counter()
    agent = RecurrentPPO(env_id, device=dev, seed=0, verbose=0, **_hyperparameters(config))
    agent.learn(config.n_envs * config.n_steps, progress_bar=False)
    _sync_for(dev)()
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
    sync = _sync_for(dev)
    reached: dict[str, Any] = {}
    start = time.perf_counter()
    agent = RecurrentPPO(env_id, device=dev, seed=seed, verbose=0, **_hyperparameters(config))
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


def _median(values: Sequence[float | None]) -> float | None:
    """The median, counting None (not reached) as +infinity; None if that median is infinite."""
    if not values:
        return None
    med = statistics.median(math.inf if v is None else float(v) for v in values)
    return None if math.isinf(med) else med


def learn_median_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median over seeds of per-seed ``learn`` rows (one env, device and threshold)."""
    first = rows[0]
    steps = _median([r["steps_to_threshold"] for r in rows])
    return {
        "what": "learn", "impl": "rlmem", "env": first["env"], "device": first["device"],
        "threshold": first["threshold"], "seconds_to_threshold": _median([r["seconds_to_threshold"] for r in rows]),
        "steps_to_threshold": None if steps is None else round(steps),
        "eval_mean_return": statistics.median(r["eval_mean_return"] for r in rows),
        "seeds": [r["seed"] for r in rows], "seed": None, "aggregate": "median",
        "reached_seeds": sum(r["reached"] for r in rows), "budget": first["budget"],
    }


# ---------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(devices: Sequence[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):  # other work on the machine skews the figures
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    try:
        import gymnasium

        info["gymnasium_version"] = gymnasium.__version__
    except ImportError:  # pragma: no cover - rlmem itself needs gymnasium
        pass
    popgym_version = _popgym_version()
    if popgym_version is not None:
        info["popgym_version"] = popgym_version
    cuda = [d for d in devices if torch.device(d).type == "cuda"]
    if cuda:
        info["cuda_devices"] = {d: torch.cuda.get_device_name(torch.device(d)) for d in cuda}
        info["cuda_version"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    return info


def _popgym_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("popgym")
    except (ImportError, PackageNotFoundError):
        return None


def popgym_available() -> bool:
    try:
        import popgym.envs.repeat_previous  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------- CLI
def _int_list(text: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None
    if not values or any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _seed_list(text: str) -> list[int]:
    return _int_list(text, minimum=0)


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _sb3_settings(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in ("matched", "defaults")]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"expected matched and/or defaults, got {text!r}")
    return parts


def _sections(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    bad = [part for part in parts if part not in (*SECTIONS, "all")]
    if not parts or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of {', '.join(SECTIONS)} or all, got {text!r}")
    if "all" in parts:
        parts += ALL_SECTIONS
    return [section for section in SECTIONS if section in parts]


def _sb3_device(text: str) -> str:
    """``--sb3-device``: ``same``, or a cpu / cuda device (checked against the machine later)."""
    value = text.strip()
    if value == SB3_DEVICE_SAME:
        return value
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or same, got {text!r}")
    return value


def _setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``; the value is a Python literal (int, float, tuple,
    None, True, ...), ``none``/``null``/``true``/``false`` in any case, or else a string."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    words = {"none": None, "null": None, "true": True, "false": False}
    if raw.lower() in words:
        return key, words[raw.lower()]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def parse_settings(pairs: Sequence[tuple[str, Any]], allow_n_envs: bool = False) -> dict[str, Any]:
    """``--set`` pairs as PPOConfig overrides (checked by :func:`ppo_config`).

    ``n_envs`` is allowed only with ``allow_n_envs`` (``--what learn`` without ``train``, whose
    N comes from ``--train-num-envs``)."""
    defaults = PPOConfig()
    overrides: dict[str, Any] = {}
    for key, value in pairs:
        if key in NOT_SETTABLE and not (key == "n_envs" and allow_n_envs):
            hint = " with --what train (use --train-num-envs)" if key == "n_envs" else ""
            raise ValueError(f"--set {key} is not allowed{hint}")
        if isinstance(getattr(defaults, key, None), tuple) and isinstance(value, int):
            value = (value,)  # encoder_sizes=64
        overrides[key] = value
    return overrides


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Env-steps/s of rlmem's batched RepeatPreviousEasy vs popgym's numpy one, "
        "rollout (env + policy) and end-to-end training env-steps/s of rlmem's RecurrentPPO vs "
        "sb3-contrib's, peak device memory per env, the memory unroll's speed (chunked vs per_step), "
        "and seconds to learn a task. The module docstring (rlmem/throughput.py) says how each is measured.",
    )
    parser.add_argument(
        "--device", default="cpu",
        help="comma list of devices (cpu, cuda, cuda:1, ...), or 'auto' for cpu plus cuda "
        "when a CUDA GPU is available (default: %(default)s)",
    )
    parser.add_argument(
        "--sizes", type=_int_list, default=None, metavar="N[,N...]",
        help="numbers of envs for env, rollout and train at once (each section's own option below, "
        "where given, wins), e.g. --device cuda --what all --sizes 1024,4096,16384,65536",
    )
    parser.add_argument(
        "--num-envs", type=_int_list, default=None, metavar="N[,N...]",
        help="batch sizes for rlmem's env-only measurement (default: powers of 4 from 1 to 65,536; "
        "on cuda 1024,4096,16384,65536)",
    )
    parser.add_argument(
        "--popgym-num-envs", type=_int_list, default=DEFAULT_POPGYM_NUM_ENVS, metavar="N[,N...]",
        help="numbers of envs in popgym's SyncVectorEnv (default: 1,16,256,4096)",
    )
    parser.add_argument("--no-popgym", action="store_true", help="skip the popgym measurements")
    parser.add_argument(
        "--seconds", type=_positive_float, default=1.0, help="time budget per env, rollout or unroll measurement, in seconds (default: %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed env steps (env) or calls (unroll) before each measurement "
                        "(default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch.set_num_threads before measuring (default: leave torch's default)",
    )
    parser.add_argument(
        "--what", type=_sections, default=list(DEFAULT_SECTIONS), metavar="SECTION[,SECTION...]",
        help="which measurements: env (env-only), rollout (env + policy, no update), train "
        "(end-to-end training), unroll (memory unroll of the PPO update, chunked vs per_step), learn "
        "(seconds for RecurrentPPO to reach --learn-threshold); all = env,rollout,train "
        "(default: env,train)",
    )
    parser.add_argument("--no-train", action="store_true", help="skip the training measurements")
    parser.add_argument(
        "--train-num-envs", type=_int_list, default=None, metavar="N[,N...]",
        help="numbers of envs for the training measurements (default: PPOConfig's n_envs, "
        f"{DEFAULT_TRAIN_NUM_ENVS[0]}; on cuda 1024,4096,16384,65536)",
    )
    parser.add_argument(
        "--rollout-num-envs", type=_int_list, default=None, metavar="N[,N...]",
        help="numbers of envs for the rollout measurements (default: the train section's)",
    )
    parser.add_argument(
        "--train-seconds", type=_positive_float, default=10.0,
        help="time budget per training measurement, after two untimed iterations "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--sb3-settings", type=_sb3_settings,
        default=["matched"], metavar="matched,defaults",
        help="sb3-contrib runs: 'matched' (rlmem's network and batch) and/or 'defaults' "
             "(sb3-contrib's own defaults, only N shared; slow: minutes) (default: matched)")
    parser.add_argument("--no-sb3", action="store_true",
                        help="skip the sb3-contrib RecurrentPPO training baseline")
    parser.add_argument(
        "--sb3-max-num-envs", type=int, default=DEFAULT_SB3_MAX_NUM_ENVS, metavar="N",
        help="measure sb3-contrib only at --train-num-envs up to N (default: %(default)s)",
    )
    parser.add_argument(
        "--sb3-device", type=_sb3_device, default="cpu", metavar="DEVICE",
        help="device of sb3-contrib's policy: cpu, cuda, cuda:N, or 'same' (each --device in turn); its env "
        "stays an rlmem CPU batch (default: %(default)s)",
    )
    parser.add_argument(
        "--unroll-num-envs", type=_int_list, default=DEFAULT_UNROLL_NUM_ENVS, metavar="N[,N...]",
        help="numbers of env sequences per unroll call for --what unroll (default: 16,64)",
    )
    parser.add_argument(
        "--unroll-hidden-sizes", type=_int_list, default=DEFAULT_UNROLL_HIDDEN_SIZES,
        metavar="H[,H...]", help="memory core widths for --what unroll (default: 64,128)",
    )
    parser.add_argument(
        "--unroll-seq-len", type=_positive_int, default=DEFAULT_UNROLL_SEQ_LEN, metavar="T",
        help=f"steps per unrolled sequence for --what unroll (default: {DEFAULT_UNROLL_SEQ_LEN})",
    )
    parser.add_argument(
        "--learn-env", default=TRAIN_ENV_ID, metavar="ID",
        help="env id for --what learn (default: %(default)s)",
    )
    parser.add_argument(
        "--learn-threshold", type=_float, default=DEFAULT_LEARN_THRESHOLD, metavar="RETURN",
        help="training episodic return that counts as learned for --what learn "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--learn-budget", type=_positive_int, default=DEFAULT_LEARN_BUDGET, metavar="STEPS",
        help="most env-steps per seed for --what learn (default: 2,000,000)",
    )
    parser.add_argument(
        "--learn-seeds", type=_seed_list, default=None, metavar="S[,S...]",
        help="seeds for --what learn, each run separately, then the median "
        "(default: --seed)",
    )
    parser.add_argument(
        "--set", dest="settings", type=_setting, nargs="+", action="extend", default=[],
        metavar="KEY=VALUE",
        help="override a PPOConfig hyperparameter for the train and learn measurements, e.g. "
        "--set n_steps=32 hidden_size=64; sb3-contrib gets the matched value; n_envs only "
        "without --what train",
    )
    parser.add_argument(
        "--tf32", action="store_true",
        help="let float32 matrix products use TF32 tensor cores on CUDA (torch.backends.cuda.matmul.allow_tf32; "
        "cuDNN's RNNs already may, by torch's default); recorded in the machine info")
    parser.add_argument("--seed", type=int, default=0, help="seed for the envs and the actions (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    return parser


def _union(lists: dict[str, list[int]]) -> list[int]:
    """Every N of the per-device lists, in increasing order."""
    return sorted({n for ns in lists.values() for n in ns})


def section_sizes(args: argparse.Namespace, devices: Sequence[str]) -> dict[str, dict[str, list[int]]]:
    """The N lists of the env, rollout and train sections, per device: ``{section: {device: [N, ...]}}``.

    A section's own option wins, then ``--sizes``; with neither, a cuda device gets
    ``DEFAULT_CUDA_NUM_ENVS`` and the cpu the defaults (env: 1 .. 65,536; train: PPOConfig's
    n_envs). The rollout section defaults to the train section's lists.
    """
    def pick(own: list[int] | None, cpu_default: list[int]) -> dict[str, list[int]]:
        if own is not None or args.sizes is not None:
            return {d: list(own if own is not None else args.sizes) for d in devices}
        return {d: list(DEFAULT_CUDA_NUM_ENVS if torch.device(d).type == "cuda" else cpu_default)
                for d in devices}

    train = pick(args.train_num_envs, DEFAULT_TRAIN_NUM_ENVS)
    rollout = pick(args.rollout_num_envs, DEFAULT_TRAIN_NUM_ENVS)
    if args.rollout_num_envs is None and args.sizes is None:
        rollout = {d: list(ns) for d, ns in train.items()}
    return {"env": pick(args.num_envs, DEFAULT_NUM_ENVS), "rollout": rollout, "train": train}


def resolve_sb3_device(spec: str) -> str:
    """``--sb3-device`` (not ``same``) as a device string; exit with one line if CUDA is missing."""
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --sb3-device {spec} requested but no CUDA GPU is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SystemExit(f"error: --sb3-device {spec} requested but only {torch.cuda.device_count()} CUDA "
                         "GPU(s) are available")
    return spec


def resolve_devices(spec: str) -> list[str]:
    """Turn ``--device`` into a list of device strings; exit with one line if CUDA is missing."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    devices: list[str] = []
    for part in parts or ["cpu"]:
        if part == "auto":
            candidates = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        else:
            candidates = [part]
        for d in candidates:
            try:
                dev = torch.device(d)
            except RuntimeError:
                raise SystemExit(f"error: --device: unknown device {d!r}")
            if dev.type not in ("cpu", "cuda"):
                raise SystemExit(f"error: --device: only cpu and cuda are supported, got {d!r}")
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise SystemExit(CUDA_MISSING)
            if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
                raise SystemExit(
                    f"error: --device {d} requested but only {torch.cuda.device_count()} CUDA "
                    "GPU(s) are available"
                )
            if d not in devices:
                devices.append(d)
    return devices


# ---------------------------------------------------------------------------- report
def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt_ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None else f"{num / den:,.1f}x"


def format_table(results: dict[str, Any]) -> str:
    """The env-throughput table: one line per (device, N)."""
    env_rows = [r for r in results["rows"] if r["what"] == "env"]
    rlmem = {(r["device"], r["num_envs"]): r["steps_per_s"] for r in env_rows if r["impl"] == "rlmem"}
    popgym = {r["num_envs"]: r["steps_per_s"] for r in env_rows if r["impl"] == "popgym"}
    devices = results["config"]["devices"]
    keys: list[tuple[str, int]] = []
    for device in devices:
        sizes = {n for d, n in rlmem if d == device}
        if device == "cpu":
            sizes |= set(popgym)
        keys += [(device, n) for n in sorted(sizes)]
    shown = {n for _, n in keys}
    keys += [("cpu", n) for n in sorted(set(popgym) - shown)]  # popgym sizes with no rlmem row
    header = ("device", "N", "rlmem env-steps/s", "popgym env-steps/s", "rlmem/popgym")
    lines = [header]
    for device, n in keys:
        mine, theirs = rlmem.get((device, n)), popgym.get(n)
        lines.append((device, f"{n:,}", _fmt_rate(mine), _fmt_rate(theirs), _fmt_ratio(mine, theirs)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    if popgym and any(d != "cpu" for d, _ in keys):
        out.append("(popgym runs on the CPU with numpy on every row; its ratio on a cuda row "
                   "compares the GPU batch against it)")
    return "\n".join(out)


def headline_ratio(results: dict[str, Any]) -> float | None:
    """rlmem/popgym env-steps/s at N=4096 on the CPU, or None if either was not measured."""
    rows = [r for r in results["rows"] if r["what"] == "env" and r["num_envs"] == REFERENCE_NUM_ENVS]
    mine = [r["steps_per_s"] for r in rows if r["impl"] == "rlmem" and r["device"] == "cpu"]
    theirs = [r["steps_per_s"] for r in rows if r["impl"] == "popgym"]
    if not mine or not theirs:
        return None
    return mine[0] / theirs[0]


def _fmt_mib_per_env(row: dict[str, Any] | None) -> str:
    """A row's peak device memory per env in MiB; "n/a on cpu" where torch counts none."""
    if row is None:
        return "-"
    per_env = row.get("peak_memory_bytes_per_env")
    if per_env is None:
        return "n/a on cpu" if row["device"] == "cpu" else "-"
    return f"{per_env / MIB:,.4f}"


def _fmt_memory_note(row: dict[str, Any]) -> str:
    """`` peak 123.4 MiB (0.0019 MiB/env)`` on CUDA, nothing on the CPU (progress lines)."""
    if row.get("peak_memory_bytes") is None:
        return ""
    return f", peak {row['peak_memory_bytes'] / MIB:,.1f} MiB ({_fmt_mib_per_env(row)} MiB/env)"


def _sb3_for(sb3: dict[tuple[str, int], dict[str, Any]], device: str, num_envs: int) -> dict[str, Any] | None:
    """The sb3 row to compare an rlmem row of ``device`` at ``num_envs`` with: at that N, sb3 on
    the same device if it was measured there, else on the first device it ran on; None if none."""
    if (device, num_envs) in sb3:
        return sb3[(device, num_envs)]
    return next((r for (_, n), r in sb3.items() if n == num_envs), None)


def format_train_table(results: dict[str, Any]) -> str:
    """The training table: one line per (impl, device, N), rlmem's with its ratio to sb3."""
    rows = [r for r in results["rows"] if r["what"] == "train"]
    sb3 = {(r["device"], r["num_envs"]): r for r in rows if r["impl"] == "sb3"}
    order = {"rlmem": 0, "sb3": 1}
    devices = results["config"]["devices"]
    rows = sorted(rows, key=lambda r: (r["num_envs"], order.get(r["impl"], 2),
                                       devices.index(r["device"]) if r["device"] in devices else 0))
    header = ("impl", "device", "N", "env-steps/s", "peak MiB/env", "rlmem/sb3")
    lines = [header]
    for r in rows:
        ratio = "-"
        if r["impl"] == "rlmem":
            theirs = _sb3_for(sb3, r["device"], r["num_envs"])
            if theirs is not None:
                ratio = _fmt_ratio(r["steps_per_s"], theirs["steps_per_s"])
                ratio += "" if theirs["device"] == r["device"] else f" (sb3 on {theirs['device']})"
        lines.append((r["impl"], r["device"], f"{r['num_envs']:,}", _fmt_rate(r["steps_per_s"]),
                      _fmt_mib_per_env(r), ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        cells = [c.ljust(w) for c, w in zip(line[:2], widths[:2])]
        cells += [c.rjust(w) for c, w in zip(line[2:], widths[2:])]
        out.append("  ".join(cells))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    if sb3:
        out.append("(sb3-contrib's env is an rlmem CPU batch on every row; its policy runs on the row's device; "
                   "rlmem/sb3 compares with sb3 at the same N, on the same device unless noted)")
    return "\n".join(out)


def summary_lines(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per (device, N) with an env, rollout or train row of rlmem: the figures of those
    rows and train / sb3 (sb3 at that N, else at its largest measured N below it; on the same
    device if it ran there, else where it ran)."""
    rows = results["rows"]
    mine = {(r["what"], r["device"], r["num_envs"]): r for r in rows
            if r["impl"] == "rlmem" and r["what"] in ALL_SECTIONS}
    sb3 = {(r["device"], r["num_envs"]): r for r in rows if r["what"] == "train" and r["impl"] == "sb3"}
    devices = list(results["config"]["devices"])
    keys = sorted({(d, n) for _, d, n in mine}, key=lambda k: (devices.index(k[0]) if k[0] in devices else
                                                               len(devices), k[1]))
    out = []
    for device, n in keys:
        env, rollout, train = (mine.get((what, device, n)) for what in ALL_SECTIONS)
        line: dict[str, Any] = {
            "device": device, "num_envs": n,
            "env_steps_per_s": env["steps_per_s"] if env else None,
            "rollout_steps_per_s": rollout["steps_per_s"] if rollout else None,
            "train_steps_per_s": train["steps_per_s"] if train else None,
            "rollout_peak_memory_bytes_per_env": rollout.get("peak_memory_bytes_per_env") if rollout else None,
            "train_peak_memory_bytes_per_env": train.get("peak_memory_bytes_per_env") if train else None,
            "sb3_steps_per_s": None, "sb3_device": None, "sb3_num_envs": None, "train_over_sb3": None,
        }
        if train is not None and sb3:
            smaller = [m for _, m in sb3 if m <= n]
            theirs = _sb3_for(sb3, device, max(smaller)) if smaller else None
            if theirs is not None:
                line.update(sb3_steps_per_s=theirs["steps_per_s"], sb3_device=theirs["device"],
                            sb3_num_envs=theirs["num_envs"],
                            train_over_sb3=train["steps_per_s"] / theirs["steps_per_s"])
        out.append(line)
    return out


def format_summary_table(results: dict[str, Any]) -> str:
    """The summary: one line per (device, N) of the env, rollout and train figures, peak device
    memory per env and train / sb3, the sb3 figure's device and N named."""
    lines = [("device", "N", "env-only steps/s", "rollout steps/s", "train steps/s",
              "peak MiB/env rollout", "peak MiB/env train", "train/sb3", "sb3 at (device, N)")]
    for s in results["summary"].get("table") or summary_lines(results):
        def mib(value: float | None, measured: bool) -> str:
            if not measured:
                return "-"
            if value is None:
                return "n/a on cpu" if s["device"] == "cpu" else "-"
            return f"{value / MIB:,.4f}"
        at = "-" if s["sb3_num_envs"] is None else f"{s['sb3_device']}, {s['sb3_num_envs']:,}"
        lines.append((s["device"], f"{s['num_envs']:,}", _fmt_rate(s["env_steps_per_s"]),
                      _fmt_rate(s["rollout_steps_per_s"]), _fmt_rate(s["train_steps_per_s"]),
                      mib(s["rollout_peak_memory_bytes_per_env"], s["rollout_steps_per_s"] is not None),
                      mib(s["train_peak_memory_bytes_per_env"], s["train_steps_per_s"] is not None),
                      _fmt_ratio(s["train_steps_per_s"], s["sb3_steps_per_s"]), at))
    out = ["Summary (env-steps/s; peak = torch.cuda.max_memory_allocated over building and running the agent)"]
    out += _table(lines, 1)
    if any(s["sb3_num_envs"] is not None and s["sb3_num_envs"] != s["num_envs"]
           for s in results["summary"].get("table") or []):
        out.append("(train/sb3 divides by sb3-contrib at the N in the last column: where sb3 was not measured at "
                   "the row's N (--sb3-max-num-envs), by its figure at the largest N it was measured at below it)")
    return "\n".join(out)


def train_headline(results: dict[str, Any], baseline: str = "sb3") -> tuple[float | None, int | None]:
    """rlmem/sb3 end-to-end env-steps/s on the CPU at the first N of --train-num-envs where
    both were measured, and that N; ``(None, None)`` if there is none."""
    rows = [r for r in results["rows"] if r["what"] == "train" and r["device"] == "cpu"]
    mine = {r["num_envs"]: r["steps_per_s"] for r in rows if r["impl"] == "rlmem"}
    theirs = {r["num_envs"]: r["steps_per_s"] for r in rows if r["impl"] == baseline}
    train = results.get("config", {}).get("train", {})
    sizes = train.get("num_envs_by_device", {}).get("cpu") or train.get("num_envs") or sorted(mine)
    for n in sizes:
        if n in mine and n in theirs:
            return mine[n] / theirs[n], n
    return None, None


def _table(lines: list[tuple[str, ...]], left: int) -> list[str]:
    """Aligned text rows: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for j, line in enumerate(lines):
        cells = [c.ljust(w) for c, w in zip(line[:left], widths[:left])]
        cells += [c.rjust(w) for c, w in zip(line[left:], widths[left:])]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def format_unroll_table(results: dict[str, Any]) -> str:
    """The unroll table: one line per (device, memory, hidden, pattern, N), both modes' rates,
    which mode is faster and by how much."""
    rows = [r for r in results["rows"] if r["what"] == "unroll"]
    rates = {(r["device"], r["memory"], r["hidden_size"], r["pattern"], r["num_envs"], r["mode"]):
             r["samples_per_s"] for r in rows}
    devices = results["config"]["devices"]

    def order(c: dict[str, Any]) -> tuple:
        return (devices.index(c["device"]) if c["device"] in devices else 0,
                UNROLL_MEMORIES.index(c["memory"]) if c["memory"] in UNROLL_MEMORIES else 9,
                c["hidden_size"], UNROLL_PATTERNS.index(c["pattern"]), c["num_envs"])

    header = ("device", "memory", "pattern", "H", "N", "pieces", "chunked samples/s",
              "per_step samples/s", "faster", "max |chunked - per_step|")
    lines = [header]
    for c in sorted(unroll_comparisons(rows), key=order):
        key = (c["device"], c["memory"], c["hidden_size"], c["pattern"], c["num_envs"])
        lines.append((c["device"], c["memory"], c["pattern"], str(c["hidden_size"]), f"{c['num_envs']:,}",
                      str(c["chunked_pieces"]), _fmt_rate(rates[(*key, "chunked")]),
                      _fmt_rate(rates[(*key, "per_step")]), f"{c['faster']} {c['speedup']:,.2f}x",
                      f"{c['max_abs_diff_vs_per_step']:.1e}"))
    seq_len = results["config"]["unroll"]["seq_len"]
    out = _table(lines, 3)
    out.append(f"(forward + backward of one {seq_len}-step unroll of N sequences per call; samples = "
               f"{seq_len} * N; pieces = RNN calls of the chunked unroll, per_step makes {seq_len})")
    return "\n".join(out)


def _env_name(env_id: str) -> str:
    """``rlmem/RepeatPreviousEasy-v0`` -> ``RepeatPreviousEasy``."""
    name = env_id.rsplit("/", 1)[-1]
    stem, sep, version = name.rpartition("-v")
    return stem if sep and version.isdigit() else name


def format_learn_row(row: dict[str, Any]) -> str:
    """One line for one seed's ``learn`` row."""
    head = f"  learn  {row['device']:<6} {_env_name(row['env'])} seed {row['seed']}: "
    if row["seconds_to_threshold"] is None:
        last = row["last_episodic_return"]
        last = "-" if last is None else f"{last:.3f}"
        body = (f"{row['threshold']:g} not reached within {row['num_timesteps']:,} env-steps "
                f"({row['train_seconds']:.1f} s, last training return {last})")
    else:
        body = (f"{row['threshold']:g} reached in {row['seconds_to_threshold']:.1f} s "
                f"({row['steps_to_threshold']:,} env-steps, {row['iterations_to_threshold']} "
                f"iteration{'s' if row['iterations_to_threshold'] != 1 else ''})")
    return head + body + f"; eval return {row['eval_mean_return']:.3f} ({row['eval_episodes']} episodes)"


def learn_summary_lines(results: dict[str, Any]) -> list[str]:
    """One line per device: the median seconds to the threshold over the seeds."""
    lines = []
    for r in results["rows"]:
        if r["what"] != "learn" or r["aggregate"] != "median":
            continue
        k = len(r["seeds"])
        where = "" if r["device"] == "cpu" else f" on {r['device']}"
        head = f"{_env_name(r['env'])} to {r['threshold']:g}{where}: "
        reached = "" if r["reached_seeds"] == k else f", {r['reached_seeds']} of {k} reached it"
        target = (r["env"] == TRAIN_ENV_ID and r["threshold"] == DEFAULT_LEARN_THRESHOLD
                  and r["device"] == "cpu")
        if r["seconds_to_threshold"] is None:
            line = (f"{head}median not reached within {r['budget']:,} env-steps over {k} "
                    f"seed{'s' if k != 1 else ''}{reached}")
        else:
            line = (f"{head}median {r['seconds_to_threshold']:.1f} s over {k} "
                    f"seed{'s' if k != 1 else ''}{reached}")
        if target:
            line += f" (target: well under {TARGET_LEARN_SECONDS:.0f} s on 2 CPU cores)"
        lines.append(line)
    return lines


def unroll_summary_line(results: dict[str, Any]) -> str:
    comparisons = results["summary"].get("unroll_faster") or []
    if not comparisons:
        return "memory unroll: not measured"
    parts = []
    for mode in UNROLL_MODES:
        wins = [c["speedup"] for c in comparisons if c["faster"] == mode]
        if wins:
            by = (f"{min(wins):,.2f}x" if len(wins) == 1
                  else f"{min(wins):,.2f}x to {max(wins):,.2f}x")
            parts.append(f"{mode} faster in {len(wins)} of {len(comparisons)} settings (by {by})")
    worst = max(c["max_abs_diff_vs_per_step"] for c in comparisons)
    return (f"memory unroll (forward + backward): {'; '.join(parts)}; "
            f"largest |chunked - per_step| output difference {worst:.1e}")


def format_summary(results: dict[str, Any]) -> str:
    m = results["machine"]
    what = results["config"].get("what", list(DEFAULT_SECTIONS))
    lines = []
    if "env" in what:
        ratio = results["summary"]["rlmem_over_popgym_cpu_n4096"]
        if ratio is None:
            lines.append(f"rlmem/popgym at N={REFERENCE_NUM_ENVS:,} on cpu: not measured (needs cpu, "
                         f"N={REFERENCE_NUM_ENVS} in --num-envs and --popgym-num-envs, and popgym)")
        else:
            lines.append(f"rlmem/popgym at N={REFERENCE_NUM_ENVS:,} on cpu: {ratio:,.1f}x "
                         f"(target >= {TARGET_RATIO:.0f}x on 2 CPU cores)")
    machine = (f"torch {m['torch_version']}, torch threads: {m['num_threads']}, "
               f"CPUs: {m['cpu_count']} ({m['cpu_model']}), date: {m['date']}")
    if "load_avg_1m" in m:
        machine += f", load average: {m['load_avg_1m']:.2f}"
    if "cuda_devices" in m:
        machine += ", GPU: " + ", ".join(f"{d}={name}" for d, name in m["cuda_devices"].items())
    lines.append(machine)
    if "train" in what:
        ratio = results["summary"]["ppo_over_sb3_train_cpu"]
        prefix = "rlmem PPO / sb3-contrib RecurrentPPO end-to-end on cpu"
        if ratio is None:
            lines.append(f"{prefix}: not measured (needs cpu in --device, sb3-contrib on cpu "
                         "(--sb3-device), and an N in --train-num-envs up to --sb3-max-num-envs)")
        else:
            n = results["summary"]["ppo_over_sb3_train_num_envs"]
            n_steps = results["config"]["train"]["hyperparameters"]["n_steps"]
            lines.append(f"{prefix}: {ratio:,.1f}x (target >= {TARGET_TRAIN_RATIO:.0f}x on 2 CPU "
                         f"cores; N={n:,}, n_steps={n_steps})")
        defaults = results["summary"].get("ppo_over_sb3_defaults_train_cpu")
        if defaults is not None:
            lines.append(f"rlmem PPO (its defaults) / sb3-contrib RecurrentPPO (its defaults) end-to-end on cpu: "
                         f"{defaults:,.1f}x")
    if "unroll" in what:
        lines.append(unroll_summary_line(results))
    if "learn" in what:
        lines.extend(learn_summary_lines(results))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    """Run the benchmark with command-line ``argv``; print the table and return the results.

    ``prog`` names the program in usage and error lines (``rlmem throughput`` from the CLI)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    what = [w for w in args.what if not (w == "train" and args.no_train)]
    if not what:
        parser.error("nothing to measure: --what train with --no-train")
    if args.sb3_max_num_envs < 1:
        parser.error("--sb3-max-num-envs must be >= 1")
    devices = resolve_devices(args.device)
    sizes = section_sizes(args, devices)
    run_rollout = "rollout" in what
    run_train = "train" in what
    ppo_sizes = ((_union(sizes["train"]) if run_train else [])
                 + (_union(sizes["rollout"]) if run_rollout else []))
    try:
        overrides = parse_settings(args.settings, allow_n_envs=not (run_train or run_rollout))
        configs = {n: ppo_config(n, overrides) for n in ppo_sizes}
        learn_cfg = learn_config(overrides) if "learn" in what else None
    except (ValueError, TypeError) as exc:
        parser.error(f"--set / --sizes / --train-num-envs / --rollout-num-envs: {exc}")
    learn_seeds = args.learn_seeds if args.learn_seeds is not None else [args.seed]

    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        print(text, flush=True)

    run_env = "env" in what
    run_popgym = run_env and not args.no_popgym
    if run_popgym and not popgym_available():
        note("popgym is not installed; skipping the popgym comparison (pip install popgym)")
        run_popgym = False
    run_sb3 = run_train and not args.no_sb3
    train_sizes = _union(sizes["train"]) if run_train else []
    rollout_sizes = _union(sizes["rollout"]) if run_rollout else []
    first_config = configs[(train_sizes or rollout_sizes)[0]] if (run_train or run_rollout) else None
    if run_sb3 and not sb3_available():
        note("sb3-contrib is not installed; skipping the sb3-contrib training baseline "
             "(pip install sb3-contrib)")
        run_sb3 = False
    if run_sb3 and sb3_unsupported(first_config) is not None:
        note(f"skipping the sb3-contrib training baseline: it cannot match "
             f"{sb3_unsupported(first_config)}")
        run_sb3 = False
    sb3_sizes = [n for n in train_sizes if n <= args.sb3_max_num_envs] if run_sb3 else []
    if run_sb3 and len(sb3_sizes) < len(train_sizes):
        note(f"sb3-contrib is measured only at N <= {args.sb3_max_num_envs} (--sb3-max-num-envs)")
    if run_sb3 and not sb3_sizes:  # e.g. the cuda sizes: still one sb3 figure to compare with
        sb3_sizes = [args.sb3_max_num_envs]
        try:
            ppo_config(args.sb3_max_num_envs, overrides)
        except (ValueError, TypeError) as exc:
            parser.error(f"--sb3-max-num-envs: {exc}")
        note(f"no N of the train section is <= {args.sb3_max_num_envs} (--sb3-max-num-envs): sb3-contrib "
             f"is measured at N={args.sb3_max_num_envs} for the comparison")
    # Where sb3-contrib's policy runs for the rlmem rows of each device (its env is always a CPU batch).
    sb3_devices = {d: d if args.sb3_device == SB3_DEVICE_SAME else resolve_sb3_device(args.sb3_device)
                   for d in devices} if run_sb3 else {}

    config: dict[str, Any] = {
        "what": what,
        "devices": devices,
        "seed": args.seed,
        "env": "RepeatPreviousEasy",
    }
    if run_env:
        config.update({
            "num_envs": _union(sizes["env"]),
            "num_envs_by_device": sizes["env"],
            "popgym_num_envs": args.popgym_num_envs if run_popgym else [],
            "seconds": args.seconds,
            "warmup": args.warmup,
        })
    if run_rollout:
        hyper = _hyperparameters(first_config)
        hyper.pop("n_envs")
        config["rollout"] = {
            "env_id": TRAIN_ENV_ID,
            "num_envs": rollout_sizes,
            "num_envs_by_device": sizes["rollout"],
            "seconds": args.seconds,
            "warmup_calls": 1,
            "overrides": overrides,
            "hyperparameters": hyper,
        }
    if run_train:
        hyper = _hyperparameters(first_config)
        hyper.pop("n_envs")
        config["train"] = {
            "env_id": TRAIN_ENV_ID,
            "num_envs": train_sizes,
            "num_envs_by_device": sizes["train"],
            "sb3_num_envs": sb3_sizes,
            "sb3_device": args.sb3_device,
            "sb3_devices": sorted(set(sb3_devices.values()), key=list(sb3_devices.values()).index),
            "seconds": args.train_seconds,
            "overrides": overrides,
            "hyperparameters": hyper,
        }
        if run_sb3:
            sb3 = describe_sb3_kwargs(sb3_kwargs(first_config, args.seed))
            sb3.pop("batch_size")  # depends on N: in each sb3 row
            config["train"]["sb3_kwargs"] = {"policy": "MlpLstmPolicy", **sb3}
    run_unroll = "unroll" in what
    if run_unroll:
        config["unroll"] = {
            "memories": list(UNROLL_MEMORIES),
            "hidden_sizes": args.unroll_hidden_sizes,
            "patterns": list(UNROLL_PATTERNS),
            "modes": list(UNROLL_MODES),
            "num_envs": args.unroll_num_envs,
            "seq_len": args.unroll_seq_len,
            "input_size": UNROLL_INPUT_SIZE,
            "num_layers": 1,
            "synchronized_episode_length": SYNC_EPISODE_LENGTH,
            "scattered_start_prob": SCATTERED_START_PROB,
            "seconds": args.seconds,
            "warmup": args.warmup,
        }
    run_learn = "learn" in what
    if run_learn:
        config["learn"] = {
            "env_id": args.learn_env,
            "threshold": args.learn_threshold,
            "budget": args.learn_budget,
            "seeds": learn_seeds,
            "eval_episodes": LEARN_EVAL_EPISODES,
            "overrides": overrides,
            "hyperparameters": _hyperparameters(learn_cfg),
        }
    results: dict[str, Any] = {
        "config": config,
        "machine": machine_info(devices),
        "rows": [],
        "notes": notes,
    }

    if run_env:
        for device in devices:
            for n in sizes["env"][device]:
                row = measure_rlmem_env(n, device, args.seconds, args.warmup, args.seed)
                results["rows"].append(row)
                print(f"  rlmem  {device:<6} N={n:<7,} {_fmt_rate(row['steps_per_s'])} env-steps/s",
                      flush=True)
        if run_popgym:
            for n in args.popgym_num_envs:
                row = measure_popgym_env(n, args.seconds, args.warmup, args.seed)
                results["rows"].append(row)
                print(f"  popgym cpu    N={n:<7,} {_fmt_rate(row['steps_per_s'])} env-steps/s",
                      flush=True)
    if run_rollout:
        for device in devices:
            for n in sizes["rollout"][device]:
                row = measure_rollout(n, device, args.seconds, overrides, args.seed)
                results["rows"].append(row)
                print(f"  rlmem  {device:<6} N={n:<7,} {_fmt_rate(row['steps_per_s'])} env-steps/s "
                      f"(rollout){_fmt_memory_note(row)}", flush=True)
    if run_train:
        for n in sorted({*train_sizes, *sb3_sizes}):
            on = [d for d in devices if n in sizes["train"][d]]
            for device in on:
                row = measure_rlmem_train(n, device, args.train_seconds, overrides, args.seed)
                results["rows"].append(row)
                print(f"  rlmem  {device:<6} N={n:<7,} {_fmt_rate(row['steps_per_s'])} env-steps/s "
                      f"(training){_fmt_memory_note(row)}", flush=True)
            if n in sb3_sizes:
                for sb3_device in dict.fromkeys(sb3_devices[d] for d in (on or devices)):
                    for settings in args.sb3_settings:
                        row = measure_sb3_train(n, args.train_seconds, overrides, args.seed, settings, sb3_device)
                        results["rows"].append(row)
                        print(f"  {row['impl']:<6} {sb3_device:<6} N={n:<7,} {_fmt_rate(row['steps_per_s'])} "
                              f"env-steps/s (training){_fmt_memory_note(row)}", flush=True)

    if run_unroll:
        for device in devices:
            for memory in UNROLL_MEMORIES:
                for hidden in args.unroll_hidden_sizes:
                    for pattern in UNROLL_PATTERNS:
                        for n in args.unroll_num_envs:
                            rows = measure_unroll(memory, hidden, pattern, n, device, args.seconds,
                                                  args.unroll_seq_len, args.warmup, args.seed)
                            results["rows"].extend(rows)
                            rates = ", ".join(f"{r['mode']} {_fmt_rate(r['samples_per_s'])}"
                                              for r in rows)
                            print(f"  unroll {device:<6} {memory:<4} H={hidden:<4} {pattern:<12} "
                                  f"N={n:<5,} samples/s: {rates}", flush=True)
    learn_medians: list[dict[str, Any]] = []
    if run_learn:
        for device in devices:
            seed_rows = []
            warmup_s = warm_up_learn(args.learn_env, device, overrides)
            print(f"  learn  {device:<6} warm-up: one untimed iteration, {warmup_s:.1f} s", flush=True)
            for seed in learn_seeds:
                row = measure_learn(args.learn_env, device, seed, args.learn_threshold,
                                    args.learn_budget, overrides)
                seed_rows.append(row)
                results["rows"].append(row)
                print(format_learn_row(row), flush=True)
            median = learn_median_row(seed_rows)
            results["rows"].append(median)
            learn_medians.append(median)

    ratio, ratio_n = train_headline(results)
    results["summary"] = {
        "rlmem_over_popgym_cpu_n4096": headline_ratio(results),
        "ppo_over_sb3_train_cpu": ratio,
        "ppo_over_sb3_train_num_envs": ratio_n,
        "ppo_over_sb3_defaults_train_cpu": train_headline(results, "sb3-defaults")[0],
    }
    if run_env or run_rollout or run_train:
        results["summary"]["table"] = summary_lines(results)
    if run_unroll:
        results["summary"]["unroll_faster"] = unroll_comparisons(results["rows"])
    if run_learn:
        # The first --device's median (cpu by default); every device's in learn_seconds_median_by_device.
        results["summary"]["learn_seconds_median"] = learn_medians[0]["seconds_to_threshold"]
        results["summary"]["learn_seconds_median_by_device"] = {
            r["device"]: r["seconds_to_threshold"] for r in learn_medians}
    if run_env:
        print()
        print(format_table(results))
    if run_train:
        print()
        print(format_train_table(results))
    if run_unroll:
        print()
        print(format_unroll_table(results))
    if run_env or run_rollout or run_train:
        print()
        print(format_summary_table(results))
    print()
    print(format_summary(results))

    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
