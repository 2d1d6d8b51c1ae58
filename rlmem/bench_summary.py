"""The bench's tables: ``summary.csv`` (a row per run), ``summary.md`` and, for a horizon suite, ``horizons.csv``.

``summary.md`` leads with the horizons (rows agents, columns task families) where the suite has
gaps, then one section per env: the final evaluation's return and success, and the steps the
*training* return took to reach the threshold, each column saying which return it reads (the
exploring policy's training return can reach the threshold before or after the deterministic
final evaluation does, so the two are named apart rather than left to look contradictory).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from rlmem.files import atomic_write, atomic_write_text
from rlmem.horizons import HORIZON_RULE, family_rows
from rlmem.suites import Suite

Results = list[tuple[dict[str, Any], dict[str, Any]]]

CSV_KEYS = ["env", "gap_parameter", "gap", "agent", "seed", "steps", "mean_return", "std_return", "chance_return",
            "normalised_return", "threshold", "success", "steps_to_threshold", "wall_clock_s", "env_steps_per_s",
            "run_dir"]
HORIZON_KEYS = ["agent", "family", "gap_parameter", "gaps", "solved", "horizon", "horizon_text", "memory_score",
                "gaps_run"]


def grouped(results: Results) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(run name, agent) -> the results of its seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for job, result in results:
        groups.setdefault((job.get("name", job["env"]), job["agent"]), []).append(result)
    return groups


def write_tables(suite: Suite, agents: list[str], seeds: int, out: Path, results: Results,
                 missing: list[dict[str, Any]], total: int) -> None:
    """summary.csv, summary.md and (a suite with gaps) horizons.csv, each written atomically."""
    rows = []
    for job, r in results:
        rows.append({"env": job["env"], "gap_parameter": job.get("gap_parameter"), "gap": job.get("gap"),
                     "agent": job["agent"], "seed": job["seed"],
                     "steps": r["steps"], "mean_return": round(r["mean_return"], 4),
                     "std_return": round(r["std_return"], 4), "chance_return": round(r["chance_return"], 4),
                     "normalised_return": round(r["normalised_return"], 4), "threshold": r["threshold"],
                     "success": r["success"], "steps_to_threshold": r["steps_to_threshold"],
                     "wall_clock_s": r["wall_clock_s"], "env_steps_per_s": r["env_steps_per_s"],
                     "run_dir": str(Path(job["run_dir"]).relative_to(out))})
    _write_csv(out / "summary.csv", CSV_KEYS, rows)
    horizons = family_rows(suite.families, agents, grouped(results))
    if suite.families:
        _write_csv(out / "horizons.csv", HORIZON_KEYS, [
            {**row, "gaps": " ".join(map(str, row["gaps"])), "memory_score": round(row["memory_score"], 4),
             "solved": " ".join("-" if s is None else str(int(s)) for s in row["solved"])} for row in horizons])
    atomic_write_text(out / "summary.md", markdown(suite, agents, seeds, results, missing, total, horizons))


def _write_csv(path: Path, keys: list[str], rows: list[dict[str, Any]]) -> None:
    def write(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def markdown(suite: Suite, agents: list[str], seeds: int, results: Results, missing: list[dict[str, Any]],
             total: int, horizons: list[dict[str, Any]]) -> str:
    """summary.md: the horizons first (a suite with gaps), then per env, the recall, the suite's mean."""
    groups = grouped(results)
    lines = [f"# Bench: {suite.name}", "",
             f"Suite `{suite.path}`; agents {', '.join(f'`{a}`' for a in agents)}; seeds 0..{seeds - 1}. "
             f"Finished runs: {len(results)} of {total}.", ""]
    if suite.families:
        lines += horizon_section(suite, agents, groups, horizons)
    lines += ["Normalised return = (return - chance) / (1 - chance), per run from its final deterministic "
              "evaluation; mean +- std over seeds. Success: that same final evaluation's mean return >= the "
              "env's threshold. Steps to threshold reads another return, the *training* one (the exploring "
              "policy's mean episodic return per iteration): the first iteration at which it reached the "
              "threshold, averaged over the seeds that reached it; a run can reach it in training and fall "
              "short in the final evaluation, or the other way round. Wall-clock and env-steps/s: training "
              "only.", ""]
    header = ("| agent | seeds | normalised return (final eval) | return (final eval) | success (final eval) "
              "| steps to threshold (training return) | wall-clock s | env-steps/s |")
    for env in suite.envs:
        present = [a for a in agents if (env.name, a) in groups]
        if not present:
            continue
        lines += [f"## {env.name}", "", f"{env.steps:,} steps; threshold {env.threshold}; chance return "
                  f"{env.chance:.3f}{_settings(env)}", "", header,
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for agent in present:
            rs = groups[(env.name, agent)]
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
        lines += _recall_table(env, present, groups)
    if groups:
        lines += ["## Across the suite", "", "Mean normalised return over the envs each agent finished (each env "
                  "weighs the same: the mean over its seeds first).", "", "| agent | envs | normalised return |",
                  "| --- | ---: | ---: |"]
        for agent in agents:
            per_env = [np.mean([r["normalised_return"] for r in groups[(e.name, agent)]])
                       for e in suite.envs if (e.name, agent) in groups]
            if per_env:
                lines.append(f"| {agent} | {len(per_env)} | {np.mean(per_env):.3f} |")
        lines.append("")
    if missing:
        lines += [f"## Not run ({len(missing)})", ""]
        lines += [f"- {job.get('name', job['env'])} {job['agent']} seed {job['seed']}" for job in missing]
        lines.append("")
    return "\n".join(lines)


def _settings(env: Any) -> str:
    """The entry's own settings, as a note after the budget line (env arguments, hyperparameters)."""
    parts = []
    if env.env_kwargs:
        parts.append("env " + ", ".join(f"{k}={v}" for k, v in env.env_kwargs.items()))
    for key, values in env.hyperparameters.items():
        parts.append(f"{key}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return "; " + "; ".join(parts) if parts else ""


def _recall_table(env: Any, present: list[str], groups: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    recall_rows = [(a, groups[(env.name, a)]) for a in present if groups[(env.name, a)][0]["recall"]]
    if not recall_rows:
        return []
    lags = [p["lag"] for p in recall_rows[0][1][0]["recall"]]
    chance = recall_rows[0][1][0]["recall"][0]["chance"]
    lines = [f"Recall accuracy (fraction of recalls right, mean over seeds; chance {chance:.2f}) against "
             "the task's lag:", "", "| agent | " + " | ".join(f"lag {lag}" for lag in lags) + " |",
             "| --- |" + " ---: |" * len(lags)]
    for agent, rs in recall_rows:
        values = [np.mean([r["recall"][i]["recall_accuracy"] for r in rs]) for i in range(len(lags))]
        lines.append(f"| {agent} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return [*lines, ""]


def horizon_section(suite: Suite, agents: list[str], groups: dict[tuple[str, str], list[dict[str, Any]]],
                    horizons: list[dict[str, Any]]) -> list[str]:
    """The horizon table (rows agents, columns families), the memory scores, then each family gap by gap."""
    families = suite.families
    by_key = {(row["agent"], row["family"]): row for row in horizons}
    heads = [f"{family} ({envs[0].gap_parameter})" for family, envs in families.items()]
    rule = "| --- |" + " ---: |" * len(families)
    lines = ["## Horizons", "", f"How far back each agent's memory reaches, per task family: {HORIZON_RULE}. "
             "`>= g`: every gap solved, up to the largest in the suite; `< g`: not even the smallest. "
             "Each gap is its own training run (see the sections below).", "",
             "| agent | " + " | ".join(heads) + " |", rule]
    for agent in agents:
        cells = []
        for family in families:
            row = by_key.get((agent, family))
            cells.append("not run" if row is None else row["horizon_text"] + _incomplete(row))
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    lines += ["", "Memory score (fraction of the family's gaps solved, bsuite's score):", "",
              "| agent | " + " | ".join(families) + " |", rule]
    for agent in agents:
        cells = []
        for family in families:
            row = by_key.get((agent, family))
            cells.append("not run" if row is None else
                         f"{row['memory_score']:.2f} ({sum(bool(s) for s in row['solved'])}/{len(row['gaps'])})")
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    lines.append("")
    for family, envs in families.items():
        lines += [f"### {family}: runs that succeed per {envs[0].gap_parameter} (and mean normalised return)", "",
                  "| agent | " + " | ".join(str(env.gap) for env in envs) + " |", "| --- |" + " ---: |" * len(envs)]
        for agent in agents:
            cells = []
            for env in envs:
                rs = groups.get((env.name, agent))
                cells.append("-" if not rs else f"{sum(r['success'] for r in rs)}/{len(rs)} "
                             f"({np.mean([r['normalised_return'] for r in rs]):.2f})")
            if any(cell != "-" for cell in cells):
                lines.append(f"| {agent} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _incomplete(row: dict[str, Any]) -> str:
    run, count = row["gaps_run"], len(row["gaps"])
    return "" if run == count else f" ({run}/{count} gaps run)"


__all__ = ["CSV_KEYS", "HORIZON_KEYS", "grouped", "horizon_section", "markdown", "write_tables"]
