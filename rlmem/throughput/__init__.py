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

# The package's names, importable as rlmem.throughput.<name> as from the single module it was.
from rlmem.agents.ppo import PPOConfig, RecurrentPPO
from rlmem.agents.sb3_baseline import describe_kwargs as describe_sb3_kwargs
from rlmem.agents.sb3_baseline import encoder_extractor_class as _encoder_extractor_class
from rlmem.agents.sb3_baseline import matched_kwargs as sb3_kwargs
from rlmem.agents.sb3_baseline import unsupported as sb3_unsupported
from rlmem.memory import UNROLL_MODES
from rlmem.throughput.agent_steps import graph_use as _graph_use
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
