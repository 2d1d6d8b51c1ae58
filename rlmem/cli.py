"""The ``rlmem`` command: its arguments and what it prints (its own help, for users: ``USER_HELP``).

The run directory itself (create, train into, resume, load, evaluate) is :mod:`rlmem.runs`, the
bench :mod:`rlmem.bench`, the probes :mod:`rlmem.probes` (of a run directory:
:mod:`rlmem.run_probe`), speed :mod:`rlmem.throughput` (which parses its own arguments). Exit
codes: 2 for bad input, 1 for a fault during a run, 128 + the signal's number after SIGINT or
SIGTERM (a checkpoint written first).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym

from rlmem import distributed
from rlmem.memory import CORES, core_options
from rlmem.runs import DEFAULT_RUN_DIR

RESUME_FLAGS = ("--steps", "--threads", "--dist-timeout", "--debug")
"""The flags ``train --resume`` takes: every other setting is the run's own (its config.yaml)."""


def _space_str(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)}"
    return str(space)


def _first_line(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")


def cmd_envs(args: argparse.Namespace) -> int:
    """Print every registered rlmem id with its spaces, episode length and one line of description."""
    from rlmem.envs.registry import TASKS

    rows = []
    for env_id, task in TASKS.items():
        env = task(num_envs=1)
        doc = _first_line(task)
        if task.level is not None:
            # A level: the task's own description, then the level's settings.
            settings = doc.split(" with ", 1)[-1].rstrip(".")
            doc = f"{_first_line(task.task_class)} [{settings}]"
        rows.append((env_id, _space_str(env.single_observation_space), _space_str(env.single_action_space),
                     str(env.max_episode_steps), doc))
    header = ("id", "observation", "action", "max steps", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4])
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """Print the presets (``--preset NAME``, ``--agents NAME``) and bench suites (``--suite NAME``) that ship."""
    import yaml

    from rlmem.shipped import description, shipped_dir, shipped_files

    presets = []
    for name, path in shipped_files("agents").items():
        data = yaml.safe_load(path.read_text()) or {}
        memory = (data.get("hyperparameters") or {}).get("memory", "")
        presets.append((name, str(data.get("algo", "")), str(memory), description(path)))
    suites = []
    for name, path in shipped_files("envs").items():
        data = yaml.safe_load(path.read_text()) or {}
        entries = [e for e in data.get("envs") or [] if isinstance(e, dict)]  # a horizon entry: one run per gap
        suites.append((name, str(sum(len(e["gaps"]) if isinstance(e.get("gaps"), list) else 1 for e in entries)),
                       description(path)))
    print(f"presets ({shipped_dir('agents')}):")
    _print_table(("name", "algo", "memory", "description"), presets)
    print(f"\nsuites ({shipped_dir('envs')}):")
    _print_table(("name", "runs", "description"), suites)
    cores = [(name, ", ".join(f"{k}={v!r}" for k, v in core_options(name).items()) or "-",
              (core.__doc__ or "").strip().splitlines()[0].replace("``", "")) for name, core in CORES.items()]
    print("\nmemory cores (--memory CORE, --set memory_options.NAME=VALUE):")
    _print_table(("name", "options (defaults)", "description"), cores)
    return 0


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the last column is left ragged."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def _echo(line: str) -> None:
    print(line, flush=True)


def _finish_training(train: Callable[[], dict[str, Any] | None], run_dir: str) -> int:
    """Run ``train`` (a :mod:`rlmem.runs` call); print its evaluation, or how to go on after a signal."""
    from rlmem.agents.stops import TrainingInterrupted

    try:
        result = train()
    except TrainingInterrupted as stop:
        if distributed.is_main():
            newline = "\n" if sys.stderr.isatty() else ""  # after a progress bar
            print(f"{newline}rlmem: {stop}; continue with `rlmem train --resume {run_dir}`", file=sys.stderr)
        return 128 + stop.signum
    if result is None:
        return 0  # a data-parallel rank other than 0: rank 0 evaluates and reports
    trained = result["steps"] - result.get("resumed_from_step", 0)
    print(f"eval: mean_return {result['mean_return']:.3f} +- {result['std_return']:.3f} over "
          f"{result['n_episodes']} episodes (trained {result['steps']:,} steps, {trained:,} in "
          f"{result['wall_clock_s']:.1f} s); written to {Path(run_dir) / 'eval.json'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train an agent on an env and fill a run directory (config, checkpoints, TensorBoard, eval)."""
    from rlmem import runs
    from rlmem.agents.presets import parse_assignments, resolve_run

    if args.resume is not None:
        return _resume(args)
    # Everything is checked before the run directory is touched: a bad command writes nothing.
    hyperparameters = parse_assignments(args.set)
    for flag, key in (("--memory", "memory"), ("--n-envs", "n_envs")):
        value = getattr(args, key)
        if value is not None:
            if key in hyperparameters and hyperparameters[key] != value:
                raise ValueError(f"{flag} {value} and --set {key}={hyperparameters[key]} disagree")
            hyperparameters[key] = value
    env_kwargs = parse_assignments(args.env_set, "--env-set") if args.env_set else None
    spec = resolve_run(args.preset, args.algo, hyperparameters, env=args.env, steps=args.steps, seed=args.seed,
                       device=args.device, eval_episodes=args.eval_episodes, env_kwargs=env_kwargs,
                       checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints)
    _set_threads(args.threads)
    run_dir = args.run_dir if args.run_dir is not None else DEFAULT_RUN_DIR
    return _finish_training(lambda: runs.train_run(spec, run_dir, args.overwrite, args.dist_timeout, _echo),
                            run_dir)


def _resume(args: argparse.Namespace) -> int:
    """``train --resume RUN_DIR``: go on from the run's last good checkpoint, with its own settings."""
    from rlmem import runs

    given = {"--env": args.env, "--env-set": args.env_set, "--algo": args.algo, "--preset": args.preset,
             "--memory": args.memory, "--seed": args.seed, "--device": args.device, "--n-envs": args.n_envs,
             "--set": args.set, "--eval-episodes": args.eval_episodes, "--run-dir": args.run_dir,
             "--overwrite": args.overwrite or None, "--checkpoint-every": args.checkpoint_every,
             "--keep-checkpoints": args.keep_checkpoints}
    conflicting = [flag for flag, value in given.items() if value is not None]
    if conflicting:
        raise ValueError(f"--resume continues a run with its own settings (its config.yaml); "
                         f"{', '.join(conflicting)} cannot be given with it (allowed: {', '.join(RESUME_FLAGS)})")
    runs.read_config(args.resume)  # not a run: say so before anything else
    _set_threads(args.threads)
    return _finish_training(lambda: runs.resume_run(args.resume, args.steps, args.dist_timeout, _echo),
                            args.resume)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a run from one of its checkpoints; print the numbers (``--write``: into eval.json too)."""
    from rlmem import runs

    _set_threads(args.threads)
    result, config, which = runs.evaluate_run(args.run_dir, args.episodes, args.device, args.checkpoint,
                                              args.write)
    print(f"{args.run_dir}: {config['algo']} on {config['env']}, {result['steps']:,} steps")
    print(f"checkpoint: {which}")
    for key in ("mean_return", "std_return", "mean_length", "n_episodes"):
        value = result[key]
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    if args.write:
        print(f"written to {Path(args.run_dir) / 'eval.json'}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Probe a run's memory (and an untrained twin's); write probe.csv, probe.json, probe.png."""
    from rlmem.probes import HORIZON_RULE
    from rlmem.run_probe import probe_run

    _set_threads(args.threads)
    result = probe_run(args.run_dir, task=args.task, max_lag=args.max_lag, n_envs=args.n_envs, device=args.device,
                       checkpoint=args.checkpoint, out=args.out)
    bound = "at least " if result["horizon_trained_is_lower_bound"] else ""
    print(f"checkpoint: {result['checkpoint']}")
    print(f"memory horizon: {bound}{result['horizon_trained']} (untrained: {result['horizon_untrained']}); "
          f"{HORIZON_RULE}")
    out = Path(result["out"])
    print(f"written to {out / 'probe.csv'}, probe.json, probe.png; TensorBoard scalars in "
          f"{Path(args.run_dir) / 'probe'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run (or resume) a bench: every (env, agent, seed) of a suite; write the summary, tables and plots."""
    from rlmem.bench import run_bench

    _set_threads(args.threads)
    out = args.out or str(Path("results") / Path(args.suite).stem)
    failures = run_bench(args.suite, args.agents, args.seeds, out, workers=args.workers, shard=args.shard,
                         envs=args.envs, threads=args.threads or 1, device=args.device,
                         summary_only=args.summary_only)
    if failures:
        raise ValueError(f"{failures} run(s) failed (see the lines above and each run's bench.log); "
                         "rerun the same command to retry them")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with rlmem's one-line errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rlmem: error: {message} (see `{self.prog} --help`)\n")


def _hyperparameter_help() -> str:
    from rlmem.agents.presets import ALGOS, hyperparameter_names

    lines = [f"{algo}: {', '.join(hyperparameter_names(algo))}" for algo in ALGOS]
    return "hyperparameters for --set KEY=VALUE (values are YAML: 1e-3, [64, 64], null):\n  " + "\n  ".join(lines)


CHECKPOINT_HELP = ("which checkpoint: final (the finished run's, default), latest (the newest that reads whole: "
                   "a run that was killed or is still training) or a path (or a file name in RUN_DIR/checkpoints)")


#: What ``rlmem --help`` says (the module docstring is for the code's readers).
USER_HELP = """\
Reinforcement learning with memory: train recurrent agents on memory tasks, evaluate and probe
what they remember, bench memory cores against each other.

  rlmem envs                                 the tasks and their levels
  rlmem presets                              agent presets, bench suites, memory cores
  rlmem train --env rlmem/RepeatPreviousEasy-v0 --run-dir runs/rp
  rlmem train --resume runs/rp               continue from the last good checkpoint
  rlmem eval runs/rp                         evaluate a run (--checkpoint: another checkpoint)
  rlmem probe runs/rp                        what the memory holds, against lag
  rlmem bench --suite memory-probes --agents ppo-lstm,ppo-gru --seeds 3
  rlmem throughput                           speed (rlmem throughput --help)

Errors are one line on stderr: exit code 2 for bad input (or a run directory another process
is writing), 1 for a fault during a run (nan loss, out of memory, a file the machine refused to
write); --debug shows the traceback. SIGINT or SIGTERM during training writes a checkpoint, then
exits with 128 + the signal's number.
Under torchrun the processes train one RecurrentPPO agent data-parallel; rank 0 writes the run.
Each command has its own --help."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlmem", description=USER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    envs = sub.add_parser("envs", help="list every registered task and level", parents=[debug])
    envs.set_defaults(func=cmd_envs)

    presets = sub.add_parser("presets", help="list the agent presets, bench suites and memory cores that ship with rlmem",
                             parents=[debug])
    presets.set_defaults(func=cmd_presets)

    train = sub.add_parser(
        "train", parents=[debug], help="train an agent on a memory task, into a run directory",
        description="Train an agent and fill --run-dir with config.yaml, checkpoints/, TensorBoard events and "
                    "eval.json. Settings: the algo's defaults < --preset < the flags below.",
        epilog=_hyperparameter_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--env", help="env id (default: the preset's, else rlmem/RepeatPreviousEasy-v0)")
    train.add_argument("--env-set", dest="env_set", action="append", metavar="KEY=VALUE",
                       help="set an env keyword argument, e.g. --env rlmem/RepeatPrevious-v0 --env-set k=8 (repeatable)")
    train.add_argument("--algo", choices=["ppo", "dqn", "pqn", "sb3-ppo-lstm"],
                       help="ppo: rlmem's RecurrentPPO (default); dqn: rlmem's RecurrentDQN (R2D2-style); "
                            "pqn: rlmem's RecurrentPQN (Q(lambda) on the env batch, no replay); "
                            "sb3-ppo-lstm: sb3-contrib's RecurrentPPO baseline")
    train.add_argument("--preset", help="preset YAML (e.g. agents/ppo-gru.yaml, or just ppo-gru)")
    train.add_argument("--memory", choices=list(CORES), metavar="CORE",
                       help=f"memory core (the hyperparameter memory): {', '.join(CORES)}; its options: "
                            "--set memory_options.NAME=VALUE")
    train.add_argument("--steps", type=int, help="env-steps to train for (default: 100000)")
    train.add_argument("--seed", type=int, help="seed (default: 0)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    train.add_argument("--n-envs", dest="n_envs", type=int, help="envs stepped together (the hyperparameter n_envs)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="set any hyperparameter (repeatable)")
    train.add_argument("--eval-episodes", dest="eval_episodes", type=int,
                       help="episodes evaluated at the end (default: 100)")
    train.add_argument("--run-dir", dest="run_dir", help=f"output directory (default: {DEFAULT_RUN_DIR})")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue a stopped run from its last good checkpoint, with its own settings "
                            f"(only {', '.join(RESUME_FLAGS)} may be given with it; a larger --steps trains on)")
    train.add_argument("--checkpoint-every", dest="checkpoint_every", type=int,
                       help="env-steps between checkpoints (default: 100000; ppo, dqn and pqn)")
    train.add_argument("--keep-checkpoints", dest="keep_checkpoints", type=int,
                       help="periodic checkpoints kept, the newest (default: 3; final.pt besides)")
    train.add_argument("--threads", type=int, help="CPU threads torch may use (default: torch's choice)")
    train.add_argument("--dist-timeout", dest="dist_timeout", type=float,
                       help="under torchrun: seconds a collective waits for the other processes before the run "
                            "fails (default: 300)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", parents=[debug], help="evaluate a run from one of its checkpoints")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a directory `rlmem train` filled")
    evaluate.add_argument("--checkpoint", default="final", help=CHECKPOINT_HELP)
    evaluate.add_argument("--episodes", type=int, help="episodes (default: the run's eval_episodes)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    evaluate.add_argument("--write", action="store_true", help="also write the result into RUN_DIR/eval.json")
    evaluate.add_argument("--threads", type=int, help="CPU threads torch may use (default: torch's choice)")
    evaluate.set_defaults(func=cmd_eval)

    probe = sub.add_parser(
        "probe", parents=[debug], help="probe what a run's memory holds, against lag",
        description="Fit a linear read-out of the observation k steps back from the memory state, for k = "
                    "0..--max-lag, for the trained agent and an untrained one of the same shape; write "
                    "probe.csv, probe.json, probe.png and TensorBoard scalars (RUN_DIR/probe). The memory horizon "
                    "is the largest lag h with held-out accuracy >= 0.9 at every lag 0..h.")
    probe.add_argument("run_dir", metavar="RUN_DIR", help="a directory `rlmem train` (or `rlmem bench`) filled")
    probe.add_argument("--checkpoint", default="final", help=CHECKPOINT_HELP)
    probe.add_argument("--task", help="env id to probe on (default: the run's env; same spaces needed)")
    probe.add_argument("--max-lag", dest="max_lag", type=int,
                       help="largest lag probed (default: 32, or the episode length - 1 if shorter; a lag no "
                            "episode reaches has no pairs to fit, and its row in probe.csv is blank)")
    probe.add_argument("--n-envs", dest="n_envs", type=int, default=128,
                       help="envs in the probe's rollout (default: %(default)s; 70%% train the read-out)")
    probe.add_argument("--out", help="directory for probe.csv, probe.json, probe.png (default: RUN_DIR)")
    probe.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    probe.add_argument("--threads", type=int, help="CPU threads torch may use (default: torch's choice)")
    probe.set_defaults(func=cmd_probe)

    bench = sub.add_parser(
        "bench", parents=[debug], help="train every (env, agent, seed) of a suite; tables and plots",
        description="Train, evaluate and recall-test every (env, agent, seed) of a suite into OUT/runs/, then write "
                    "OUT/summary.csv, OUT/summary.md and OUT/plots/. Finished runs (those with result.json) are "
                    "skipped, so an interrupted bench resumes where it stopped; --shard slices merge in OUT.")
    bench.add_argument("--suite", required=True,
                       help="a shipped suite's name (memory-probes, horizon, smoke, horizon-smoke: `rlmem presets` "
                            "lists them) or a YAML file")
    bench.add_argument("--agents", required=True,
                       help="presets, comma-separated (e.g. agents/ppo-lstm.yaml,agents/ppo-gru.yaml or ppo-lstm,dqn-lstm)")
    bench.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per (env, agent) (default: %(default)s)")
    bench.add_argument("--out", help="output directory (default: results/<suite file name>)")
    bench.add_argument("--workers", type=int, default=1, help="runs at once, in separate processes (default: 1)")
    bench.add_argument("--shard", metavar="I/N", help="run only the I-th of N slices (1-based), e.g. 2/4")
    bench.add_argument("--envs", help="only these env ids of the suite (an id takes all its gaps; a run directory's "
                                      "name, e.g. PassiveTMaze-v0-corridor_length100, one gap), comma-separated")
    bench.add_argument("--device", default="cpu", help="device of every run (default: %(default)s)")
    bench.add_argument("--threads", type=int, help="torch threads per run (default: 1)")
    bench.add_argument("--summary-only", dest="summary_only", action="store_true",
                       help="run nothing: summarise the finished runs in OUT (merge shards, or after an interrupt)")
    bench.set_defaults(func=cmd_bench)

    # Listed here for `rlmem --help`; main() hands everything after the word to rlmem.throughput's own parser
    # (argparse's REMAINDER does not take arguments that start with "-", such as --help).
    throughput = sub.add_parser(
        "throughput", add_help=False, prefix_chars="\0",
        help="speed: env-steps/s of the envs and of training, against popgym and sb3-contrib "
             "(rlmem throughput --help)")
    throughput.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    throughput.set_defaults(func=cmd_throughput)
    return parser


THROUGHPUT = "throughput"


def cmd_throughput(args: argparse.Namespace) -> int:
    """Run the throughput benchmark (:func:`rlmem.throughput.main`) with the arguments after ``throughput``."""
    from rlmem.throughput import main as throughput_main

    throughput_main(args.argv, prog="rlmem throughput")
    return 0


def _throughput_argv(argv: Sequence[str]) -> list[str] | None:
    """The arguments after ``throughput`` when ``argv`` runs that subcommand (``--debug`` may come first)."""
    argv = list(argv)
    start = 1 if argv[:1] == ["--debug"] else 0
    return argv[start + 1:] if argv[start:start + 1] == [THROUGHPUT] else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    forwarded = _throughput_argv(argv)
    if forwarded is not None:  # its own parser, its own --help and errors
        return cmd_throughput(argparse.Namespace(argv=forwarded))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except distributed.DistributedError as error:  # another process died or stalled: one line, not a hang
        if args.debug:
            raise
        print(f"rlmem: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `rlmem envs | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("rlmem: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as error:
        if args.debug:
            raise
        print(f"rlmem: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from rlmem.agents.stops import StorageError, TrainingDiverged, TrainingOutOfMemory

        if args.debug or not isinstance(error, (TrainingDiverged, TrainingOutOfMemory, StorageError)):
            raise
        print(f"rlmem: error: {error}", file=sys.stderr)
        return 1
    finally:
        distributed.close()


if __name__ == "__main__":
    sys.exit(main())
