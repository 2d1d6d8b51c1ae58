"""``rlmem probe RUN_DIR``: probe a run directory's agent, and write ``probe.csv``, ``probe.json``,
TensorBoard scalars and the plot.

The measurements themselves are :mod:`rlmem.probes`; this module loads the run's checkpoint
(through :mod:`rlmem.runs`), calls :func:`rlmem.probes.probe_agent` and turns its result into
files a person or a script reads.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from rlmem import runs
from rlmem.envs.registry import make_vec_env
from rlmem.files import atomic_write, atomic_write_text
from rlmem.probes import HORIZON_RULE, probe_agent


def probe_run(run_dir: Any, task: str | None = None, max_lag: int | None = None, n_envs: int = 128,
              device: str = "cpu", checkpoint: str = "final", out: Any = None) -> dict[str, Any]:
    """Probe a run's memory from one of its checkpoints (and an untrained twin's), on its env or ``task``.

    Writes ``probe.csv``, ``probe.json`` and ``probe.png`` to ``out`` (default: the run directory)
    and TensorBoard scalars to ``RUN_DIR/probe``; returns the result (:func:`probe_agent`'s, plus
    the run, the checkpoint used and ``out``). ``max_lag`` defaults to 32, or the episode length
    - 1 if shorter.
    """
    run_dir = Path(run_dir)
    bench_runs = sorted(run_dir.glob("runs/*/*/seed*/result.json"))
    if not (run_dir / "config.yaml").exists() and bench_runs:
        raise ValueError(f"{str(run_dir)!r} is a bench directory, not a run; probe one of its runs, "
                         f"e.g. {bench_runs[0].parent}")
    config = runs.read_config(run_dir)
    path, which = runs.find_checkpoint(run_dir, checkpoint, config)
    task = task or config["env"]
    probe_env = make_vec_env(task, 1)  # an unknown id fails here, naming the closest ones
    episode_steps = probe_env.max_episode_steps if task.startswith("rlmem/") else None
    probe_env.close()
    agent = runs.load_agent(config, path, device, env=task)
    untrained = runs.untrained_twin(config, task, device)
    if max_lag is None:
        max_lag = min(32, episode_steps - 1) if episode_steps is not None else 32
    seed = int(config.get("seed", 0))
    result = probe_agent(agent, untrained, task, max_lag, n_envs=n_envs, seed=seed + runs.EVAL_SEED_OFFSET,
                         device=str(getattr(agent, "device", "cpu")))
    result.update(run_dir=str(run_dir), algo=config["algo"], trained_steps=int(agent.num_timesteps),
                  checkpoint=which)
    out = Path(out) if out else run_dir
    out.mkdir(parents=True, exist_ok=True)
    write_probe(result, out, log_dir=run_dir / "probe")
    title = f"{config['algo']} ({agent.num_timesteps:,} steps) probed on {task.removeprefix('rlmem/')}"
    plot_probe(result, out / "probe.png", title)
    return {**result, "out": str(out)}


def write_probe(result: dict[str, Any], out: Any, log_dir: Any = None) -> None:
    """``probe.csv`` (one row per lag) and ``probe.json`` (everything) in ``out``; TensorBoard scalars in ``log_dir``.

    The scalars are ``probe/accuracy_trained``, ``probe/accuracy_untrained`` and ``probe/chance``
    with the lag as the step, and ``probe/memory_horizon`` at the agent's trained steps.
    """
    out = Path(out)
    keys = ["lag", "trained", "untrained", "chance", "classes", "n_train", "n_test"]

    def write_csv(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in result["rows"]:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in keys})

    atomic_write(out / "probe.csv", write_csv)
    atomic_write_text(out / "probe.json", json.dumps(result, indent=2) + "\n")
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        for old in Path(log_dir).glob("events.out.tfevents.*"):
            old.unlink()  # a new probe replaces the last one's scalars
        writer = SummaryWriter(str(log_dir))
        for row in result["rows"]:
            for key in ("trained", "untrained", "chance"):
                if row[key] is not None:
                    name = "probe/chance" if key == "chance" else f"probe/accuracy_{key}"
                    writer.add_scalar(name, row[key], row["lag"])
        writer.add_scalar("probe/memory_horizon", result["horizon_trained"], result.get("trained_steps", 0))
        writer.add_text("probe/horizon_rule", HORIZON_RULE)
        writer.close()


def plot_probe(result: dict[str, Any], path: Any, title: str) -> None:
    """Accuracy against lag: trained, untrained, chance, the 0.9 line and the trained agent's horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    lags = [r["lag"] for r in rows]

    def series(key: str) -> list[float]:
        return [math.nan if r[key] is None else r[key] for r in rows]

    fig, ax = plt.subplots(figsize=(9, 4.2))
    # Where both agents score alike the lines coincide: the trained one wide beneath, the untrained thin and
    # hollow on top, so both show.
    ax.plot(lags, series("trained"), "o-", color="tab:blue", lw=3.5, ms=9, alpha=0.8, label="trained agent")
    ax.plot(lags, series("untrained"), "s--", color="dimgray", lw=1.2, ms=5, markerfacecolor="white",
            label="untrained agent (same shape)")
    ax.plot(lags, series("chance"), ":", color="black", label="chance (1 / classes)")
    ax.axhline(result["threshold"], color="tab:green", lw=0.8, alpha=0.6, label="0.9: held, for the horizon")
    horizon = result["horizon_trained"]
    bound = "at least " if result["horizon_trained_is_lower_bound"] else ""
    if horizon >= 0:
        ax.axvline(horizon, color="tab:red", lw=1.5)
        right_half = lags and horizon > (min(lags) + max(lags)) / 2  # the label on the side with room
        ax.annotate(f"memory horizon = {bound}{horizon}", (horizon, 0.05), xytext=(-4 if right_half else 4, 0),
                    textcoords="offset points", color="tab:red", ha="right" if right_half else "left")
    else:
        ax.text(0.02, 0.05, "memory horizon: none (lag 0 below 0.9)", color="tab:red", transform=ax.transAxes)
    ax.set(xlabel="lag k (steps back)", ylabel="held-out balanced accuracy", ylim=(0, 1.05), title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)  # beside the data, not on it
    fig.text(0.01, 0.01, f"Reads {result['reads']}. Horizon: largest h with accuracy >= 0.9 at every lag 0..h.",
             fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["plot_probe", "probe_run", "write_probe"]
