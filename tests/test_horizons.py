"""Horizon benches: the horizon rule on hand-made successes, the suite format (gaps, env_kwargs,
per-env hyperparameters), envs/horizon-smoke.yaml end to end (files, the table's shape, a resume
that reruns only the unfinished run), the unroll warning, and bad suites refused in one line."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from rlmem.bench import check_jobs, job_spec, load_agents, plan_jobs, read_result, run_bench
from rlmem.bench_summary import write_tables
from rlmem.cli import main
from rlmem.envs.registry import TASKS
from rlmem.horizons import gap_solved, horizon, horizon_text, memory_score
from rlmem.shipped import shipped_files
from rlmem.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "envs" / "horizon-smoke.yaml")
AGENTS = "ppo-lstm,ppo-gru"
RUNS = ["PassiveTMaze-v0-corridor_length2", "PassiveTMaze-v0-corridor_length4", "RepeatPrevious-v0-k1",
        "RepeatPrevious-v0-k2"]


# ---------------------------------------------------------------------- the rule
@pytest.mark.parametrize("solved, expected", [
    ([True, True, False, True], 2),      # a later success does not count past a failure
    ([True, True, True, True], 8),
    ([False, True, True, True], None),   # not even the smallest gap
    ([True, None, True, True], 1),       # a gap not run stops the horizon too
])
def test_the_horizon_is_the_largest_gap_with_every_smaller_gap_solved(solved, expected):
    assert horizon([1, 2, 4, 8], solved) == expected


def test_memory_score_gap_solved_and_the_text_of_a_horizon():
    assert memory_score([True, True, False, True]) == 0.75 and memory_score([True, None]) == 0.5
    assert gap_solved([True, False]) and not gap_solved([True, False, False]) and gap_solved([]) is None
    assert horizon_text([10, 30, 100], [True, False, True]) == "10"
    assert horizon_text([10, 30, 100], [True, True, True]) == ">= 100"
    assert horizon_text([10, 30, 100], [False, True, True]) == "< 10"


def test_the_summary_applies_the_rule_to_hand_made_results(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump({"envs": [
        {"id": "rlmem/PassiveTMaze-v0", "gaps": [1, 2, 4, 8], "steps": 100, "threshold": 0.9},
        {"id": "rlmem/RepeatFirst-v0", "gaps": [3, 6], "steps": 100, "threshold": 0.9}]}))
    suite = load_suite(path)
    wins = {"a": [True, True, False, True, True, False], "b": [False, True, True, True, False, False]}
    results = []
    for agent, pattern in wins.items():
        for env, win in zip(suite.envs, pattern, strict=True):
            for seed in range(2):
                job = {"env": env.id, "name": env.name, "gap": env.gap, "gap_parameter": env.gap_parameter,
                       "agent": agent, "seed": seed, "run_dir": str(tmp_path / env.slug / agent / f"seed{seed}")}
                ret = 1.0 if win else env.chance
                results.append((job, {"mean_return": ret, "std_return": 0.0, "chance_return": env.chance,
                                      "normalised_return": 1.0 if win else 0.0, "threshold": 0.9, "success": win,
                                      "steps": 100, "steps_to_threshold": None, "wall_clock_s": 1.0,
                                      "env_steps_per_s": 1.0, "learning_curve": [], "recall": []}))
    write_tables(suite, ["a", "b"], 2, tmp_path, results, [], len(results))
    rows = {(r["agent"], r["family"]): r for r in csv.DictReader((tmp_path / "horizons.csv").open())}
    assert rows[("a", "PassiveTMaze")]["horizon"] == "2" and rows[("a", "PassiveTMaze")]["memory_score"] == "0.75"
    assert rows[("a", "RepeatFirst")]["horizon_text"] == "3"
    assert rows[("b", "PassiveTMaze")]["horizon"] == "" and rows[("b", "PassiveTMaze")]["horizon_text"] == "< 1"
    assert rows[("b", "RepeatFirst")]["solved"] == "0 0"
    md = (tmp_path / "summary.md").read_text()
    table = md.split("## Horizons", 1)[1].split("Memory score", 1)[0]
    assert "| agent | PassiveTMaze (corridor_length) | RepeatFirst (length) |" in table
    assert "| a | 2 | 3 |" in table and "| b | < 1 | < 3 |" in table
    assert "| a | 0.75 (3/4) | 0.50 (1/2) |" in md


# ---------------------------------------------------------------------- the tasks' gaps
@pytest.mark.parametrize("task", sorted({c.task_class for c in TASKS.values() if c.gap_parameter},
                                        key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_the_gap_facts_agree_with_the_task(task):
    for level in task.LEVELS:
        env = TASKS[f"rlmem/{task.__name__}{level}-v0"](num_envs=1)
        gap = getattr(env, task.gap_parameter)
        same = task(**env.gap_kwargs(gap))
        assert same.max_episode_steps == env.max_episode_steps
        assert all(getattr(same, key) == value for key, value in env.level_settings.items())
        assert getattr(task(**env.gap_kwargs(gap + 3)), task.gap_parameter) == gap + 3


def test_the_suite_format_gaps_env_kwargs_and_hyperparameters_per_env_and_agent(tmp_path):
    suite = load_suite(SMOKE)
    assert [e.slug for e in suite.envs] == RUNS
    assert [e.steps for e in suite.envs] == [1024, 1024, 1024, 2048]
    assert suite.envs[2].env_kwargs == {"length": 9, "k": 1, "num_symbols": 4}  # 8 scored steps at every k
    assert {f: [e.gap for e in envs] for f, envs in suite.families.items()} == {"PassiveTMaze": [2, 4],
                                                                                "RepeatPrevious": [1, 2]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"envs": [{"id": "rlmem/PassiveTMaze-v0", "gaps": [3], "steps": 10,
                                              "threshold": 0.9, "hyperparameters": {
                                                  "ppo": {"n_steps": 128, "memory_options": {"a": 1}},
                                                  "ppo-gru": {"n_steps": 256, "memory_options": {"b": 2}}}}]}))
    env = load_suite(path).envs[0]
    assert env.hyperparameters_for("ppo", "ppo-lstm") == {"n_steps": 128, "memory_options": {"a": 1}}
    assert env.hyperparameters_for("ppo", "ppo-gru") == {"n_steps": 256, "memory_options": {"a": 1, "b": 2}}
    assert env.hyperparameters_for("dqn", "dqn-lstm") == {}


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("horizon") / "smoke"
    lines: list[str] = []
    assert run_bench(SMOKE, AGENTS, 1, out, echo=lambda *a, **k: lines.append(" ".join(map(str, a)))) == 0
    return out, lines


def test_a_horizon_bench_writes_a_run_per_gap_and_leads_its_summary_with_the_horizons(bench):
    out, lines = bench
    assert not any(line.startswith("warning") for line in lines)
    for run in RUNS:
        for agent in ("ppo-lstm", "ppo-gru"):
            run_dir = out / "runs" / run / agent / "seed0"
            for name in ("config.yaml", "eval.json", "result.json", "bench.log"):
                assert (run_dir / name).is_file(), run_dir / name
    config = yaml.safe_load((out / "runs" / RUNS[1] / "ppo-gru" / "seed0" / "config.yaml").read_text())
    assert config["env"] == "rlmem/PassiveTMaze-v0" and config["env_kwargs"] == {"corridor_length": 4}
    assert config["hyperparameters"]["n_steps"] == 32 and config["hyperparameters"]["n_envs"] == 16
    assert config["hyperparameters"]["memory"] == "gru"
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert sorted((r["gap_parameter"], r["gap"], r["agent"]) for r in rows) == sorted(
        (p, g, a) for p, g in [("corridor_length", "2"), ("corridor_length", "4"), ("k", "1"), ("k", "2")]
        for a in ("ppo-lstm", "ppo-gru"))
    horizons = list(csv.DictReader((out / "horizons.csv").open()))
    assert [(r["agent"], r["family"]) for r in horizons] == [(a, f) for a in ("ppo-lstm", "ppo-gru")
                                                             for f in ("PassiveTMaze", "RepeatPrevious")]
    for row in horizons:  # the rule, applied to the runs' own successes
        gaps = [int(g) for g in row["gaps"].split()]
        wins = {int(r["gap"]): r["success"] == "True" for r in rows if r["agent"] == row["agent"]
                and r["gap_parameter"] == row["gap_parameter"]}
        assert row["horizon_text"] == horizon_text(gaps, [wins[g] for g in gaps])
    md = (out / "summary.md").read_text()
    assert md.index("## Horizons") < md.index("## rlmem/PassiveTMaze-v0 corridor_length=2")
    table = md.split("## Horizons", 1)[1].split("Memory score", 1)[0]
    table_rows = [line for line in table.splitlines() if line.startswith("|")]
    assert table_rows[0] == "| agent | PassiveTMaze (corridor_length) | RepeatPrevious (k) |"
    assert [row.split(" | ")[0] for row in table_rows[2:]] == ["| ppo-lstm", "| ppo-gru"]
    assert "ppo: n_envs=16, n_steps=32" in md and "steps to threshold (training return)" in md
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["horizon.png", *sorted(f"learning_{run}.png" for run in RUNS)]


def test_an_interrupted_horizon_bench_reruns_only_the_unfinished_run(bench):
    out, _ = bench
    results = sorted(out.glob("runs/*/*/*/result.json"))
    assert len(results) == 8
    before = {p: p.stat().st_mtime_ns for p in results}
    unfinished = out / "runs" / RUNS[3] / "ppo-lstm" / "seed0" / "result.json"
    unfinished.unlink()
    lines: list[str] = []
    assert run_bench(SMOKE, AGENTS, 1, out, echo=lambda *a, **k: lines.append(" ".join(map(str, a)))) == 0
    assert "7 finished earlier (skipped), 1 to run" in lines[0]
    assert [line for line in lines if line.startswith("[")] == [
        next(line for line in lines if f"{RUNS[3]} ppo-lstm seed 0" in line)]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p != unfinished) and unfinished.is_file()


def test_a_run_counts_as_finished_only_with_the_settings_asked_for(bench, tmp_path):
    out, _ = bench
    jobs = plan_jobs(load_suite(SMOKE), load_agents(AGENTS), 1, out)
    assert all(read_result(job) is not None for job in jobs)
    changed = {**jobs[0], "hyperparameters": {**jobs[0]["hyperparameters"], "n_steps": 64}}
    assert read_result(changed) is None and read_result({**jobs[0], "env_kwargs": {"corridor_length": 3}}) is None
    # A result written before env_kwargs and hyperparameters were recorded ran with none: it still counts.
    old = tmp_path / "run"
    old.mkdir()
    job = {**jobs[0], "run_dir": str(old), "env_kwargs": {}, "hyperparameters": {}}
    ran = {k: job[k] for k in ("env", "agent", "seed", "steps", "eval_episodes", "recall")}
    (old / "result.json").write_text(json.dumps({"job": ran}))
    assert read_result(job) is not None


def test_envs_picks_a_family_by_id_or_one_gap_by_its_run_name(bench):
    out, _ = bench
    for pick, runs in [("rlmem/PassiveTMaze-v0", 4), (RUNS[1], 2), (f"{RUNS[1]},{RUNS[2]}", 4)]:
        lines: list[str] = []
        assert run_bench(SMOKE, AGENTS, 1, out, envs=pick, summary_only=True,
                         echo=lambda *a, **k: lines.append(str(a[0]))) == 0
        assert lines[0].startswith(f"bench horizon-smoke: {runs} runs; {runs} finished, 0 not"), lines[0]


# ---------------------------------------------------------------------- the unroll warning
def _suite(tmp_path, entries, name="s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"eval_episodes": 2, "envs": entries}))
    return path


def test_an_unroll_shorter_than_the_gap_gets_one_warning_line_per_env_and_agent(tmp_path):
    path = _suite(tmp_path, [{"id": "rlmem/PassiveTMaze-v0", "gaps": [10, 100], "steps": 64, "threshold": 0.9},
                             {"id": "rlmem/MemoryChain-v0", "gaps": [100], "steps": 64, "threshold": 0.9,
                              "hyperparameters": {"ppo": {"n_steps": 128}}}])
    lines: list[str] = []
    run_bench(path, AGENTS, 2, tmp_path / "out", summary_only=True, echo=lambda *a, **k: lines.append(str(a[0])))
    warnings = [line for line in lines if line.startswith("warning")]
    assert len(warnings) == 2  # corridor 100 for each agent; not corridor 10, not MemoryChain at n_steps 128
    for agent, line in zip(("ppo-lstm", "ppo-gru"), warnings, strict=True):
        assert line.startswith(f"warning: rlmem/PassiveTMaze-v0 corridor_length=100: {agent}'s unroll of 64 steps "
                               "(n_steps 64) is not longer than the gap it must learn (corridor_length 100)"), line


def test_the_shipped_suites_give_every_shipped_agent_an_unroll_longer_than_each_gap(tmp_path):
    agents = load_agents(",".join(shipped_files("agents")))
    assert any(name.startswith("ppo-") for name in agents) and "dqn-lstm" in agents
    for name in shipped_files("envs"):
        jobs = plan_jobs(load_suite(name), agents, 1, tmp_path)
        assert check_jobs(jobs) == [], name
        for job in jobs:  # and PPO's credit reaches over the gap, as the suites' comments say
            spec = job_spec(job)
            if job["gap"] is not None and "gae_lambda" in spec.hyperparameters:
                h = spec.hyperparameters
                assert (h["gamma"] * h["gae_lambda"]) ** job["gap"] >= 2e-3, (name, job["name"], job["agent"])


# ---------------------------------------------------------------------- bad input
TMAZE = {"id": "rlmem/PassiveTMaze-v0", "gaps": [10, 30], "steps": 100, "threshold": 0.9}


@pytest.mark.parametrize("entries, message", [
    ([{**TMAZE, "id": "rlmem/PassiveTmaze-v0"}],
     "envs[0].id: unknown env id 'rlmem/PassiveTmaze-v0'; did you mean 'rlmem/PassiveTMaze-v0'"),
    ([{**TMAZE, "gaps": [30, 10]}], "envs[0].gaps must be increasing (each corridor_length larger than the one "
     "before), got [30, 10] (env rlmem/PassiveTMaze-v0)"),
    ([{**TMAZE, "gaps": [10, 10]}], "envs[0].gaps must be increasing"),
    ([TMAZE, {**TMAZE, "gaps": [20]}], "envs[1].gaps: gap 20 of PassiveTMaze is not larger than envs[0]'s gap 30 "
     "(a family's gaps increase through the suite) (env rlmem/PassiveTMaze-v0)"),
    ([{**TMAZE, "gaps": [0, 10]}], "envs[0].gaps must be a list of int >= 1, got int 0 in it"),
    ([{**TMAZE, "steps": 0}], "envs[0].steps must be >= 1, got 0 (env rlmem/PassiveTMaze-v0)"),
    ([{**TMAZE, "steps": 2.5}], "envs[0].steps must be int, got float 2.5 (env rlmem/PassiveTMaze-v0)"),
    ([{**TMAZE, "steps": [100, -5]}], "envs[0].steps[1] must be a positive integer (env-steps), got int -5 "
     "(env rlmem/PassiveTMaze-v0)"),
    ([{**TMAZE, "steps": [100]}], "envs[0].steps lists 1 budgets for 2 gaps"),
    ([{**TMAZE, "hyperparameters": {"ppo": {"n_stepz": 128}}}], "envs[0].hyperparameters.ppo: unknown "
     "hyperparameter 'n_stepz' for ppo; did you mean 'n_steps'? (env rlmem/PassiveTMaze-v0)"),
    ([{**TMAZE, "hyperparameters": {"dqn-lstm": {"n_steps": 128}}}], "envs[0].hyperparameters.dqn-lstm: unknown "
     "hyperparameter 'n_steps' for dqn"),
    ([{**TMAZE, "hyperparameters": {"ppo-lstn": {"n_steps": 128}}}], "envs[0].hyperparameters: 'ppo-lstn' names no "
     "algo (ppo, dqn, pqn, sb3-ppo-lstm), no agent of this bench (ppo-lstm) and no shipped preset; did you mean"),
    ([{**TMAZE, "hyperparameters": {"ppo": {"n_minibatches": 3}}}], "envs[0] (rlmem/PassiveTMaze-v0 "
     "corridor_length=10), agent ppo-lstm: n_minibatches (3) must divide n_envs (64)"),
    ([{**TMAZE, "hyperparameters": {"ppo": 128}}], "envs[0].hyperparameters.ppo must be a mapping"),
    ([{**TMAZE, "id": "rlmem/MaskedCartPoleEasy-v0"}], "envs[0].gaps: rlmem/MaskedCartPoleEasy-v0 has no gap to "
     "sweep (tasks with one: "),
    ([{**TMAZE, "env_kwargs": {"corridor": 3}}], "envs[0].env_kwargs {'corridor': 3} do not fit rlmem/PassiveTMaze-v0"),
    ([{**TMAZE, "env_kwargs": {"corridor_length": 3}}], "envs[0].env_kwargs sets corridor_length, which gaps sweeps"),
    ([{**TMAZE, "recall": [5]}], "envs[0].recall sweeps the level's own settings, so it cannot go with gaps"),
    ([{**TMAZE, "gaps": "10"}], "envs[0].gaps must be list, got str '10'"),
])
def test_a_bad_horizon_suite_fails_in_one_line_naming_the_file_and_the_entry(tmp_path, capsys, entries, message):
    path = _suite(tmp_path, entries, "bad.yaml")
    assert main(["bench", "--suite", str(path), "--agents", "ppo-lstm", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"rlmem: error: {path}: "), err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_an_unknown_agent_fails_before_any_run(tmp_path, capsys):
    assert main(["bench", "--suite", SMOKE, "--agents", "ppo-lstm,ppo-lstn", "--out", str(tmp_path / "out")]) == 2
    assert "preset 'ppo-lstn' not found; shipped presets: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
