"""The bench's plots (``OUT/plots/``), drawn to be read at a glance.

Each agent keeps one colour, marker and line style in every plot (so lines that lie on top of
each other still show, and a plot reads in greyscale); every title and legend names the agents
by their preset name ("ppo-lstm", which names the memory core); legends sit outside the axes.

* ``learning_<env>.png``: the training return per agent, the mean over seeds with a band of
  +- one std, and the final deterministic evaluation marked by a star (mean +- std);
* ``normalised_return.png``: per env (entries without gaps), normalised return per agent;
* ``recall_<env>.png``: recall accuracy against the task's lag (mean +- std over seeds);
* ``horizon.png`` (a suite with gaps): normalised return against the gap, log axis, one line per
  agent, one panel per task family, chance and threshold drawn, solved gaps filled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rlmem.bench_summary import Results, grouped
from rlmem.horizons import gap_solved
from rlmem.suites import Suite

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (8, 2, 2, 2)))
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8, "borderaxespad": 0.0}
"""Legends go outside the axes, on the right: they cover no data."""


def styles(agents: list[str]) -> dict[str, dict[str, Any]]:
    """Each agent's colour, marker and line style (the same in every plot)."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {agent: {"color": cmap(i % 10), "marker": MARKERS[i % len(MARKERS)],
                    "linestyle": LINESTYLES[i % len(LINESTYLES)]} for i, agent in enumerate(agents)}


def write_plots(suite: Suite, agents: list[str], results: Results, folder: Path) -> None:
    """Every plot of the finished runs into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    groups = grouped(results)
    style = styles(agents)
    envs = [e for e in suite.envs if any((e.name, a) in groups for a in agents)]
    for env in envs:
        _learning(env, agents, groups, style, folder / f"learning_{env.slug}.png")
        if any(groups.get((env.name, a), [{}])[0].get("recall") for a in agents):
            _recall(env, agents, groups, style, folder / f"recall_{env.slug}.png")
    plain = [e for e in envs if e.family is None]
    if plain:
        _normalised(suite, plain, agents, groups, style, results, folder / "normalised_return.png")
    if any(any((e.name, a) in groups for e in family for a in agents) for family in suite.families.values()):
        _horizon(suite, agents, groups, style, folder / "horizon.png")


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")  # tight: the outside legend is kept in the picture
    plt.close(fig)


def _names(agents: list[str]) -> str:
    return ", ".join(agents) if len(agents) <= 4 else f"{', '.join(agents[:4])} and {len(agents) - 4} more"


def _learning(env: Any, agents: list[str], groups: dict, style: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.legend_handler import HandlerTuple

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    handles, labels = [], []
    present = [a for a in agents if groups.get((env.name, a))]
    last = max(r["steps"] for a in present for r in groups[(env.name, a)])
    for i, agent in enumerate(present):
        rs = groups[(env.name, agent)]
        s = style[agent]
        parts = []
        curves = [np.asarray(r["learning_curve"], dtype=float) for r in rs if r["learning_curve"]]
        if curves:
            x, mean, std = _mean_curve(curves)
            (line,) = ax.plot(x, mean, color=s["color"], linestyle=s["linestyle"], marker=s["marker"], ms=5,
                              markevery=max(1, len(x) // 8), lw=1.6, alpha=0.9)
            if std is not None:
                ax.fill_between(x, mean - std, mean + std, color=s["color"], alpha=0.15, lw=0)
            parts.append(line)
        finals = [r["mean_return"] for r in rs]
        at = float(np.mean([r["steps"] for r in rs])) + last * 0.015 * (i - (len(present) - 1) / 2)  # side by side
        star = ax.errorbar(at, float(np.mean(finals)), yerr=float(np.std(finals)),
                           marker="*", ms=14, color=s["color"], mec="black", mew=0.8, capsize=4, zorder=5,
                           linestyle="none")
        parts.append(star)
        handles.append(tuple(parts))
        seeds = f"{len(rs)} seed{'s' if len(rs) > 1 else ''}"
        labels.append(f"{agent} ({seeds})")
    threshold = ax.axhline(env.threshold, color="black", ls="--", lw=0.8)
    chance = ax.axhline(env.chance, color="gray", ls=":", lw=1.0)
    ax.legend([*handles, threshold, chance], [*labels, f"threshold {env.threshold}", f"chance {env.chance:.2f}"],
              handler_map={tuple: HandlerTuple(ndivide=None)}, **LEGEND)
    ax.set(xlabel="env-steps", ylabel="return")
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(_steps_label)
    ax.set_title(f"{env.name}: {_names(present)}\nline: training return (exploring policy), mean +- std over "
                 "seeds; star: final deterministic evaluation", fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path)


def _steps_label(value: float, _position: Any = None) -> str:
    """Env-steps as 250k / 1.5M (not an offset factor at the axis' end)."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    return f"{value / 1e3:g}k" if abs(value) >= 1e3 else f"{value:g}"


def _mean_curve(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The seeds' curves on one grid (where they all have data): mean and std; one seed: itself, no band."""
    if len(curves) == 1:
        return curves[0][:, 0], curves[0][:, 1], None
    low, high = max(c[0, 0] for c in curves), min(c[-1, 0] for c in curves)
    if high <= low:
        longest = max(curves, key=len)
        return longest[:, 0], longest[:, 1], None
    x = np.linspace(low, high, 100)
    ys = np.stack([np.interp(x, c[:, 0], c[:, 1]) for c in curves])
    return x, ys.mean(0), ys.std(0)


def _recall(env: Any, agents: list[str], groups: dict, style: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from rlmem.envs.registry import TASKS
    from rlmem.probes import lag_task

    recall = {a: groups[(env.name, a)] for a in agents if (env.name, a) in groups and groups[(env.name, a)][0]["recall"]}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (agent, rs) in enumerate(recall.items()):
        lags = np.array([p["lag"] for p in rs[0]["recall"]], dtype=float)
        values = np.array([[p["recall_accuracy"] for p in r["recall"]] for r in rs])
        shift = 2 ** ((i - (len(recall) - 1) / 2) * 0.05)  # a small offset on the log axis: error bars side by side
        s = style[agent]
        ax.errorbar(lags * shift, values.mean(0), yerr=values.std(0), capsize=3, color=s["color"], marker=s["marker"],
                    linestyle=s["linestyle"], alpha=0.9, label=f"{agent} ({len(rs)} seed{'s' if len(rs) > 1 else ''})")
    ax.axhline(next(iter(recall.values()))[0]["recall"][0]["chance"], color="gray", ls=":", label="chance")
    family, spec = lag_task(env.id)
    trained_lag = getattr(TASKS[env.id](num_envs=1), spec.parameter)
    ax.axvline(trained_lag, color="black", lw=0.8, ls="--", label=f"trained at {spec.parameter}={trained_lag}")
    ax.set(xlabel=f"lag ({family.__name__}'s {spec.parameter})", ylabel="recall accuracy (fraction right)",
           ylim=(0, 1.05))
    ax.set_title(f"Recall of {_names(list(recall))}, trained on {env.slug}\n(mean +- std over seeds)", fontsize=9)
    ax.set_xscale("log", base=2)
    ax.set_xticks(env.recall, [str(lag) for lag in env.recall])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(**LEGEND)
    _save(fig, path)


def _normalised(suite: Suite, envs: list[Any], agents: list[str], groups: dict, style: dict, results: Results,
                path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(envs) + 2), 4))
    width = 0.8 / len(agents)
    hatches = ("", "//", "..", "xx", "\\\\", "++", "--", "oo")
    for i, agent in enumerate(agents):
        means, stds = [], []
        for env in envs:
            values = [r["normalised_return"] for r in groups.get((env.name, agent), [])]
            means.append(np.mean(values) if values else np.nan)
            stds.append(np.std(values) if values else 0)
        ax.bar(np.arange(len(envs)) + (i - (len(agents) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               color=style[agent]["color"], hatch=hatches[i % len(hatches)], edgecolor="white", label=agent)
    ax.set_xticks(np.arange(len(envs)), [env.slug.removesuffix("-v0") for env in envs], rotation=30, ha="right",
                  fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.axhline(1, color="gray", lw=0.6, ls=":")
    lowest = min([0.0, *(r["normalised_return"] for _, r in results)])
    ax.set_ylim(lowest - 0.05, 1.1)
    ax.set(ylabel="normalised return (0 chance, 1 perfect)")
    ax.set_title(f"{suite.name}: normalised final return of {_names(agents)} (mean +- std over seeds)", fontsize=9)
    ax.legend(**LEGEND)
    _save(fig, path)


def _horizon(suite: Suite, agents: list[str], groups: dict, style: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    families = suite.families
    cols = min(2, len(families))
    rows = math.ceil(len(families) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    present = [a for a in agents if any((e.name, a) in groups for envs in families.values() for e in envs)]
    for ax, (family, envs) in zip(axes.flat, families.items(), strict=False):
        for i, agent in enumerate(present):
            points = [(env.gap, groups[(env.name, agent)]) for env in envs if (env.name, agent) in groups]
            if not points:
                continue
            s = style[agent]
            shift = 2 ** ((i - (len(present) - 1) / 2) * 0.04)
            gaps = np.array([g for g, _ in points], dtype=float) * shift
            values = [np.array([r["normalised_return"] for r in rs]) for _, rs in points]
            mean, std = np.array([v.mean() for v in values]), np.array([v.std() for v in values])
            ax.errorbar(gaps, mean, yerr=std, color=s["color"], linestyle=s["linestyle"], lw=1.5, capsize=3,
                        alpha=0.9)
            solved = [bool(gap_solved([r["success"] for r in rs])) for _, rs in points]
            for x, y, ok in zip(gaps, mean, solved, strict=True):
                ax.plot(x, y, marker=s["marker"], ms=7, color=s["color"], mec=s["color"],
                        mfc=s["color"] if ok else "white", mew=1.5, zorder=4)
        first = envs[0]
        ax.axhline(0, color="gray", ls=":", lw=1.0)
        ax.axhline((first.threshold - first.chance) / (1 - first.chance), color="black", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks([e.gap for e in envs], [str(e.gap) for e in envs])
        ax.minorticks_off()
        ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.1)
        ax.set(xlabel=f"gap ({first.gap_parameter}, log scale)", ylabel="normalised return")
        ax.set_title(family, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(families):]:
        ax.axis("off")
    handles = [Line2D([], [], color=style[a]["color"], marker=style[a]["marker"], linestyle=style[a]["linestyle"],
                      label=a) for a in present]
    handles += [Line2D([], [], color="gray", marker="o", mfc="gray", linestyle="none", label="gap solved"),
                Line2D([], [], color="gray", marker="o", mfc="white", linestyle="none", label="gap not solved"),
                Line2D([], [], color="black", ls="--", lw=0.8, label="threshold"),
                Line2D([], [], color="gray", ls=":", label="chance (no memory): 0")]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8)
    fig.suptitle(f"{suite.name}: how far back the memory of {_names(present)} reaches\n(final deterministic "
                 "evaluation, normalised; mean +- std over seeds; solved: at least half the seeds succeed)",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)


__all__ = ["styles", "write_plots"]
