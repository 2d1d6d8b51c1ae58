"""Throughput benchmark: env-steps/s of rlmem's batched envs, of rollouts and training on them,
peak device memory per env, the memory unroll, and the wall-clock time to learn a task.

Run it as ``rlmem throughput [OPTIONS]`` (the same program as ``python -m rlmem.throughput`` and
``python scripts/throughput.py``); ``rlmem throughput --help`` lists the options. What each
section measures, how to read the tables and what the results dict holds: docs/benchmarks.md,
"How ``rlmem throughput`` measures".

One concept per module: :mod:`~rlmem.throughput.settings` (sections, default sizes, targets),
:mod:`~rlmem.throughput.measure` (env, rollout and train), :mod:`~rlmem.throughput.unroll`,
:mod:`~rlmem.throughput.learn`, :mod:`~rlmem.throughput.timing` (clock, peak memory, rows),
:mod:`~rlmem.throughput.machine`, :mod:`~rlmem.throughput.options` (the parser),
:mod:`~rlmem.throughput.report` (tables, summary, headline ratios) and
:mod:`~rlmem.throughput.command` (:func:`main`). sb3-contrib's matched settings are
:func:`rlmem.agents.sb3_baseline.matched_kwargs` (here ``sb3_kwargs``).
"""

from __future__ import annotations

# The package's names, importable as rlmem.throughput.<name> as from the single module it was.
from rlmem.agents.ppo import PPOConfig, RecurrentPPO
from rlmem.agents.sb3_baseline import describe_kwargs as describe_sb3_kwargs
from rlmem.agents.sb3_baseline import encoder_extractor_class as _encoder_extractor_class
from rlmem.agents.sb3_baseline import matched_kwargs as sb3_kwargs
from rlmem.agents.sb3_baseline import unsupported as sb3_unsupported
from rlmem.memory import UNROLL_MODES
from rlmem.throughput.command import Plan, main, make_plan
from rlmem.throughput.learn import learn_median_row, measure_learn, warm_up_learn
from rlmem.throughput.learn import median as _median
from rlmem.throughput.machine import cpu_model, machine_info, popgym_available, sb3_available
from rlmem.throughput.measure import (
    measure_popgym_env, measure_rlmem_env, measure_rlmem_train, measure_rollout, measure_sb3_train,
)
from rlmem.throughput.options import (
    _float, _int_list, _positive_float, _positive_int, _sb3_device, _sb3_settings, _sections, _seed_list,
    _setting, build_parser, parse_settings, resolve_devices, resolve_sb3_device, section_sizes,
)
from rlmem.throughput.options import union as _union
from rlmem.throughput.report import (
    _env_name, _sb3_for, _table, format_learn_row, format_summary, format_summary_table, format_table,
    format_train_table, format_unroll_table, headline_ratio, learn_summary_lines, summary_lines, train_headline,
    unroll_summary_line,
)
from rlmem.throughput.report import fmt_memory_note as _fmt_memory_note
from rlmem.throughput.report import fmt_mib_per_env as _fmt_mib_per_env
from rlmem.throughput.report import fmt_rate as _fmt_rate
from rlmem.throughput.report import fmt_ratio as _fmt_ratio
from rlmem.throughput.settings import (
    ALL_SECTIONS, CUDA_MISSING, DEFAULT_CUDA_NUM_ENVS, DEFAULT_LEARN_BUDGET, DEFAULT_LEARN_THRESHOLD,
    DEFAULT_NUM_ENVS, DEFAULT_POPGYM_NUM_ENVS, DEFAULT_SB3_MAX_NUM_ENVS, DEFAULT_SECTIONS, DEFAULT_TRAIN_NUM_ENVS,
    DEFAULT_UNROLL_HIDDEN_SIZES, DEFAULT_UNROLL_NUM_ENVS, DEFAULT_UNROLL_SEQ_LEN, LEARN_EVAL_EPISODES,
    MAX_ACTION_ENTRIES, MAX_ACTION_STEPS, MIB, NOT_SETTABLE, REFERENCE_NUM_ENVS, SB3_DEVICE_SAME,
    SCATTERED_START_PROB, SECTIONS, SYNC_EPISODE_LENGTH, TARGET_LEARN_SECONDS, TARGET_RATIO, TARGET_TRAIN_RATIO,
    TRAIN_ENV_ID, UNROLL_INPUT_SIZE, UNROLL_MEMORIES, UNROLL_PATTERNS, learn_config, ppo_config,
)
from rlmem.throughput.settings import hyperparameters as _hyperparameters
from rlmem.throughput.timing import action_steps as _action_steps
from rlmem.throughput.timing import peak_memory as _peak_memory
from rlmem.throughput.timing import reset_peak_memory as _reset_peak_memory
from rlmem.throughput.timing import row as _row
from rlmem.throughput.timing import sync_for as _sync_for
from rlmem.throughput.timing import timed_learn as _timed_learn
from rlmem.throughput.timing import timed_steps as _timed_steps
from rlmem.throughput.timing import train_row as _train_row
from rlmem.throughput.unroll import episode_starts, measure_unroll, unroll_comparisons, unroll_pieces

__all__ = [
    "main", "build_parser", "parse_settings", "section_sizes", "resolve_devices", "resolve_sb3_device",
    "ppo_config", "learn_config", "sb3_kwargs", "sb3_unsupported", "describe_sb3_kwargs",
    "measure_rlmem_env", "measure_popgym_env", "measure_rollout", "measure_rlmem_train", "measure_sb3_train",
    "measure_unroll", "episode_starts", "unroll_pieces", "unroll_comparisons",
    "measure_learn", "warm_up_learn", "learn_median_row",
    "headline_ratio", "train_headline", "summary_lines", "format_table", "format_train_table",
    "format_summary_table", "format_unroll_table", "format_learn_row", "learn_summary_lines",
    "unroll_summary_line", "format_summary", "machine_info", "cpu_model", "popgym_available", "sb3_available",
]
