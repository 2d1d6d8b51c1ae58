"""``rlmem bench``: every (env, agent, seed) of a suite trained, evaluated, recalled and summarised.

A suite is a YAML file under ``envs/`` (:mod:`rlmem.suites`, which reads and checks it); agents are
presets (``agents/*.yaml``), with the suite entry's hyperparameters for that env over theirs. Each
run is an ordinary ``rlmem train`` run directory, ``OUT/runs/<env>/<agent>/seed<k>/`` (``<env>``
names the gap for a horizon entry: ``PassiveTMaze-v0-corridor_length100``), to which the bench
adds ``bench.log`` (the training's output) and, last and atomically, ``result.json``: a run
counts as finished only once that file exists and matches the run asked for (its env arguments
and hyperparameters included), so an interrupted bench reruns exactly the unfinished runs. ``--shard i/n`` runs every n-th run starting at the i-th, into the same
``OUT``; every invocation writes the summary from all finished runs it finds there, so the
slices merge by themselves (rerun the full command, or the last slice, to see them all).

Before any run every setting is resolved and checked (a bad one is one line naming the suite
entry), and an agent whose unroll is shorter than the gap it is asked to learn gets a warning
line (:func:`rlmem.horizons.unroll_warning`). The summary (:mod:`rlmem.bench_summary`:
``summary.csv``, ``summary.md``, and for a horizon suite ``horizons.csv``) and the plots
(:mod:`rlmem.bench_plots`) are written from every finished run found.

Normalised return = (return - chance) / (1 - chance): 0 is a policy without memory (or a
random one), 1 a perfect one. ``chance`` is the suite entry's ``chance`` if given, else
:func:`chance_return` (from the task docstrings).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from rlmem.bench_plots import write_plots
from rlmem.bench_summary import CSV_KEYS, write_tables  # noqa: F401  (CSV_KEYS: summary.csv's columns)
from rlmem.checks import check_positive_int, did_you_mean
from rlmem.files import atomic_write_text, storage_error
from rlmem.horizons import unroll_warning
from rlmem.suites import Suite, SuiteEnv, chance_return, env_slug, load_suite  # noqa: F401  (the bench's suite file)

RESULT = "result.json"
"""The file that marks a bench run finished (written last, atomically)."""

# ---------------------------------------------------------------------- agents and runs
def load_agents(names: str) -> dict[str, str]:
    """``"agents/ppo-lstm.yaml,ppo-gru"`` -> {name: preset path}; a missing preset lists the shipped ones."""
    from rlmem.agents.presets import load_preset

    agents: dict[str, str] = {}
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        preset = load_preset(name)  # "preset 'x' not found; shipped presets: ..."
        short = Path(preset.path).stem
        if short in agents:
            raise ValueError(f"--agents: {short!r} is named twice")
        agents[short] = preset.path
    if not agents:
        raise ValueError("--agents is empty: give preset files or names, comma-separated")
    return agents


def plan_jobs(suite: Suite, agents: dict[str, str], seeds: int, out: Path, threads: int = 1,
              device: str = "cpu") -> list[dict[str, Any]]:
    """Every (env, agent, seed) of the bench, env by env, as plain dicts a worker process can take."""
    from rlmem.agents.presets import load_preset

    algos = {agent: load_preset(preset).algo for agent, preset in agents.items()}
    jobs = []
    for env in suite.envs:
        for agent, preset in agents.items():
            for seed in range(seeds):
                jobs.append({"env": env.id, "name": env.name, "gap": env.gap, "gap_parameter": env.gap_parameter,
                             "env_kwargs": env.env_kwargs, "agent": agent, "preset": preset,
                             "hyperparameters": env.hyperparameters_for(algos[agent], agent), "seed": seed,
                             "steps": env.steps, "threshold": env.threshold, "chance": env.chance,
                             "recall": env.recall, "recall_episodes": suite.recall_episodes,
                             "eval_episodes": env.eval_episodes, "threads": threads, "device": device,
                             "where": f"{suite.path}: {env.where} ({env.name})",
                             "run_dir": str(out / "runs" / env.slug / agent / f"seed{seed}")})
    return jobs


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4): the 2nd of 4 slices (1-based)."""
    if text is None:
        return 1, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n (e.g. 1/4), got {text!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"--shard i/n needs 1 <= i <= n, got {text!r}")
    return index, count


_JOB_KEYS = ("env", "agent", "seed", "steps", "eval_episodes", "recall", "env_kwargs", "hyperparameters")
_JOB_DEFAULTS: dict[str, Any] = {"env_kwargs": {}, "hyperparameters": {}}
"""What a result written before a key existed ran with (so older benches still resume)."""


def read_result(job: dict[str, Any]) -> dict[str, Any] | None:
    """The finished result of ``job``, or None (not run, interrupted, or run with other settings)."""
    path = Path(job["run_dir"]) / RESULT
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ran = result.get("job", {}) if isinstance(result, dict) else {}
    if any(ran.get(key, _JOB_DEFAULTS.get(key)) != json.loads(json.dumps(job[key])) for key in _JOB_KEYS):
        return None
    return result


def learning_curve(run_dir: Path, max_points: int = 200) -> list[list[float]]:
    """[[step, training episodic return], ...] from the run's TensorBoard events (at most ``max_points``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    if "charts/episodic_return" not in events.Tags().get("scalars", []):
        return []
    points = [[int(e.step), float(e.value)] for e in events.Scalars("charts/episodic_return")]
    stride = max(1, math.ceil(len(points) / max_points))
    return points[::stride] if points[-1] in points[::stride] else [*points[::stride], points[-1]]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train (an ordinary run directory, :mod:`rlmem.runs`), evaluate, sweep the recall lags; write result.json last.

    Runs in a worker process (or the bench's own, with one worker). The training's output goes
    to ``bench.log`` in the run directory; a failed training raises its error.
    """
    import torch

    from rlmem.locks import claim

    torch.set_num_threads(job["threads"])
    run_dir = Path(job["run_dir"])
    spec = job_spec(job)
    with claim(run_dir):  # before result.json or bench.log is touched: a run another process writes is left alone
        return _run_claimed(job, spec, run_dir)


def job_spec(job: dict[str, Any]) -> Any:
    """The run settings of a bench job: its preset, with the suite's env (and its keyword arguments),
    hyperparameters for that env, steps, seed, device and episodes (all recorded in config.yaml)."""
    from rlmem.agents.presets import resolve_run

    return resolve_run(job["preset"], hyperparameters=job["hyperparameters"] or None,
                       source=f"{job['where']}.hyperparameters for {job['agent']}", env=job["env"],
                       env_kwargs=job["env_kwargs"] or None, steps=job["steps"], seed=job["seed"],
                       device=job["device"], eval_episodes=job["eval_episodes"])


def _run_claimed(job: dict[str, Any], spec: Any, run_dir: Path) -> dict[str, Any]:
    """:func:`run_job`'s work, with the run directory held."""
    from rlmem import runs

    (run_dir / RESULT).unlink(missing_ok=True)
    start = time.perf_counter()
    with (run_dir / "bench.log").open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        evaluation = runs.train_run(spec, run_dir, overwrite=True)
    curve = learning_curve(run_dir)
    reached = next((step for step, value in curve if value >= job["threshold"]), None)
    recall = []
    if job["recall"]:
        from rlmem.probes import recall_curve

        agent, _ = runs.load_run_agent(run_dir, "final", job["device"])
        recall = recall_curve(agent, job["env"], job["recall"], job["recall_episodes"],
                              seed=job["seed"] + runs.EVAL_SEED_OFFSET, device=job["device"])
    mean = evaluation["mean_return"]
    result = {
        "job": {key: job[key] for key in (*_JOB_KEYS, "name", "gap", "gap_parameter")},
        "mean_return": mean,
        "std_return": evaluation["std_return"],
        "eval_episodes": evaluation["n_episodes"],
        "chance_return": job["chance"],
        "normalised_return": (mean - job["chance"]) / (1 - job["chance"]),
        "threshold": job["threshold"],
        "success": bool(mean >= job["threshold"]),
        "steps": evaluation["steps"],
        "steps_to_threshold": reached,
        "wall_clock_s": evaluation["wall_clock_s"],
        "env_steps_per_s": evaluation["env_steps_per_s"],
        "bench_wall_clock_s": round(time.perf_counter() - start, 2),
        "learning_curve": curve,
        "recall": recall,
    }
    atomic_write_text(run_dir / RESULT, json.dumps(result, indent=1) + "\n")
    return result


def _run_in_worker(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    from rlmem.agents.stops import TrainingInterrupted

    try:
        return job, run_job(job), None
    except TrainingInterrupted:  # Ctrl-C / SIGTERM stops the bench (the run keeps its checkpoint)
        raise KeyboardInterrupt from None
    except Exception as error:  # reported by the bench, which goes on with the other runs
        return job, None, f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------------- running a bench
def run_bench(suite_path: str | Path, agents: str, seeds: int, out: str | Path, workers: int = 1,
              shard: str | None = None, envs: str | None = None, threads: int = 1, device: str = "cpu",
              summary_only: bool = False, echo: Any = print) -> int:
    """Run (or resume) a bench and write its summary; returns the number of runs that failed.

    ``summary_only``: run nothing, only summarise the finished runs found in ``out`` (e.g. to
    merge the slices of a sharded bench, or after an interruption).
    """
    suite = load_suite(suite_path)
    agent_presets = load_agents(agents)
    check_positive_int("--seeds", seeds)
    check_positive_int("--workers", workers)
    if envs is not None:
        wanted = [e.strip() for e in envs.split(",") if e.strip()]
        if not wanted:
            raise ValueError(f"--envs {envs!r} names no env (give ids of {suite.path}, comma-separated)")
        known = list(dict.fromkeys(e.id for e in suite.envs))
        for env_id in wanted:
            if env_id not in known and env_id not in [e.slug for e in suite.envs]:
                raise ValueError(f"--envs: {env_id!r} is not in {suite.path}{_close(env_id, known)}")
        suite.envs = [e for e in suite.envs if e.id in wanted or e.slug in wanted]  # an id takes all its gaps
    index, count = parse_shard(shard)
    out = Path(out)
    _check_agent_keys(suite, agent_presets)
    jobs = plan_jobs(suite, agent_presets, seeds, out, threads, device)
    from rlmem.device import resolve_device

    resolve_device(device)
    warnings = check_jobs(jobs)
    mine = jobs[index - 1::count]
    pending = [job for job in mine if read_result(job) is None]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(f"cannot create the bench directory {str(out)!r}", error) from None
    slice_note = f" (slice {index}/{count} of {len(jobs)})" if count > 1 else ""
    if summary_only:  # nothing runs: say how many are finished, not that the rest are
        echo(f"bench {suite.name}: {len(mine)} runs{slice_note}; {len(mine) - len(pending)} finished, "
             f"{len(pending)} not (--summary-only: none is run) -> {out}", flush=True)
        pending = []
    else:
        echo(f"bench {suite.name}: {len(mine)} runs{slice_note}; {len(mine) - len(pending)} finished earlier "
             f"(skipped), {len(pending)} to run on {workers} worker(s) -> {out}", flush=True)
    for line in warnings:
        echo(line, flush=True)
    failures = 0
    start = time.perf_counter()

    def report(done: int, job: dict[str, Any], result: dict[str, Any] | None, error: str | None) -> None:
        nonlocal failures
        elapsed = time.perf_counter() - start
        left = len(pending) - done
        eta = f", about {elapsed / done * left / 60:.0f} min left" if left else ""
        name = f"{Path(job['run_dir']).parent.parent.name} {job['agent']} seed {job['seed']}"
        if result is None:
            failures += 1
            echo(f"[{done}/{len(pending)}] {name}: FAILED ({error}); log: {Path(job['run_dir']) / 'bench.log'}",
                 flush=True)
        else:
            echo(f"[{done}/{len(pending)}] {name}: return {result['mean_return']:.3f} (normalised "
                 f"{result['normalised_return']:.2f}) in {result['bench_wall_clock_s']:.0f} s; "
                 f"{elapsed / 60:.1f} min elapsed{eta}", flush=True)

    try:
        if workers == 1 or len(pending) <= 1:
            for done, job in enumerate(pending, 1):
                report(done, *_run_in_worker(job))
        else:
            context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch state
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(_run_in_worker, job) for job in pending}
                done_count = 0
                try:
                    while futures:
                        finished, futures = wait(futures, return_when=FIRST_COMPLETED)
                        for future in finished:
                            done_count += 1
                            report(done_count, *future.result())
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    except KeyboardInterrupt:
        # The runs that finished keep their result.json: summarise them, and a rerun resumes.
        write_summary(suite, agent_presets, seeds, out, jobs)
        echo(f"interrupted; the summary of the finished runs is in {out / 'summary.md'}; "
             "rerun the same command to resume", flush=True)
        raise
    write_summary(suite, agent_presets, seeds, out, jobs)
    echo(f"summary: {out / 'summary.md'}, {out / 'summary.csv'}, plots in {out / 'plots'}", flush=True)
    return failures


def _close(value: str, options: list[str]) -> str:
    return did_you_mean(value, options, 2, " (it has: {options})")


def _check_agent_keys(suite: Suite, agents: dict[str, str]) -> None:
    """A suite entry's hyperparameters key names an algo, an agent of this bench or a shipped preset."""
    from rlmem.agents.presets import ALGOS
    from rlmem.shipped import shipped_files

    known = list(dict.fromkeys([*ALGOS, *agents, *shipped_files("agents")]))  # an agent is often a shipped preset too
    for env in suite.envs:
        for key in env.hyperparameters:
            if key not in known:
                raise ValueError(f"{suite.path}: {env.where}.hyperparameters: {key!r} names no algo "
                                 f"({', '.join(ALGOS)}), no agent of this bench ({', '.join(agents)}) and no "
                                 f"shipped preset{did_you_mean(key, known, 2)} (env {env.id})")


def check_jobs(jobs: list[dict[str, Any]]) -> list[str]:
    """Resolve and check every (env, agent) setting before any file is written: a bad one is a
    ValueError naming the suite entry and the agent. Returns the unroll warnings, one per (env, agent)."""
    from rlmem.runs import check_env

    warnings = []
    for job in {(job["name"], job["agent"]): job for job in jobs}.values():
        try:
            spec = job_spec(job)
            check_env(spec)
        except ValueError as error:
            message = str(error)
            if not message.startswith(job["where"].split(": ")[0] + ": "):
                message = f"{job['where']}, agent {job['agent']}: {message}"
            raise ValueError(message) from None
        warning = unroll_warning(spec, job["agent"], job["name"], job["gap"], job["gap_parameter"])
        if warning is not None:
            warnings.append(warning)
    return warnings




# ---------------------------------------------------------------------- the summary
def write_summary(suite: Suite, agents: dict[str, str], seeds: int, out: Path, jobs: list[dict[str, Any]]) -> None:
    """summary.csv, summary.md (horizons.csv) and plots/ from every finished run of ``jobs`` under ``out`` (all slices)."""
    results, missing = [], []
    for job in jobs:
        result = read_result(job)
        if result is None:
            missing.append(job)
        else:
            results.append((job, result))
    write_tables(suite, list(agents), seeds, out, results, missing, len(jobs))
    if results:
        write_plots(suite, list(agents), results, out / "plots")


__all__ = ["Suite", "SuiteEnv", "chance_return", "check_jobs", "env_slug", "learning_curve", "load_agents",
           "load_suite", "plan_jobs", "read_result", "run_bench", "run_job", "write_summary"]
