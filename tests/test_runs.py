"""The run directory (rlmem/runs.py) from Python and through `rlmem eval` / `rlmem probe --checkpoint`:
a run that never finished is evaluated from its newest good checkpoint, and a bad --checkpoint says
which file and lists the run's checkpoints. Trainings are a few seconds at tiny sizes."""

import json
import shutil

import pytest

from rlmem import runs
from rlmem.agents.presets import resolve_run
from rlmem.cli import main

TMAZE = "rlmem/PassiveTMazeEasy-v0"  # 11-step episodes
TINY = {"n_envs": 8, "n_steps": 16, "hidden_size": 16, "encoder_sizes": [16], "n_epochs": 1}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished ppo run of 4 rollouts of 8 envs x 16 steps, checkpointed after every one (the newest 2 kept)."""
    run_dir = tmp_path_factory.mktemp("runs") / "ppo"
    spec = resolve_run(algo="ppo", hyperparameters=TINY, env=TMAZE, steps=512, seed=1, device="cpu",
                       eval_episodes=4, checkpoint_every=128, keep_checkpoints=2)
    result = runs.train_run(spec, run_dir, echo=lambda line: None)
    assert result["steps"] == 512 and (run_dir / "eval.json").is_file()
    return run_dir


@pytest.fixture
def unfinished(finished, tmp_path):
    """The same run as if killed after its step-384 checkpoint: no final.pt, no eval.json."""
    run_dir = tmp_path / "killed"
    shutil.copytree(finished, run_dir)
    (run_dir / "checkpoints" / "final.pt").unlink()
    (run_dir / "eval.json").unlink()
    return run_dir


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rlmem: error: "), err
    return err


def test_train_run_from_python_fills_the_directory_the_cli_reads(finished):
    config = runs.read_config(finished)
    assert config["algo"] == "ppo" and config["env"] == TMAZE and config["steps"] == 512
    names = sorted(p.name for p in (finished / "checkpoints").iterdir())
    assert names == ["final.pt", "step-000000256.pt", "step-000000384.pt"]  # the newest 2 periodic ones kept
    agent, which = runs.load_run_agent(finished, "final", device="cpu")
    assert agent.num_timesteps == 512 and which.endswith("final.pt (final)")


def test_a_second_train_into_a_finished_run_is_refused_and_writes_nothing(finished):
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    spec = resolve_run(algo="ppo", hyperparameters=TINY, env=TMAZE, steps=128, device="cpu")
    with pytest.raises(ValueError, match="already holds a run"):
        runs.train_run(spec, finished, echo=lambda line: None)
    assert {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()} == before


def test_eval_of_an_unfinished_run_needs_latest_and_says_which_checkpoint(unfinished, capsys):
    assert main(["eval", str(unfinished), "--device", "cpu"]) == 2
    err = _one_line_error(capsys)
    assert "has no checkpoints/final.pt" in err and "--checkpoint latest" in err

    assert main(["eval", str(unfinished), "--device", "cpu", "--checkpoint", "latest", "--episodes", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("ppo on rlmem/PassiveTMazeEasy-v0, 384 steps")
    assert out[1] == (f"checkpoint: {unfinished / 'checkpoints' / 'step-000000384.pt'} "
                      "(step 384, latest; the run has not finished)")
    values = dict(line.split(": ", 1) for line in out[1:])
    assert values["n_episodes"] == "4" and float(values["mean_length"]) == 11.0


def test_latest_passes_over_a_damaged_newest_checkpoint(unfinished, capsys):
    newest = unfinished / "checkpoints" / "step-000000384.pt"
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated
    path, which = runs.find_checkpoint(unfinished, "latest")
    assert path.name == "step-000000256.pt" and "step 256" in which


def test_latest_of_a_finished_run_is_its_final_checkpoint(finished):
    path, which = runs.find_checkpoint(finished, "latest")
    assert path.name == "final.pt" and which.endswith("(step 512, final)")


def test_a_checkpoint_by_name_or_path_is_used_as_given(finished, capsys):
    assert main(["eval", str(finished), "--device", "cpu", "--checkpoint", "step-000000256.pt",
                 "--episodes", "2"]) == 0
    assert "256 steps" in capsys.readouterr().out.splitlines()[0]
    path = finished / "checkpoints" / "step-000000384.pt"
    assert main(["eval", str(finished), "--device", "cpu", "--checkpoint", str(path), "--episodes", "2"]) == 0
    assert "384 steps" in capsys.readouterr().out.splitlines()[0]


def test_a_missing_or_unreadable_checkpoint_is_named_with_the_runs_checkpoints(finished, tmp_path, capsys):
    listing = "(the run's checkpoints: final.pt, step-000000256.pt, step-000000384.pt)"
    assert main(["eval", str(finished), "--device", "cpu", "--checkpoint", "step-9.pt"]) == 2
    assert _one_line_error(capsys) == f"rlmem: error: --checkpoint 'step-9.pt': no such file {listing}"
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["eval", str(finished), "--device", "cpu", "--checkpoint", str(broken)]) == 2
    err = _one_line_error(capsys)
    assert err.startswith(f"rlmem: error: --checkpoint {str(broken)!r} does not load: ") and err.endswith(listing)


def test_eval_write_records_the_checkpoint_steps_in_eval_json(unfinished, capsys):
    assert main(["eval", str(unfinished), "--device", "cpu", "--checkpoint", "latest", "--episodes", "2",
                 "--write"]) == 0
    result = json.loads((unfinished / "eval.json").read_text())
    assert result["steps"] == 384 and result["n_episodes"] == 2


def test_probe_of_an_unfinished_run_with_latest(unfinished, capsys):
    assert main(["probe", str(unfinished), "--device", "cpu", "--n-envs", "16", "--max-lag", "3"]) == 2
    assert "--checkpoint latest" in _one_line_error(capsys)
    assert main(["probe", str(unfinished), "--device", "cpu", "--n-envs", "16", "--max-lag", "3",
                 "--checkpoint", "latest"]) == 0
    out = capsys.readouterr().out
    assert "step-000000384.pt (step 384, latest; the run has not finished)" in out
    probe = json.loads((unfinished / "probe.json").read_text())
    assert probe["trained_steps"] == 384 and "step-000000384.pt" in probe["checkpoint"]
