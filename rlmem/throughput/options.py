"""The benchmark's command line: its options, their checks, and the devices and N lists they mean.

The options are listed by ``rlmem throughput --help``; what each section measures is in
docs/benchmarks.md, "How ``rlmem throughput`` measures".
"""

from __future__ import annotations

import argparse
import ast
import math
from typing import Any, Sequence

import torch

from rlmem.agents.ppo import PPOConfig
from rlmem.throughput.settings import (
    ALL_SECTIONS, CUDA_MISSING, DEFAULT_CUDA_NUM_ENVS, DEFAULT_LEARN_BUDGET, DEFAULT_LEARN_THRESHOLD,
    DEFAULT_NUM_ENVS, DEFAULT_POPGYM_NUM_ENVS, DEFAULT_SB3_MAX_NUM_ENVS, DEFAULT_SECTIONS, DEFAULT_TRAIN_NUM_ENVS,
    DEFAULT_UNROLL_HIDDEN_SIZES, DEFAULT_UNROLL_NUM_ENVS, DEFAULT_UNROLL_SEQ_LEN, NOT_SETTABLE, SB3_DEVICE_SAME,
    SECTIONS, TRAIN_ENV_ID,
)


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
        outer, dot, inner = key.partition(".")
        if dot:  # memory_options.context_length=8: one entry of a mapping
            overrides.setdefault(outer, {})[inner] = value
        else:
            overrides[key] = value
    return overrides


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Env-steps/s of rlmem's batched RepeatPreviousEasy vs popgym's numpy one, "
        "rollout (env + policy) and end-to-end training env-steps/s of rlmem's RecurrentPPO vs "
        "sb3-contrib's, peak device memory per env, the memory unroll's speed (chunked vs per_step), "
        "and seconds to learn a task. How each is measured: docs/benchmarks.md, \"How rlmem throughput measures\".",
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


def union(lists: dict[str, list[int]]) -> list[int]:
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
