"""``rlmem throughput``'s program: :func:`main` plans a run from its options, measures each
section, prints the tables and returns (and with ``--json`` writes) the results dict.

What the sections measure, how to read the tables and what the results dict holds:
docs/benchmarks.md, "How ``rlmem throughput`` measures".
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from rlmem.agents.ppo import PPOConfig
from rlmem.agents.sb3_baseline import describe_kwargs, matched_kwargs, unsupported
from rlmem.memory import UNROLL_MODES
from rlmem.throughput.learn import learn_median_row, measure_learn, warm_up_learn
from rlmem.throughput.machine import machine_info, popgym_available, sb3_available
from rlmem.throughput.measure import (
    measure_popgym_env, measure_rlmem_env, measure_rlmem_train, measure_rollout, measure_sb3_train,
)
from rlmem.throughput.options import (
    build_parser, parse_settings, resolve_devices, resolve_sb3_device, section_sizes, union,
)
from rlmem.throughput.report import (
    fmt_memory_note, fmt_rate, format_learn_row, format_summary, format_summary_table, format_table,
    format_train_table, format_unroll_table, headline_ratio, summary_lines, train_headline,
)
from rlmem.throughput.settings import (
    LEARN_EVAL_EPISODES, SB3_DEVICE_SAME, SCATTERED_START_PROB, SYNC_EPISODE_LENGTH, TRAIN_ENV_ID,
    UNROLL_INPUT_SIZE, UNROLL_MEMORIES, UNROLL_PATTERNS, hyperparameters, learn_config, ppo_config,
)
from rlmem.throughput.unroll import measure_unroll, unroll_comparisons


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    """Run the benchmark with command-line ``argv``; print the tables and return the results.

    ``prog`` names the program in usage and error lines (``rlmem throughput`` from the CLI)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    plan = make_plan(parser, args)
    results: dict[str, Any] = {
        "config": run_config(plan, args),
        "machine": machine_info(plan.devices),
        "rows": [],
        "notes": plan.notes,
    }
    rows = results["rows"]
    if plan.runs("env"):
        rows += measure_env_section(plan, args)
    if plan.runs("rollout"):
        rows += measure_rollout_section(plan, args)
    if plan.runs("train"):
        rows += measure_train_section(plan, args)
    if plan.runs("unroll"):
        rows += measure_unroll_section(plan, args)
    learn_medians: list[dict[str, Any]] = []
    if plan.runs("learn"):
        learn_rows = measure_learn_section(plan, args)
        rows += learn_rows
        learn_medians = [r for r in learn_rows if r["aggregate"] == "median"]
    results["summary"] = summarize(results, plan, learn_medians)
    print_report(results, plan)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return results


# ---------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """What one run measures, decided from its options before anything is measured."""

    what: list[str]
    devices: list[str]
    sizes: dict[str, dict[str, list[int]]]  # section_sizes: {section: {device: [N, ...]}}
    overrides: dict[str, Any]  # --set
    first_config: PPOConfig | None  # the rollout / train config at the first N
    learn_seeds: list[int]
    learn_cfg: PPOConfig | None
    notes: list[str] = field(default_factory=list)
    run_popgym: bool = False
    run_sb3: bool = False
    sb3_sizes: list[int] = field(default_factory=list)
    sb3_devices: dict[str, str] = field(default_factory=dict)  # rlmem device -> sb3-contrib policy's device

    def runs(self, section: str) -> bool:
        return section in self.what

    def sizes_of(self, section: str) -> list[int]:
        """Every N of ``section`` (env, rollout or train) on any device; [] if it does not run."""
        return union(self.sizes[section]) if self.runs(section) else []

    def note(self, text: str) -> None:
        """Print ``text`` now and keep it in the results' ``notes``."""
        self.notes.append(text)
        print(text, flush=True)


def make_plan(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Plan:
    """Check the options (usage errors exit through ``parser``), apply ``--threads`` / ``--tf32``,
    and decide the sections, devices, N lists, agent configs and baselines."""
    what = _apply_options(parser, args)
    devices = resolve_devices(args.device)
    sizes = section_sizes(args, devices)
    run_rollout, run_train = "rollout" in what, "train" in what
    ppo_sizes = (union(sizes["train"]) if run_train else []) + (union(sizes["rollout"]) if run_rollout else [])
    try:
        overrides = parse_settings(args.settings, allow_n_envs=not (run_train or run_rollout))
        configs = {n: ppo_config(n, overrides) for n in ppo_sizes}
        learn_cfg = learn_config(overrides) if "learn" in what else None
    except (ValueError, TypeError) as exc:
        parser.error(f"--set / --sizes / --train-num-envs / --rollout-num-envs: {exc}")
    plan = Plan(what=what, devices=devices, sizes=sizes, overrides=overrides,
                first_config=configs[ppo_sizes[0]] if ppo_sizes else None,
                learn_seeds=args.learn_seeds if args.learn_seeds is not None else [args.seed],
                learn_cfg=learn_cfg)
    plan.run_popgym = plan.runs("env") and not args.no_popgym
    if plan.run_popgym and not popgym_available():
        plan.note("popgym is not installed; skipping the popgym comparison (pip install popgym)")
        plan.run_popgym = False
    _plan_sb3(parser, args, plan)
    return plan


def _apply_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The checks argparse cannot make, ``--threads`` and ``--tf32`` applied; the sections to run."""
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
    return what


def _plan_sb3(parser: argparse.ArgumentParser, args: argparse.Namespace, plan: Plan) -> None:
    """Whether, at which N and on which devices sb3-contrib's training baseline runs (with a note
    where it is skipped or capped)."""
    train_sizes = plan.sizes_of("train")
    plan.run_sb3 = plan.runs("train") and not args.no_sb3
    if plan.run_sb3 and not sb3_available():
        plan.note("sb3-contrib is not installed; skipping the sb3-contrib training baseline "
                  "(pip install sb3-contrib)")
        plan.run_sb3 = False
    if plan.run_sb3 and unsupported(plan.first_config) is not None:
        plan.note(f"skipping the sb3-contrib training baseline: it cannot match {unsupported(plan.first_config)}")
        plan.run_sb3 = False
    if not plan.run_sb3:
        return
    plan.sb3_sizes = [n for n in train_sizes if n <= args.sb3_max_num_envs]
    if len(plan.sb3_sizes) < len(train_sizes):
        plan.note(f"sb3-contrib is measured only at N <= {args.sb3_max_num_envs} (--sb3-max-num-envs)")
    if not plan.sb3_sizes:  # e.g. the cuda sizes: still one sb3 figure to compare with
        plan.sb3_sizes = [args.sb3_max_num_envs]
        try:
            ppo_config(args.sb3_max_num_envs, plan.overrides)
        except (ValueError, TypeError) as exc:
            parser.error(f"--sb3-max-num-envs: {exc}")
        plan.note(f"no N of the train section is <= {args.sb3_max_num_envs} (--sb3-max-num-envs): sb3-contrib "
                  f"is measured at N={args.sb3_max_num_envs} for the comparison")
    # Where sb3-contrib's policy runs for the rlmem rows of each device (its env is always a CPU batch).
    plan.sb3_devices = {d: d if args.sb3_device == SB3_DEVICE_SAME else resolve_sb3_device(args.sb3_device)
                        for d in plan.devices}


def run_config(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """The results' ``config``: what ran, at which N, with which settings."""
    config: dict[str, Any] = {"what": plan.what, "devices": plan.devices, "seed": args.seed,
                              "env": "RepeatPreviousEasy"}
    if plan.runs("env"):
        config.update({
            "num_envs": union(plan.sizes["env"]),
            "num_envs_by_device": plan.sizes["env"],
            "popgym_num_envs": args.popgym_num_envs if plan.run_popgym else [],
            "seconds": args.seconds,
            "warmup": args.warmup,
        })
    hyper = {}
    if plan.first_config is not None:
        hyper = hyperparameters(plan.first_config)
        hyper.pop("n_envs")
    if plan.runs("rollout"):
        config["rollout"] = {
            "env_id": TRAIN_ENV_ID,
            "num_envs": plan.sizes_of("rollout"),
            "num_envs_by_device": plan.sizes["rollout"],
            "seconds": args.seconds,
            "warmup_calls": 1,
            "overrides": plan.overrides,
            "hyperparameters": dict(hyper),
        }
    if plan.runs("train"):
        config["train"] = _train_config(plan, args, dict(hyper))
    if plan.runs("unroll"):
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
    if plan.runs("learn"):
        config["learn"] = {
            "env_id": args.learn_env,
            "threshold": args.learn_threshold,
            "budget": args.learn_budget,
            "seeds": plan.learn_seeds,
            "eval_episodes": LEARN_EVAL_EPISODES,
            "overrides": plan.overrides,
            "hyperparameters": hyperparameters(plan.learn_cfg),
        }
    return config


def _train_config(plan: Plan, args: argparse.Namespace, hyper: dict[str, Any]) -> dict[str, Any]:
    sb3_devices = list(plan.sb3_devices.values())
    train = {
        "env_id": TRAIN_ENV_ID,
        "num_envs": plan.sizes_of("train"),
        "num_envs_by_device": plan.sizes["train"],
        "sb3_num_envs": plan.sb3_sizes,
        "sb3_device": args.sb3_device,
        "sb3_devices": sorted(set(sb3_devices), key=sb3_devices.index),
        "seconds": args.train_seconds,
        "overrides": plan.overrides,
        "hyperparameters": hyper,
    }
    if plan.run_sb3:
        sb3 = describe_kwargs(matched_kwargs(plan.first_config, args.seed))
        sb3.pop("batch_size")  # depends on N: in each sb3 row
        train["sb3_kwargs"] = {"policy": "MlpLstmPolicy", **sb3}
    return train


# ---------------------------------------------------------------------------- the sections
def measure_env_section(plan: Plan, args: argparse.Namespace) -> list[dict[str, Any]]:
    """rlmem's env on each device at its N, then popgym's at ``--popgym-num-envs``."""
    rows = []
    for device in plan.devices:
        for n in plan.sizes["env"][device]:
            row = measure_rlmem_env(n, device, args.seconds, args.warmup, args.seed)
            rows.append(row)
            print(f"  rlmem  {device:<6} N={n:<7,} {fmt_rate(row['steps_per_s'])} env-steps/s", flush=True)
    if plan.run_popgym:
        for n in args.popgym_num_envs:
            row = measure_popgym_env(n, args.seconds, args.warmup, args.seed)
            rows.append(row)
            print(f"  popgym cpu    N={n:<7,} {fmt_rate(row['steps_per_s'])} env-steps/s", flush=True)
    return rows


def measure_rollout_section(plan: Plan, args: argparse.Namespace) -> list[dict[str, Any]]:
    """rlmem's rollouts on each device at its N."""
    rows = []
    for device in plan.devices:
        for n in plan.sizes["rollout"][device]:
            row = measure_rollout(n, device, args.seconds, plan.overrides, args.seed)
            rows.append(row)
            print(f"  rlmem  {device:<6} N={n:<7,} {fmt_rate(row['steps_per_s'])} env-steps/s "
                  f"(rollout){fmt_memory_note(row)}", flush=True)
    return rows


def measure_train_section(plan: Plan, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per N: rlmem's training on each device that has it, then sb3-contrib's (each settings,
    on each of its devices) where sb3 is measured at that N."""
    rows = []
    for n in sorted({*plan.sizes_of("train"), *plan.sb3_sizes}):
        on = [d for d in plan.devices if n in plan.sizes["train"][d]]
        for device in on:
            row = measure_rlmem_train(n, device, args.train_seconds, plan.overrides, args.seed)
            rows.append(row)
            print(f"  rlmem  {device:<6} N={n:<7,} {fmt_rate(row['steps_per_s'])} env-steps/s "
                  f"(training){fmt_memory_note(row)}", flush=True)
        if n not in plan.sb3_sizes:
            continue
        for sb3_device in dict.fromkeys(plan.sb3_devices[d] for d in (on or plan.devices)):
            for settings in args.sb3_settings:
                row = measure_sb3_train(n, args.train_seconds, plan.overrides, args.seed, settings, sb3_device)
                rows.append(row)
                print(f"  {row['impl']:<6} {sb3_device:<6} N={n:<7,} {fmt_rate(row['steps_per_s'])} "
                      f"env-steps/s (training){fmt_memory_note(row)}", flush=True)
    return rows


def measure_unroll_section(plan: Plan, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both unroll modes for each device, memory core, width, pattern and N."""
    rows = []
    for device in plan.devices:
        for memory in UNROLL_MEMORIES:
            for hidden in args.unroll_hidden_sizes:
                for pattern in UNROLL_PATTERNS:
                    for n in args.unroll_num_envs:
                        modes = measure_unroll(memory, hidden, pattern, n, device, args.seconds,
                                               args.unroll_seq_len, args.warmup, args.seed)
                        rows.extend(modes)
                        rates = ", ".join(f"{r['mode']} {fmt_rate(r['samples_per_s'])}" for r in modes)
                        print(f"  unroll {device:<6} {memory:<4} H={hidden:<4} {pattern:<12} "
                              f"N={n:<5,} samples/s: {rates}", flush=True)
    return rows


def measure_learn_section(plan: Plan, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per device: an untimed warm-up, one row per seed, then their median row."""
    rows = []
    for device in plan.devices:
        seed_rows = []
        warmup_s = warm_up_learn(args.learn_env, device, plan.overrides)
        print(f"  learn  {device:<6} warm-up: one untimed iteration, {warmup_s:.1f} s", flush=True)
        for seed in plan.learn_seeds:
            row = measure_learn(args.learn_env, device, seed, args.learn_threshold, args.learn_budget,
                                plan.overrides)
            seed_rows.append(row)
            rows.append(row)
            print(format_learn_row(row), flush=True)
        rows.append(learn_median_row(seed_rows))
    return rows


# ---------------------------------------------------------------------------- the report
def summarize(results: dict[str, Any], plan: Plan, learn_medians: list[dict[str, Any]]) -> dict[str, Any]:
    """The results' ``summary``: the headline ratios, and the summary table, unroll comparisons
    and learn medians of the sections that ran."""
    ratio, ratio_n = train_headline(results)
    summary: dict[str, Any] = {
        "rlmem_over_popgym_cpu_n4096": headline_ratio(results),
        "ppo_over_sb3_train_cpu": ratio,
        "ppo_over_sb3_train_num_envs": ratio_n,
        "ppo_over_sb3_defaults_train_cpu": train_headline(results, "sb3-defaults")[0],
    }
    if plan.runs("env") or plan.runs("rollout") or plan.runs("train"):
        summary["table"] = summary_lines(results)
    if plan.runs("unroll"):
        summary["unroll_faster"] = unroll_comparisons(results["rows"])
    if plan.runs("learn"):
        # The first --device's median (cpu by default); every device's in learn_seconds_median_by_device.
        summary["learn_seconds_median"] = learn_medians[0]["seconds_to_threshold"]
        summary["learn_seconds_median_by_device"] = {r["device"]: r["seconds_to_threshold"] for r in learn_medians}
    return summary


def print_report(results: dict[str, Any], plan: Plan) -> None:
    """The tables of the sections that ran, then the summary table and lines."""
    tables = []
    if plan.runs("env"):
        tables.append(format_table(results))
    if plan.runs("train"):
        tables.append(format_train_table(results))
    if plan.runs("unroll"):
        tables.append(format_unroll_table(results))
    if plan.runs("env") or plan.runs("rollout") or plan.runs("train"):
        tables.append(format_summary_table(results))
    for text in [*tables, format_summary(results)]:
        print()
        print(text)
