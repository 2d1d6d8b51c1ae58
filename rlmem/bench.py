"""``rlmem bench``: every (env, agent, seed) of a suite trained, evaluated, recalled and summarised.

A suite is a YAML file under ``envs/`` (:mod:`rlmem.suites`, which reads and checks it); agents are
presets (``agents/*.yaml``). Each run is an ordinary ``rlmem train`` run directory,
``OUT/runs/<env>/<agent>/seed<k>/``, to which the bench adds ``bench.log`` (the training's
output) and, last and atomically, ``result.json``: a run counts as finished only once that
file exists and matches the run asked for, so an interrupted bench reruns exactly the
unfinished runs. ``--shard i/n`` runs every n-th run starting at the i-th, into the same
``OUT``; every invocation writes the summary from all finished runs it finds there, so the
slices merge by themselves (rerun the full command, or the last slice, to see them all).

Outputs: ``summary.csv`` (one row per finished run), ``summary.md`` (per env and agent: mean
+- std normalised return, success rate, steps to threshold, wall-clock, env-steps/s; recall
curves) and ``plots/``: learning curves per env, normalised return per agent across the suite,
recall curves per env.

Normalised return = (return - chance) / (1 - chance): 0 is a policy without memory (or a
random one), 1 a perfect one. ``chance`` is the suite entry's ``chance`` if given, else
:func:`chance_return` (from the task docstrings).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from rlmem.checks import check_positive_int, did_you_mean
from rlmem.files import atomic_write, atomic_write_text, storage_error
from rlmem.suites import Suite, SuiteEnv, chance_return, load_suite  # noqa: F401  (the bench's suite file)

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


def env_slug(env_id: str) -> str:
    """A directory name for an env id: ``rlmem/RepeatPreviousEasy-v0`` -> ``RepeatPreviousEasy-v0``."""
    return env_id.removeprefix("rlmem/").replace("/", "_")


def plan_jobs(suite: Suite, agents: dict[str, str], seeds: int, out: Path, threads: int = 1,
              device: str = "cpu") -> list[dict[str, Any]]:
    """Every (env, agent, seed) of the bench, env by env, as plain dicts a worker process can take."""
    jobs = []
    for env in suite.envs:
        for agent, preset in agents.items():
            for seed in range(seeds):
                jobs.append({"env": env.id, "agent": agent, "preset": preset, "seed": seed, "steps": env.steps,
                             "threshold": env.threshold, "chance": env.chance, "recall": env.recall,
                             "recall_episodes": suite.recall_episodes, "eval_episodes": env.eval_episodes,
                             "threads": threads, "device": device,
                             "run_dir": str(out / "runs" / env_slug(env.id) / agent / f"seed{seed}")})
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


_JOB_KEYS = ("env", "agent", "seed", "steps", "eval_episodes", "recall")


def read_result(job: dict[str, Any]) -> dict[str, Any] | None:
    """The finished result of ``job``, or None (not run, interrupted, or run with other settings)."""
    path = Path(job["run_dir"]) / RESULT
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if any(result.get("job", {}).get(key) != job[key] for key in _JOB_KEYS):
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
    """The run settings of a bench job (its preset, with the suite's env, steps, seed, device, episodes)."""
    from rlmem.agents.presets import resolve_run

    return resolve_run(job["preset"], env=job["env"], steps=job["steps"], seed=job["seed"], device=job["device"],
                       eval_episodes=job["eval_episodes"])


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
        "job": {key: job[key] for key in _JOB_KEYS},
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
        known = [e.id for e in suite.envs]
        for env_id in wanted:
            if env_id not in known:
                raise ValueError(f"--envs: {env_id!r} is not in {suite.path}{_close(env_id, known)}")
        suite.envs = [e for e in suite.envs if e.id in wanted]
    index, count = parse_shard(shard)
    out = Path(out)
    jobs = plan_jobs(suite, agent_presets, seeds, out, threads, device)
    from rlmem.device import resolve_device
    from rlmem.runs import check_env

    resolve_device(device)
    for job in {(job["preset"], job["env"]): job for job in jobs}.values():  # every setting, before any file
        check_env(job_spec(job))
    mine = jobs[index - 1::count]
    pending = [job for job in mine if read_result(job) is None]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(f"cannot create the bench directory {str(out)!r}", error) from None
    if summary_only:
        pending = []
    slice_note = f" (slice {index}/{count} of {len(jobs)})" if count > 1 else ""
    echo(f"bench {suite.name}: {len(mine)} runs{slice_note}; {len(mine) - len(pending)} finished earlier "
         f"(skipped), {len(pending)} to run on {workers} worker(s) -> {out}", flush=True)
    failures = 0
    start = time.perf_counter()

    def report(done: int, job: dict[str, Any], result: dict[str, Any] | None, error: str | None) -> None:
        nonlocal failures
        elapsed = time.perf_counter() - start
        left = len(pending) - done
        eta = f", about {elapsed / done * left / 60:.0f} min left" if left else ""
        name = f"{env_slug(job['env'])} {job['agent']} seed {job['seed']}"
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


# ---------------------------------------------------------------------- the summary
CSV_KEYS = ["env", "agent", "seed", "steps", "mean_return", "std_return", "chance_return", "normalised_return",
            "threshold", "success", "steps_to_threshold", "wall_clock_s", "env_steps_per_s", "run_dir"]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def write_summary(suite: Suite, agents: dict[str, str], seeds: int, out: Path, jobs: list[dict[str, Any]]) -> None:
    """summary.csv, summary.md and plots/ from every finished run of ``jobs`` under ``out`` (all slices)."""
    results = []
    missing = []
    for job in jobs:
        result = read_result(job)
        if result is None:
            missing.append(job)
        else:
            results.append((job, result))
    rows = []
    for job, r in results:
        rows.append({"env": job["env"], "agent": job["agent"], "seed": job["seed"], "steps": r["steps"],
                     "mean_return": round(r["mean_return"], 4), "std_return": round(r["std_return"], 4),
                     "chance_return": round(r["chance_return"], 4),
                     "normalised_return": round(r["normalised_return"], 4), "threshold": r["threshold"],
                     "success": r["success"], "steps_to_threshold": r["steps_to_threshold"],
                     "wall_clock_s": r["wall_clock_s"], "env_steps_per_s": r["env_steps_per_s"],
                     "run_dir": str(Path(job["run_dir"]).relative_to(out))})
    def write_csv(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=CSV_KEYS)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(out / "summary.csv", write_csv)
    atomic_write_text(out / "summary.md", _markdown(suite, agents, seeds, results, missing, len(jobs)))
    if results:
        _plots(suite, agents, results, out / "plots")


def _grouped(results: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for job, result in results:
        groups.setdefault((job["env"], job["agent"]), []).append(result)
    return groups


def _markdown(suite: Suite, agents: dict[str, str], seeds: int, results: list[tuple[dict[str, Any], dict[str, Any]]],
              missing: list[dict[str, Any]], total: int) -> str:
    groups = _grouped(results)
    lines = [f"# Bench: {suite.name}", "",
             f"Suite `{suite.path}`; agents {', '.join(f'`{a}`' for a in agents)}; seeds 0..{seeds - 1}. "
             f"Finished runs: {len(results)} of {total}.", "",
             "Normalised return = (return - chance) / (1 - chance), per run from its final deterministic "
             "evaluation; mean +- std over seeds. Success: final mean return >= the env's threshold. Steps to "
             "threshold: the first training iteration whose mean episodic return (exploring policy) reached the "
             "threshold, averaged over the seeds that reached it. Wall-clock and env-steps/s: training only.", ""]
    header = ("| agent | seeds | normalised return | return | success rate | steps to threshold | wall-clock s "
              "| env-steps/s |")
    for env in suite.envs:
        present = [a for a in agents if (env.id, a) in groups]
        if not present:
            continue
        lines += [f"## {env.id}", "",
                  f"{env.steps:,} steps; threshold {env.threshold}; chance return {env.chance:.3f}", "", header,
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for agent in present:
            rs = groups[(env.id, agent)]
            norm = _mean_std([r["normalised_return"] for r in rs])
            ret = float(np.mean([r["mean_return"] for r in rs]))
            success = sum(r["success"] for r in rs)
            reached = [r["steps_to_threshold"] for r in rs if r["steps_to_threshold"] is not None]
            to_threshold = (f"{np.mean(reached):,.0f} ({len(reached)}/{len(rs)})" if reached
                            else f"not reached (0/{len(rs)})")
            wall = float(np.mean([r["wall_clock_s"] for r in rs]))
            sps = float(np.mean([r["env_steps_per_s"] for r in rs]))
            lines.append(f"| {agent} | {len(rs)} | {norm[0]:.3f} +- {norm[1]:.3f} | {ret:.3f} | "
                         f"{success}/{len(rs)} | {to_threshold} | {wall:.1f} | {sps:,.0f} |")
        lines.append("")
        recall_rows = [(a, groups[(env.id, a)]) for a in present if groups[(env.id, a)][0]["recall"]]
        if recall_rows:
            lags = [p["lag"] for p in recall_rows[0][1][0]["recall"]]
            chance = recall_rows[0][1][0]["recall"][0]["chance"]
            lines += [f"Recall accuracy (fraction of recalls right, mean over seeds; chance {chance:.2f}) against "
                      "the task's lag:", "",
                      "| agent | " + " | ".join(f"lag {lag}" for lag in lags) + " |",
                      "| --- |" + " ---: |" * len(lags)]
            for agent, rs in recall_rows:
                values = [np.mean([r["recall"][i]["recall_accuracy"] for r in rs]) for i in range(len(lags))]
                lines.append(f"| {agent} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
            lines.append("")
    if groups:
        lines += ["## Across the suite", "", "Mean normalised return over the envs each agent finished (each env "
                  "weighs the same: the mean over its seeds first).", "", "| agent | envs | normalised return |",
                  "| --- | ---: | ---: |"]
        for agent in agents:
            per_env = [np.mean([r["normalised_return"] for r in groups[(e.id, agent)]])
                       for e in suite.envs if (e.id, agent) in groups]
            if per_env:
                lines.append(f"| {agent} | {len(per_env)} | {np.mean(per_env):.3f} |")
        lines.append("")
    if missing:
        lines += [f"## Not run ({len(missing)})", ""]
        lines += [f"- {job['env']} {job['agent']} seed {job['seed']}" for job in missing]
        lines.append("")
    return "\n".join(lines)


def _plots(suite: Suite, agents: dict[str, str], results: list[tuple[dict[str, Any], dict[str, Any]]],
           folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlmem.envs.registry import TASKS
    from rlmem.probes import lag_task

    folder.mkdir(parents=True, exist_ok=True)
    groups = _grouped(results)
    colours = {agent: plt.get_cmap("tab10")(i) for i, agent in enumerate(agents)}
    envs = [e for e in suite.envs if any((e.id, a) in groups for a in agents)]
    for env in envs:
        fig, ax = plt.subplots(figsize=(7, 4))
        for agent in agents:
            for i, r in enumerate(groups.get((env.id, agent), [])):
                if r["learning_curve"]:
                    steps, values = zip(*r["learning_curve"], strict=True)
                    ax.plot(steps, values, color=colours[agent], alpha=0.8, lw=1.2,
                            marker="o" if len(steps) < 3 else None, label=agent if i == 0 else None)
        ax.axhline(env.threshold, color="black", ls="--", lw=0.8, label=f"threshold {env.threshold}")
        ax.axhline(env.chance, color="gray", ls=":", lw=0.8, label="chance")
        ax.set(xlabel="env-steps", ylabel="training episodic return", title=f"{env.id}: one line per seed")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / f"learning_{env_slug(env.id)}.png", dpi=100)
        plt.close(fig)

        recall = {a: groups[(env.id, a)] for a in agents if (env.id, a) in groups and groups[(env.id, a)][0]["recall"]}
        if recall:
            fig, ax = plt.subplots(figsize=(6, 4))
            for agent, rs in recall.items():
                lags = [p["lag"] for p in rs[0]["recall"]]
                values = np.array([[p["recall_accuracy"] for p in r["recall"]] for r in rs])
                ax.errorbar(lags, values.mean(0), yerr=values.std(0), marker="o", capsize=3, color=colours[agent],
                            label=agent)
            ax.axhline(next(iter(recall.values()))[0]["recall"][0]["chance"], color="gray", ls=":", label="chance")
            family, spec = lag_task(env.id)
            trained_lag = getattr(TASKS[env.id](num_envs=1), spec.parameter)
            ax.axvline(trained_lag, color="black", lw=0.8, ls="--", label=f"trained at {spec.parameter}={trained_lag}")
            ax.set(xlabel=f"lag ({family.__name__}'s {spec.parameter})", ylabel="recall accuracy (fraction right)",
                   ylim=(0, 1.05))
            ax.set_title(f"Recall: trained on {env_slug(env.id)} (mean +- std over seeds)", fontsize=10)
            ax.set_xscale("log", base=2)
            ax.set_xticks(env.recall, [str(lag) for lag in env.recall])
            ax.minorticks_off()
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(folder / f"recall_{env_slug(env.id)}.png", dpi=100)
            plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(envs) + 2), 4))
    width = 0.8 / len(agents)
    for i, agent in enumerate(agents):
        means, stds = [], []
        for env in envs:
            values = [r["normalised_return"] for r in groups.get((env.id, agent), [])]
            means.append(np.mean(values) if values else np.nan)
            stds.append(np.std(values) if values else 0)
        ax.bar(np.arange(len(envs)) + (i - (len(agents) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               color=colours[agent], label=agent)
    ax.set_xticks(np.arange(len(envs)), [env_slug(e.id).removesuffix("-v0") for e in envs], rotation=30,
                  ha="right", fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.axhline(1, color="gray", lw=0.6, ls=":")
    lowest = min([0.0, *(r["normalised_return"] for _, r in results)])
    ax.set_ylim(lowest - 0.05, 1.1)
    ax.set(ylabel="normalised return (0 chance, 1 perfect)", title=f"{suite.name}: mean +- std over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "normalised_return.png", dpi=100)
    plt.close(fig)


__all__ = ["Suite", "SuiteEnv", "chance_return", "learning_curve", "load_agents", "load_suite", "plan_jobs",
           "read_result", "run_bench", "run_job", "write_summary"]
