"""`rlmem bench`: envs/smoke.yaml run in two slices (one on two worker processes) merges into one
summary with a row per (env, agent, seed); a rerun skips the finished runs and reruns only an
unfinished one; bad suites and presets fail in one line naming the file and the key."""

import csv
from pathlib import Path

import pytest
import yaml

from rlmem.bench import chance_return, load_suite, run_bench
from rlmem.cli import main
from rlmem.shipped import shipped_files
from rlmem.envs.registry import TASKS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "envs" / "smoke.yaml")
AGENTS = "ppo-lstm,ppo-gru"
ENVS = ["RepeatPreviousEasy-v0", "PassiveTMazeEasy-v0"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The smoke suite, 2 envs x 2 agents x 1 seed, run as slice 1/2 on 2 workers then slice 2/2 on 1."""
    out = tmp_path_factory.mktemp("bench") / "smoke"
    lines: list[str] = []

    def echo(*args, **kwargs):
        lines.append(" ".join(map(str, args)))

    assert run_bench(SMOKE, AGENTS, 1, out, workers=2, shard="1/2", echo=echo) == 0
    first_slice = (out / "summary.csv").read_text()
    assert run_bench(SMOKE, AGENTS, 1, out, workers=1, shard="2/2", echo=echo) == 0
    return out, lines, first_slice


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "summary.csv").open()))


def test_slices_merge_into_one_summary_with_a_row_per_env_agent_and_seed(bench):
    out, lines, first_slice = bench
    assert len(first_slice.strip().splitlines()) == 1 + 2  # slice 1/2: every other run
    rows = _rows(out)
    keys = sorted((r["env"], r["agent"], int(r["seed"])) for r in rows)
    assert keys == sorted((f"rlmem/{e}", a, s) for e in ENVS for a in ("ppo-lstm", "ppo-gru") for s in (0,))
    for row in rows:
        chance = float(row["chance_return"])
        expected = (float(row["mean_return"]) - chance) / (1 - chance)
        assert float(row["normalised_return"]) == pytest.approx(expected, abs=1e-3)
        assert int(row["steps"]) >= 4096 and float(row["env_steps_per_s"]) > 0
        assert row["success"] == str(float(row["mean_return"]) >= 0.9)
    assert any("slice 1/2 of 4" in line for line in lines) and any("[2/2]" in line for line in lines)


def test_every_file_is_written(bench):
    out, _, _ = bench
    for env in ENVS:
        for agent in ("ppo-lstm", "ppo-gru"):
            for seed in (0,):
                run = out / "runs" / env / agent / f"seed{seed}"
                for name in ("config.yaml", "eval.json", "result.json", "bench.log", "checkpoints/final.pt"):
                    assert (run / name).is_file(), run / name
                assert list(run.glob("events.out.tfevents.*"))
    md = (out / "summary.md").read_text()
    assert "Finished runs: 4 of 4" in md and "Not run" not in md
    for text in ("## rlmem/RepeatPreviousEasy-v0", "## rlmem/PassiveTMazeEasy-v0", "| ppo-lstm | 1 |",
                 "| ppo-gru | 1 |", "| agent | lag 2 | lag 4 |", "## Across the suite"):
        assert text in md, text
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["learning_PassiveTMazeEasy-v0.png", "learning_RepeatPreviousEasy-v0.png",
                     "normalised_return.png", "recall_RepeatPreviousEasy-v0.png"]


def test_a_rerun_skips_finished_runs_and_reruns_only_the_unfinished_one(bench):
    out, _, _ = bench
    results = sorted(out.glob("runs/*/*/*/result.json"))
    assert len(results) == 4
    before = {p: p.stat().st_mtime_ns for p in results}
    # An interrupted run: its directory is there (config, checkpoint) but not its result.json.
    unfinished = out / "runs" / "PassiveTMazeEasy-v0" / "ppo-gru" / "seed0" / "result.json"
    unfinished.unlink()
    lines = []
    assert run_bench(SMOKE, AGENTS, 1, out, echo=lambda *a, **k: lines.append(" ".join(map(str, a)))) == 0
    assert "3 finished earlier (skipped), 1 to run" in lines[0]
    assert [line for line in lines if line.startswith("[")] == [
        next(line for line in lines if "PassiveTMazeEasy-v0 ppo-gru seed 0" in line)]
    for path, mtime in before.items():
        if path != unfinished:
            assert path.stat().st_mtime_ns == mtime, f"{path} was rerun"
    assert unfinished.is_file() and len(_rows(out)) == 4
    # A summary-only call runs nothing.
    lines.clear()
    assert run_bench(SMOKE, AGENTS, 1, out, summary_only=True, echo=lambda *a, **k: lines.append(str(a[0]))) == 0
    assert not any(line.startswith("[") for line in lines)


def test_memory_probes_suite_covers_every_task_and_level():
    suite = load_suite(ROOT / "envs" / "memory-probes.yaml")
    levels = sorted(i for i in TASKS if i.endswith(("Easy-v0", "Medium-v0", "Hard-v0")))
    assert sorted(e.id for e in suite.envs) == levels
    for env in suite.envs:
        assert env.steps >= 100_000 and 0 < env.threshold <= 1
    recall = {e.id for e in suite.envs if e.recall}
    assert {f"rlmem/{t}{lvl}-v0" for t in ("RepeatPrevious", "PassiveTMaze", "MemoryChain")
            for lvl in ("Easy", "Medium", "Hard")} == recall


@pytest.mark.parametrize("env_id, chance", [
    ("rlmem/RepeatPreviousEasy-v0", -0.5), ("rlmem/PassiveTMazeHard-v0", 0.5), ("rlmem/MemoryChainEasy-v0", 0.0),
    ("rlmem/CountRecallEasy-v0", 2 / 27 - 1), ("rlmem/MultiarmedBanditEasy-v0", 0.55),
])
def test_chance_returns_follow_the_task_docstrings(env_id, chance):
    assert chance_return(env_id) == pytest.approx(chance)


# ---------------------------------------------------------------------- bad input
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rlmem: error: "), err
    return err


@pytest.mark.parametrize("suite, message", [
    ({"envs": [{"id": "rlmem/RepeatPreviousEasy-v1", "steps": 10, "threshold": 0.9}]},
     "envs[0].id: unknown env id 'rlmem/RepeatPreviousEasy-v1'; did you mean 'rlmem/RepeatPreviousEasy-v0'"),
    ({"envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "stepz": 10, "threshold": 0.9}]},
     "envs[0]: unknown key 'stepz'; did you mean 'steps'?"),
    ({"envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "steps": "10k", "threshold": 0.9}]},
     "envs[0].steps must be int, got str '10k'"),
    ({"envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "steps": 10, "threshold": 0.9, "recall": [2, "x"]}]},
     "envs[0].recall must be a list of int >= 1, got str 'x' in it"),
    ({"envs": [{"id": "rlmem/MaskedCartPoleEasy-v0", "steps": 10, "threshold": 0.9, "recall": [2]}]},
     "envs[0].recall: 'rlmem/MaskedCartPoleEasy-v0' has no lag to sweep"),
    ({"envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "threshold": 0.9}]}, "envs[0]: missing key 'steps'"),
    ({"eval_episodez": 5, "envs": []}, "unknown key 'eval_episodez'; did you mean 'eval_episodes'"),
    ({"eval_episodes": 2.5, "envs": []}, "eval_episodes must be int, got float 2.5"),
])
def test_a_bad_suite_fails_in_one_line_naming_the_file_and_the_key(tmp_path, capsys, suite, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["bench", "--suite", str(path), "--agents", "ppo-lstm", "--out", str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys)
    assert f"{path}: " in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_probe_of_a_bench_directory_points_to_its_runs(bench, capsys):
    out, _, _ = bench
    assert main(["probe", str(out)]) == 2
    assert "is a bench directory, not a run; probe one of its runs, e.g. " in _one_line_error(capsys)


def test_agents_naming_a_missing_preset_lists_the_available_ones(tmp_path, capsys):
    assert main(["bench", "--suite", SMOKE, "--agents", "ppo-lstm,ppo-lstn", "--out", str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys)
    assert f"preset 'ppo-lstn' not found; shipped presets: {', '.join(shipped_files('agents'))}" in err


@pytest.mark.parametrize("args, message", [
    (["--shard", "3/2"], "--shard i/n needs 1 <= i <= n, got '3/2'"),
    (["--shard", "half"], "--shard takes i/n (e.g. 1/4), got 'half'"),
    (["--envs", "rlmem/RepeatPreviousHard-v0"], "--envs: 'rlmem/RepeatPreviousHard-v0' is not in"),
    (["--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
])
def test_bad_bench_options_are_one_line(tmp_path, capsys, args, message):
    assert main(["bench", "--suite", SMOKE, "--agents", "ppo-lstm", "--out", str(tmp_path / "out"), *args]) == 2
    assert message in _one_line_error(capsys)


@pytest.mark.parametrize("suite, message", [
    ({"envs": []}, "envs is empty: list at least one env as {id, steps, threshold}"),
    ({"eval_episodes": 0, "envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "steps": 10, "threshold": 0.9}]},
     "eval_episodes must be >= 1, got 0"),
    ({"recall_episodes": 0, "envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "steps": 10, "threshold": 0.9}]},
     "recall_episodes must be >= 1, got 0"),
    ({"envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "steps": 10, "threshold": 0.9, "chance": 1.0}]},
     "envs[0].chance must be below 1 (a perfect return; the normalised return divides by 1 - chance), got 1.0"),
    ({"envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "steps": 10, "threshold": float("nan")}]},
     "envs[0].threshold must be a finite number, got nan"),
])
def test_every_suite_field_is_checked_before_anything_is_written(tmp_path, capsys, suite, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["bench", "--suite", str(path), "--agents", "ppo-lstm", "--out", str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys)
    assert f"{path}: " in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_preset_that_does_not_fit_a_suite_env_is_refused_before_any_run(tmp_path, capsys):
    preset = tmp_path / "odd.yaml"
    preset.write_text("algo: ppo\nenv_kwargs:\n  lag: 3\n")
    assert main(["bench", "--suite", SMOKE, "--agents", str(preset), "--out", str(tmp_path / "out")]) == 2
    assert "env_kwargs {'lag': 3} do not fit rlmem/" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()
    assert main(["bench", "--suite", SMOKE, "--agents", "ppo-lstm", "--envs", ",", "--out", str(tmp_path / "out")]) == 2
    assert "--envs ',' names no env" in _one_line_error(capsys)
