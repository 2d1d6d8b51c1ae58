"""What the throughput benchmark runs: its sections, default sizes, targets and agent configs.

How each section measures: docs/benchmarks.md, "How ``rlmem throughput`` measures".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlmem.agents.config import build_config
from rlmem.agents.ppo import PPOConfig

SECTIONS = ("env", "rollout", "train", "unroll", "learn")
DEFAULT_SECTIONS = ("env", "train")  # rollout, unroll and learn are opt-in
ALL_SECTIONS = ("env", "rollout", "train")  # --what all
CUDA_MISSING = "error: --device cuda requested but no CUDA GPU is available"
MIB = 1 << 20

# env: rlmem's batched env vs popgym's numpy one.
DEFAULT_NUM_ENVS = [4**i for i in range(9)]  # 1 .. 65,536
DEFAULT_POPGYM_NUM_ENVS = [1, 16, 256, 4096]
REFERENCE_NUM_ENVS = 4096  # the N of the headline rlmem/popgym ratio
TARGET_RATIO = 100.0
# Cap on the pre-generated action tensor ([steps, N] int64): 4M entries = 32 MiB.
MAX_ACTION_ENTRIES = 1 << 22
MAX_ACTION_STEPS = 1024

# rollout and train: rlmem's RecurrentPPO (and sb3-contrib's) on RepeatPreviousEasy.
TRAIN_ENV_ID = "rlmem/RepeatPreviousEasy-v0"
DEFAULT_TRAIN_NUM_ENVS = [PPOConfig().n_envs]  # the agent's default batch
DEFAULT_SB3_MAX_NUM_ENVS = 256
TARGET_TRAIN_RATIO = 30.0
# With a CUDA device and no N list given, env, rollout and train run at these N (issue 6's report).
DEFAULT_CUDA_NUM_ENVS = [1024, 4096, 16384, 65536]
SB3_DEVICE_SAME = "same"  # --sb3-device same: sb3-contrib's policy on each rlmem device

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


def ppo_config(num_envs: int, overrides: dict[str, Any]) -> PPOConfig:
    """rlmem's ``PPOConfig`` defaults with ``overrides`` (from ``--set``) and ``n_envs=num_envs``."""
    return build_config(PPOConfig, {**overrides, "n_envs": num_envs})


def learn_config(overrides: dict[str, Any]) -> PPOConfig:
    """rlmem's ``PPOConfig`` defaults with ``overrides`` (from ``--set``; ``n_envs`` allowed)."""
    return build_config(PPOConfig, overrides)


def hyperparameters(config: PPOConfig) -> dict[str, Any]:
    """The config as RecurrentPPO keyword arguments (all fields but ``extra``)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
