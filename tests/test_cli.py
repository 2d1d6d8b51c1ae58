"""The rlmem command: `envs` lists every id; `train` fills a run directory; bad input is one line."""

import json

import yaml

from rlmem.cli import main
from rlmem.envs.registry import TASKS


def test_envs_lists_every_id_with_its_spaces(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == set(TASKS)
    assert "Box(4,)" in lines["rlmem/RepeatPreviousEasy-v0"]
    assert "Discrete(4)" in lines["rlmem/RepeatPreviousEasy-v0"]
    assert "[k=32, length=104]" in lines["rlmem/RepeatPreviousMedium-v0"]
    assert " 401 " in lines["rlmem/PassiveTMazeHard-v0"]


def test_train_sb3_baseline_fills_the_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "--env", "rlmem/PassiveTMazeEasy-v0", "--algo", "sb3-ppo-lstm", "--steps", "256",
                 "--n-envs", "2", "--eval-episodes", "4", "--run-dir", str(run_dir)])
    assert code == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["env"] == "rlmem/PassiveTMazeEasy-v0" and config["steps"] == 256
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["n_episodes"] == 4 and result["mean_length"] == 11.0
    assert 0.0 <= result["mean_return"] <= 1.0
    assert (run_dir / "checkpoints" / "final.zip").is_file()
    assert list(run_dir.glob("tb_*/events.out.tfevents.*"))


def test_train_with_unknown_env_is_one_clear_line_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--env", "rlmem/RepeatPrevius-v0", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("rlmem: error: unknown env id 'rlmem/RepeatPrevius-v0'; "
                          "did you mean 'rlmem/RepeatPrevious-v0', ")
    assert not run_dir.exists()
