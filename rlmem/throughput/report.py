"""The benchmark's report: its tables, summary lines and headline ratios, from the results dict.

How to read them: docs/benchmarks.md, "How ``rlmem throughput`` measures".
"""

from __future__ import annotations

from typing import Any

from rlmem.memory import UNROLL_MODES
from rlmem.throughput.settings import (
    ALL_SECTIONS, DEFAULT_LEARN_THRESHOLD, DEFAULT_SECTIONS, MIB, REFERENCE_NUM_ENVS, TARGET_LEARN_SECONDS,
    TARGET_RATIO, TARGET_TRAIN_RATIO, TRAIN_ENV_ID, UNROLL_MEMORIES, UNROLL_PATTERNS,
)
from rlmem.throughput.unroll import unroll_comparisons


def fmt_rate(value: float | None) -> str:
    """An env-steps/s (or samples/s) figure as ``1,234,567``; ``-`` where not measured."""
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(num: float | None, den: float | None) -> str:
    """``num / den`` as ``12.3x``; ``-`` where either was not measured."""
    return "-" if num is None or den is None else f"{num / den:,.1f}x"


def format_table(results: dict[str, Any]) -> str:
    """The env-throughput table: one line per (device, N)."""
    env_rows = [r for r in results["rows"] if r["what"] == "env"]
    rlmem = {(r["device"], r["num_envs"]): r["steps_per_s"] for r in env_rows if r["impl"] == "rlmem"}
    popgym = {r["num_envs"]: r["steps_per_s"] for r in env_rows if r["impl"] == "popgym"}
    devices = results["config"]["devices"]
    keys: list[tuple[str, int]] = []
    for device in devices:
        sizes = {n for d, n in rlmem if d == device}
        if device == "cpu":
            sizes |= set(popgym)
        keys += [(device, n) for n in sorted(sizes)]
    shown = {n for _, n in keys}
    keys += [("cpu", n) for n in sorted(set(popgym) - shown)]  # popgym sizes with no rlmem row
    header = ("device", "N", "rlmem env-steps/s", "popgym env-steps/s", "rlmem/popgym")
    lines = [header]
    for device, n in keys:
        mine, theirs = rlmem.get((device, n)), popgym.get(n)
        lines.append((device, f"{n:,}", fmt_rate(mine), fmt_rate(theirs), fmt_ratio(mine, theirs)))
    out = _table(lines, 1)
    if popgym and any(d != "cpu" for d, _ in keys):
        out.append("(popgym runs on the CPU with numpy on every row; its ratio on a cuda row "
                   "compares the GPU batch against it)")
    return "\n".join(out)


def headline_ratio(results: dict[str, Any]) -> float | None:
    """rlmem/popgym env-steps/s at N=4096 on the CPU, or None if either was not measured."""
    rows = [r for r in results["rows"] if r["what"] == "env" and r["num_envs"] == REFERENCE_NUM_ENVS]
    mine = [r["steps_per_s"] for r in rows if r["impl"] == "rlmem" and r["device"] == "cpu"]
    theirs = [r["steps_per_s"] for r in rows if r["impl"] == "popgym"]
    if not mine or not theirs:
        return None
    return mine[0] / theirs[0]


def fmt_mib_per_env(row: dict[str, Any] | None) -> str:
    """A row's peak device memory per env in MiB; "n/a on cpu" where torch counts none."""
    if row is None:
        return "-"
    per_env = row.get("peak_memory_bytes_per_env")
    if per_env is None:
        return "n/a on cpu" if row["device"] == "cpu" else "-"
    return f"{per_env / MIB:,.4f}"


def fmt_memory_note(row: dict[str, Any]) -> str:
    """`` peak 123.4 MiB (0.0019 MiB/env)`` on CUDA, nothing on the CPU (progress lines)."""
    if row.get("peak_memory_bytes") is None:
        return ""
    return f", peak {row['peak_memory_bytes'] / MIB:,.1f} MiB ({fmt_mib_per_env(row)} MiB/env)"


def _sb3_for(sb3: dict[tuple[str, int], dict[str, Any]], device: str, num_envs: int) -> dict[str, Any] | None:
    """The sb3 row to compare an rlmem row of ``device`` at ``num_envs`` with: at that N, sb3 on
    the same device if it was measured there, else on the first device it ran on; None if none."""
    if (device, num_envs) in sb3:
        return sb3[(device, num_envs)]
    return next((r for (_, n), r in sb3.items() if n == num_envs), None)


def format_train_table(results: dict[str, Any]) -> str:
    """The training table: one line per (impl, device, N), rlmem's with its ratio to sb3."""
    rows = [r for r in results["rows"] if r["what"] == "train"]
    sb3 = {(r["device"], r["num_envs"]): r for r in rows if r["impl"] == "sb3"}
    order = {"rlmem": 0, "sb3": 1}
    devices = results["config"]["devices"]
    rows = sorted(rows, key=lambda r: (r["num_envs"], order.get(r["impl"], 2),
                                       devices.index(r["device"]) if r["device"] in devices else 0))
    header = ("impl", "device", "N", "env-steps/s", "peak MiB/env", "rlmem/sb3")
    lines = [header]
    for r in rows:
        ratio = "-"
        if r["impl"] == "rlmem":
            theirs = _sb3_for(sb3, r["device"], r["num_envs"])
            if theirs is not None:
                ratio = fmt_ratio(r["steps_per_s"], theirs["steps_per_s"])
                ratio += "" if theirs["device"] == r["device"] else f" (sb3 on {theirs['device']})"
        lines.append((r["impl"], r["device"], f"{r['num_envs']:,}", fmt_rate(r["steps_per_s"]),
                      fmt_mib_per_env(r), ratio))
    out = _table(lines, 2)
    if sb3:
        out.append("(sb3-contrib's env is an rlmem CPU batch on every row; its policy runs on the row's device; "
                   "rlmem/sb3 compares with sb3 at the same N, on the same device unless noted)")
    return "\n".join(out)


def summary_lines(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per (device, N) with an env, rollout or train row of rlmem: the figures of those
    rows and train / sb3 (sb3 at that N, else at its largest measured N below it; on the same
    device if it ran there, else where it ran)."""
    rows = results["rows"]
    mine = {(r["what"], r["device"], r["num_envs"]): r for r in rows
            if r["what"] in ALL_SECTIONS and r["impl"] == "rlmem"}  # unroll rows have no impl
    sb3 = {(r["device"], r["num_envs"]): r for r in rows if r["what"] == "train" and r["impl"] == "sb3"}
    devices = list(results["config"]["devices"])
    keys = sorted({(d, n) for _, d, n in mine}, key=lambda k: (devices.index(k[0]) if k[0] in devices else
                                                               len(devices), k[1]))
    out = []
    for device, n in keys:
        env, rollout, train = (mine.get((what, device, n)) for what in ALL_SECTIONS)
        line: dict[str, Any] = {
            "device": device, "num_envs": n,
            "env_steps_per_s": env["steps_per_s"] if env else None,
            "rollout_steps_per_s": rollout["steps_per_s"] if rollout else None,
            "train_steps_per_s": train["steps_per_s"] if train else None,
            "rollout_peak_memory_bytes_per_env": rollout.get("peak_memory_bytes_per_env") if rollout else None,
            "train_peak_memory_bytes_per_env": train.get("peak_memory_bytes_per_env") if train else None,
            "sb3_steps_per_s": None, "sb3_device": None, "sb3_num_envs": None, "train_over_sb3": None,
        }
        if train is not None and sb3:
            smaller = [m for _, m in sb3 if m <= n]
            theirs = _sb3_for(sb3, device, max(smaller)) if smaller else None
            if theirs is not None:
                line.update(sb3_steps_per_s=theirs["steps_per_s"], sb3_device=theirs["device"],
                            sb3_num_envs=theirs["num_envs"],
                            train_over_sb3=train["steps_per_s"] / theirs["steps_per_s"])
        out.append(line)
    return out


def format_summary_table(results: dict[str, Any]) -> str:
    """The summary: one line per (device, N) of the env, rollout and train figures, peak device
    memory per env and train / sb3, the sb3 figure's device and N named."""
    lines = [("device", "N", "env-only steps/s", "rollout steps/s", "train steps/s",
              "peak MiB/env rollout", "peak MiB/env train", "train/sb3", "sb3 at (device, N)")]
    for s in results["summary"].get("table") or summary_lines(results):
        def mib(value: float | None, measured: bool) -> str:
            if not measured:
                return "-"
            if value is None:
                return "n/a on cpu" if s["device"] == "cpu" else "-"
            return f"{value / MIB:,.4f}"
        at = "-" if s["sb3_num_envs"] is None else f"{s['sb3_device']}, {s['sb3_num_envs']:,}"
        lines.append((s["device"], f"{s['num_envs']:,}", fmt_rate(s["env_steps_per_s"]),
                      fmt_rate(s["rollout_steps_per_s"]), fmt_rate(s["train_steps_per_s"]),
                      mib(s["rollout_peak_memory_bytes_per_env"], s["rollout_steps_per_s"] is not None),
                      mib(s["train_peak_memory_bytes_per_env"], s["train_steps_per_s"] is not None),
                      fmt_ratio(s["train_steps_per_s"], s["sb3_steps_per_s"]), at))
    out = ["Summary (env-steps/s; peak = torch.cuda.max_memory_allocated over building and running the agent)"]
    out += _table(lines, 1)
    if any(s["sb3_num_envs"] is not None and s["sb3_num_envs"] != s["num_envs"]
           for s in results["summary"].get("table") or []):
        out.append("(train/sb3 divides by sb3-contrib at the N in the last column: where sb3 was not measured at "
                   "the row's N (--sb3-max-num-envs), by its figure at the largest N it was measured at below it)")
    return "\n".join(out)


def train_headline(results: dict[str, Any], baseline: str = "sb3") -> tuple[float | None, int | None]:
    """rlmem/sb3 end-to-end env-steps/s on the CPU at the first N of --train-num-envs where
    both were measured, and that N; ``(None, None)`` if there is none."""
    rows = [r for r in results["rows"] if r["what"] == "train" and r["device"] == "cpu"]
    mine = {r["num_envs"]: r["steps_per_s"] for r in rows if r["impl"] == "rlmem"}
    theirs = {r["num_envs"]: r["steps_per_s"] for r in rows if r["impl"] == baseline}
    train = results.get("config", {}).get("train", {})
    sizes = train.get("num_envs_by_device", {}).get("cpu") or train.get("num_envs") or sorted(mine)
    for n in sizes:
        if n in mine and n in theirs:
            return mine[n] / theirs[n], n
    return None, None


def _table(lines: list[tuple[str, ...]], left: int) -> list[str]:
    """Aligned text rows: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for j, line in enumerate(lines):
        cells = [c.ljust(w) for c, w in zip(line[:left], widths[:left])]
        cells += [c.rjust(w) for c, w in zip(line[left:], widths[left:])]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def format_unroll_table(results: dict[str, Any]) -> str:
    """The unroll table: one line per (device, memory, hidden, pattern, N), both modes' rates,
    which mode is faster and by how much."""
    rows = [r for r in results["rows"] if r["what"] == "unroll"]
    rates = {(r["device"], r["memory"], r["hidden_size"], r["pattern"], r["num_envs"], r["mode"]):
             r["samples_per_s"] for r in rows}
    devices = results["config"]["devices"]

    def order(c: dict[str, Any]) -> tuple:
        return (devices.index(c["device"]) if c["device"] in devices else 0,
                UNROLL_MEMORIES.index(c["memory"]) if c["memory"] in UNROLL_MEMORIES else 9,
                c["hidden_size"], UNROLL_PATTERNS.index(c["pattern"]), c["num_envs"])

    header = ("device", "memory", "pattern", "H", "N", "pieces", "chunked samples/s",
              "per_step samples/s", "faster", "max |chunked - per_step|")
    lines = [header]
    for c in sorted(unroll_comparisons(rows), key=order):
        key = (c["device"], c["memory"], c["hidden_size"], c["pattern"], c["num_envs"])
        lines.append((c["device"], c["memory"], c["pattern"], str(c["hidden_size"]), f"{c['num_envs']:,}",
                      str(c["chunked_pieces"]), fmt_rate(rates[(*key, "chunked")]),
                      fmt_rate(rates[(*key, "per_step")]), f"{c['faster']} {c['speedup']:,.2f}x",
                      f"{c['max_abs_diff_vs_per_step']:.1e}"))
    seq_len = results["config"]["unroll"]["seq_len"]
    out = _table(lines, 3)
    out.append(f"(forward + backward of one {seq_len}-step unroll of N sequences per call; samples = "
               f"{seq_len} * N; pieces = RNN calls of the chunked unroll, per_step makes {seq_len})")
    return "\n".join(out)


def _env_name(env_id: str) -> str:
    """``rlmem/RepeatPreviousEasy-v0`` -> ``RepeatPreviousEasy``."""
    name = env_id.rsplit("/", 1)[-1]
    stem, sep, version = name.rpartition("-v")
    return stem if sep and version.isdigit() else name


def format_learn_row(row: dict[str, Any]) -> str:
    """One line for one seed's ``learn`` row."""
    head = f"  learn  {row['device']:<6} {_env_name(row['env'])} seed {row['seed']}: "
    if row["seconds_to_threshold"] is None:
        last = row["last_episodic_return"]
        last = "-" if last is None else f"{last:.3f}"
        body = (f"{row['threshold']:g} not reached within {row['num_timesteps']:,} env-steps "
                f"({row['train_seconds']:.1f} s, last training return {last})")
    else:
        body = (f"{row['threshold']:g} reached in {row['seconds_to_threshold']:.1f} s "
                f"({row['steps_to_threshold']:,} env-steps, {row['iterations_to_threshold']} "
                f"iteration{'s' if row['iterations_to_threshold'] != 1 else ''})")
    return head + body + f"; eval return {row['eval_mean_return']:.3f} ({row['eval_episodes']} episodes)"


def learn_summary_lines(results: dict[str, Any]) -> list[str]:
    """One line per device: the median seconds to the threshold over the seeds."""
    lines = []
    for r in results["rows"]:
        if r["what"] != "learn" or r["aggregate"] != "median":
            continue
        k = len(r["seeds"])
        where = "" if r["device"] == "cpu" else f" on {r['device']}"
        head = f"{_env_name(r['env'])} to {r['threshold']:g}{where}: "
        reached = "" if r["reached_seeds"] == k else f", {r['reached_seeds']} of {k} reached it"
        target = (r["env"] == TRAIN_ENV_ID and r["threshold"] == DEFAULT_LEARN_THRESHOLD
                  and r["device"] == "cpu")
        if r["seconds_to_threshold"] is None:
            line = (f"{head}median not reached within {r['budget']:,} env-steps over {k} "
                    f"seed{'s' if k != 1 else ''}{reached}")
        else:
            line = (f"{head}median {r['seconds_to_threshold']:.1f} s over {k} "
                    f"seed{'s' if k != 1 else ''}{reached}")
        if target:
            line += f" (target: well under {TARGET_LEARN_SECONDS:.0f} s on 2 CPU cores)"
        lines.append(line)
    return lines


def unroll_summary_line(results: dict[str, Any]) -> str:
    """How many settings each unroll mode wins, by how much, and the largest output difference."""
    comparisons = results["summary"].get("unroll_faster") or []
    if not comparisons:
        return "memory unroll: not measured"
    parts = []
    for mode in UNROLL_MODES:
        wins = [c["speedup"] for c in comparisons if c["faster"] == mode]
        if wins:
            by = (f"{min(wins):,.2f}x" if len(wins) == 1
                  else f"{min(wins):,.2f}x to {max(wins):,.2f}x")
            parts.append(f"{mode} faster in {len(wins)} of {len(comparisons)} settings (by {by})")
    worst = max(c["max_abs_diff_vs_per_step"] for c in comparisons)
    return (f"memory unroll (forward + backward): {'; '.join(parts)}; "
            f"largest |chunked - per_step| output difference {worst:.1e}")


def format_summary(results: dict[str, Any]) -> str:
    """The closing lines: the headline ratios against their targets, the machine, unroll and learn results."""
    m = results["machine"]
    what = results["config"].get("what", list(DEFAULT_SECTIONS))
    lines = []
    if "env" in what:
        ratio = results["summary"]["rlmem_over_popgym_cpu_n4096"]
        if ratio is None:
            lines.append(f"rlmem/popgym at N={REFERENCE_NUM_ENVS:,} on cpu: not measured (needs cpu, "
                         f"N={REFERENCE_NUM_ENVS} in --num-envs and --popgym-num-envs, and popgym)")
        else:
            lines.append(f"rlmem/popgym at N={REFERENCE_NUM_ENVS:,} on cpu: {ratio:,.1f}x "
                         f"(target >= {TARGET_RATIO:.0f}x on 2 CPU cores)")
    machine = (f"torch {m['torch_version']}, torch threads: {m['num_threads']}, "
               f"CPUs: {m['cpu_count']} ({m['cpu_model']}), date: {m['date']}")
    if "load_avg_1m" in m:
        machine += f", load average: {m['load_avg_1m']:.2f}"
    if "cuda_devices" in m:
        machine += ", GPU: " + ", ".join(f"{d}={name}" for d, name in m["cuda_devices"].items())
    lines.append(machine)
    if "train" in what:
        ratio = results["summary"]["ppo_over_sb3_train_cpu"]
        prefix = "rlmem PPO / sb3-contrib RecurrentPPO end-to-end on cpu"
        if ratio is None:
            lines.append(f"{prefix}: not measured (needs cpu in --device, sb3-contrib on cpu "
                         "(--sb3-device), and an N in --train-num-envs up to --sb3-max-num-envs)")
        else:
            n = results["summary"]["ppo_over_sb3_train_num_envs"]
            n_steps = results["config"]["train"]["hyperparameters"]["n_steps"]
            lines.append(f"{prefix}: {ratio:,.1f}x (target >= {TARGET_TRAIN_RATIO:.0f}x on 2 CPU "
                         f"cores; N={n:,}, n_steps={n_steps})")
        defaults = results["summary"].get("ppo_over_sb3_defaults_train_cpu")
        if defaults is not None:
            lines.append(f"rlmem PPO (its defaults) / sb3-contrib RecurrentPPO (its defaults) end-to-end on cpu: "
                         f"{defaults:,.1f}x")
    if "unroll" in what:
        lines.append(unroll_summary_line(results))
    if "learn" in what:
        lines.extend(learn_summary_lines(results))
    return "\n".join(lines)
