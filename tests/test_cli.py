"""The rlmem command: `envs` lists every id; `train` fills a run directory; `eval` re-evaluates one;
bad input is one line and writes nothing. Every training here is a few seconds at tiny sizes."""

import importlib.util
import io
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlmem import __version__
from rlmem.agents.ppo import PPOConfig, RecurrentPPO
from rlmem.cli import main
from rlmem.envs.registry import TASKS

ROOT = Path(__file__).resolve().parents[1]
TMAZE = "rlmem/PassiveTMazeEasy-v0"  # 11-step episodes
TINY = ["--set", "n_envs=8", "--set", "n_steps=16", "--set", "hidden_size=16", "--set", "encoder_sizes=[16]",
        "--set", "n_epochs=1", "--eval-episodes", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "ppo"
    code = main(["train", "--env", TMAZE, "--algo", "ppo", "--memory", "gru", "--steps", "1000", "--seed", "3",
                 *TINY, "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rlmem: error: "), err
    return err


def test_envs_lists_every_id_with_its_spaces(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == set(TASKS)
    assert "Box(4,)" in lines["rlmem/RepeatPreviousEasy-v0"]
    assert "Discrete(4)" in lines["rlmem/RepeatPreviousEasy-v0"]
    assert "[k=32, length=104]" in lines["rlmem/RepeatPreviousMedium-v0"]
    assert " 401 " in lines["rlmem/PassiveTMazeHard-v0"]


def test_top_level_help_is_for_users_and_names_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":mod:" not in out and "This module" not in out  # no docstring markup
    for command in ("envs", "presets", "train", "eval", "probe", "bench", "throughput"):
        assert f"rlmem {command}" in out


def test_train_ppo_fills_the_run_directory(ppo_run):
    config = yaml.safe_load((ppo_run / "config.yaml").read_text())
    assert {k: config[k] for k in ("algo", "env", "steps", "seed", "device", "eval_episodes", "rlmem_version")} == {
        "algo": "ppo", "env": TMAZE, "steps": 1000, "seed": 3, "device": "cpu", "eval_episodes": 4,
        "rlmem_version": __version__}
    expected = {k: v for k, v in vars(PPOConfig(memory="gru", n_envs=8, n_steps=16, hidden_size=16, n_epochs=1,
                                                 encoder_sizes=[16])).items() if k != "extra"}
    assert config["hyperparameters"] == expected  # every hyperparameter, defaults included

    result = json.loads((ppo_run / "eval.json").read_text())
    assert result["n_episodes"] == 4 and result["mean_length"] == 11.0
    assert 0.0 <= result["mean_return"] <= 1.0 and result["std_return"] >= 0.0
    assert result["steps"] == 1024  # whole rollouts of 8 envs x 16 steps
    assert result["wall_clock_s"] > 0 and result["env_steps_per_s"] > 0

    agent = RecurrentPPO.load(ppo_run / "checkpoints" / "final.pt", device="cpu")
    assert agent.config.memory == "gru" and agent.num_timesteps == 1024

    events = list(ppo_run.glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(ppo_run))
    accumulator.Reload()
    assert "charts/episodic_return" in accumulator.Tags()["scalars"]


def test_eval_prints_the_result_and_leaves_the_run_unchanged(ppo_run, capsys):
    before = (ppo_run / "eval.json").read_bytes()
    assert main(["eval", str(ppo_run), "--episodes", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    values = dict(line.split(": ", 1) for line in out.splitlines()[1:])
    trained = json.loads(before)
    assert float(values["mean_return"]) == pytest.approx(trained["mean_return"])  # same seed, same policy
    assert float(values["mean_length"]) == 11.0 and values["n_episodes"] == "4"
    assert (ppo_run / "eval.json").read_bytes() == before


def test_eval_write_updates_eval_json_and_keeps_the_training_numbers(ppo_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(ppo_run, run_dir)
    assert main(["eval", str(run_dir), "--episodes", "6", "--device", "cpu", "--write"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["n_episodes"] == 6 and result["steps"] == 1024 and "wall_clock_s" in result


@pytest.fixture(scope="module")
def sb3_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "sb3"
    code = main(["train", "--env", TMAZE, "--algo", "sb3-ppo-lstm", "--steps", "64", "--n-envs", "2",
                 "--set", "n_steps=32", "--set", "hidden_size=8", "--set", "net_arch=[8]", "--set", "n_epochs=1",
                 "--eval-episodes", "4", "--device", "cpu", "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir


def test_train_sb3_baseline_fills_the_run_directory_the_same_way(sb3_run, capsys):
    run_dir = sb3_run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["algo"] == "sb3-ppo-lstm" and config["env"] == TMAZE and config["steps"] == 64
    assert config["hyperparameters"]["n_envs"] == 2 and config["hyperparameters"]["net_arch"] == [8]
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["n_episodes"] == 4 and result["mean_length"] == 11.0 and result["steps"] == 64
    assert 0.0 <= result["mean_return"] <= 1.0
    assert (run_dir / "checkpoints" / "final.zip").is_file()
    accumulator = EventAccumulator(str(run_dir))  # events in the run dir itself, as for ppo
    accumulator.Reload()
    assert "charts/episodic_return" in accumulator.Tags()["scalars"]
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "sb3-ppo-lstm on rlmem/PassiveTMazeEasy-v0, 64 steps" in out
    assert f"mean_return: {result['mean_return']:.4f}" in out  # the same policy, evaluated on the same seed


def test_eval_of_an_sb3_run_never_runs_code_from_its_file(sb3_run, tmp_path, capsys):
    """stable-baselines3's own load unpickles the objects in a model's data entry; rlmem eval reads only weights."""
    import base64
    import zipfile

    from sb3_contrib import RecurrentPPO as SB3RecurrentPPO

    run_dir = tmp_path / "run"
    shutil.copytree(sb3_run, run_dir)
    final, marker = run_dir / "checkpoints" / "final.zip", tmp_path / "marker.txt"
    with zipfile.ZipFile(final) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(files["data"])
    data["ep_info_buffer"][":serialized:"] = base64.b64encode(pickle.dumps(_RunsCode(marker))).decode()
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(final, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    SB3RecurrentPPO.load(final, device="cpu")
    assert marker.exists()  # the threat is real
    marker.unlink()

    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "4", "--device", "cpu"]) == 0
    assert not marker.exists()
    assert "mean_return: " in capsys.readouterr().out

    buffer = io.BytesIO()
    torch.save({"weights": _RunsCode(marker)}, buffer)
    files["policy.pth"] = buffer.getvalue()
    with zipfile.ZipFile(final, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    before = _snapshot(run_dir)
    assert main(["eval", str(run_dir), "--device", "cpu", "--write"]) == 2
    assert "checkpoints/final.zip' is refused: its policy.pth holds a Python object" in _one_line_error(capsys)
    assert not marker.exists() and _snapshot(run_dir) == before


def test_env_set_gives_the_task_its_arguments_in_training_eval_and_load(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--env", "rlmem/RepeatPrevious-v0", "--env-set", "k=2", "--env-set", "length=20",
                 "--steps", "256", *TINY, "--run-dir", str(run_dir)]) == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["env_kwargs"] == {"k": 2, "length": 20}
    assert json.loads((run_dir / "eval.json").read_text())["mean_length"] == 20.0  # not the default 52
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "4", "--device", "cpu"]) == 0
    assert "mean_length: 20.0000" in capsys.readouterr().out
    agent = RecurrentPPO.load(run_dir / "checkpoints" / "final.pt", device="cpu")
    assert agent.env_kwargs == {"k": 2, "length": 20} and agent.env.max_episode_steps == 20


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda d: ["--preset", str(_write(d / "p.yaml", "algo: ppo\nhyperparameter:\n  n_envs: 8\n"))],
     "p.yaml: unknown key 'hyperparameter'; did you mean 'hyperparameters'?"),
    (lambda d: ["--preset", str(_write(d / "p.yaml", "algo: ppo\nhyperparameters:\n  hiden_size: 8\n"))],
     "p.yaml: unknown hyperparameter 'hiden_size' for ppo; did you mean 'hidden_size'"),
    (lambda d: ["--preset", str(_write(d / "p.yaml", "algo: ppo\nhyperparameters:\n  n_envs: '8'\n"))],
     "p.yaml: n_envs must be int, got str '8'"),
    (lambda d: ["--set", "n_epoch=2"], "--set: unknown hyperparameter 'n_epoch' for ppo; did you mean 'n_epochs'?"),
    (lambda d: ["--set", "n_envs=8", "--set", "n_minibatches=3"],
     "n_minibatches (3) must divide n_envs (8): minibatches are whole env sequences"),
    (lambda d: ["--algo", "sb3-ppo-lstm", "--memory", "gru"], "memory must be 'lstm' for sb3-ppo-lstm"),
    (lambda d: ["--env", "rlmem/RepeatPrevius-v0"],
     "unknown env id 'rlmem/RepeatPrevius-v0'; did you mean 'rlmem/RepeatPrevious-v0', "),
    (lambda d: ["--preset", "no-such-preset"], "preset 'no-such-preset' not found; shipped presets: dqn-lstm, ppo-elman, "),
    (lambda d: ["--env", "rlmem/RepeatPrevious-v0", "--env-set", "k=60"],
     "k must be an integer with 0 <= k < length (52), got 60"),
    (lambda d: ["--env", "rlmem/RepeatPrevious-v0", "--env-set", "lag=3"],
     "env_kwargs {'lag': 3} do not fit rlmem/RepeatPrevious-v0: RepeatPrevious.__init__() got an unexpected keyword "
     "argument 'lag'"),
    (lambda d: ["--n-envs", "0"], "n_envs must be an integer >= 1, got 0"),
    (lambda d: ["--steps", "-5"], "steps must be an integer >= 1, got -5"),
    (lambda d: ["--set", "hidden_size=-16"], "hidden_size must be an integer >= 1, got -16"),
    (lambda d: ["--checkpoint-every", "0"], "checkpoint_every must be an integer >= 1, got 0"),
    (lambda d: ["--algo", "dqn", "--env", "Pendulum-v1"],
     "RecurrentDQN needs a Discrete action space; this env's is continuous"),
    (lambda d: ["--set", "memory=lstn"], "memory must be one of ['elman', 'ffm', 'framestack', 'gru', 'lru', 'lstm', "
                                         "'mingru', 'mlp', 'transformer'], got 'lstn'; did you mean 'lstm'?"),
    (lambda d: ["--set", "memory_options.num_heads=4"],
     "memory core 'lstm' has no option 'num_heads' (its options: none)"),
    (lambda d: ["--set", "num_heads=4"], "--set: unknown hyperparameter 'num_heads' for ppo (num_heads is an option of "
                                         "memory core transformer: set it as memory_options.num_heads, e.g. --set "
                                         "memory_options.num_heads=VALUE)"),
    (lambda d: ["--memory", "transformer", "--set", "memory_options.context_length=0"],
     "memory core 'transformer': option context_length must be >= 1, got 0"),
    (lambda d: ["--memory", "transformer", "--set", "memory_options.num_heads=3"],
     "memory core 'transformer': option num_heads must be a divisor of hidden_size 64, got 3"),
    (lambda d: ["--memory", "transformer", "--set", "memory_options.context_length=100000000"],
     "the rollout buffer of n_envs 64 x n_steps 64 (the transformer memory's stored states are "),
    (lambda d: ["--preset", "ppo-transformer", "--set", "memory_options.gated=maybe"],
     "memory core 'transformer': option gated must be true or false, got str 'maybe'"),
])
def test_bad_train_input_is_one_line_and_writes_nothing(tmp_path, capsys, make_args, message):
    run_dir = tmp_path / "run"
    assert main(["train", *make_args(tmp_path), "--run-dir", str(run_dir)]) == 2
    assert message in _one_line_error(capsys)
    assert not run_dir.exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="n_epoch"):
        main(["train", "--set", "n_epoch=2", "--run-dir", str(tmp_path / "run"), "--debug"])


def test_an_existing_run_is_refused_without_overwrite(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("algo: ppo\n")
    (run_dir / "checkpoints" / "old.pt").write_text("old")
    (run_dir / "events.out.tfevents.old").write_text("old")
    args = ["train", "--env", TMAZE, "--steps", "128", *TINY, "--run-dir", str(run_dir)]
    assert main(args) == 2
    assert f"run directory '{run_dir}' already holds a run" in _one_line_error(capsys)
    assert (run_dir / "config.yaml").read_text() == "algo: ppo\n"

    assert main([*args, "--overwrite"]) == 0  # the old run's outputs go; the new run's come
    assert not (run_dir / "checkpoints" / "old.pt").exists() and not (run_dir / "events.out.tfevents.old").exists()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["steps"] == 128
    assert (run_dir / "checkpoints" / "final.pt").is_file() and (run_dir / "eval.json").is_file()


def test_eval_of_a_directory_without_a_finished_run_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert f"'{tmp_path}' holds no run: it has no config.yaml" in _one_line_error(capsys)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"algo": "ppo", "env": TMAZE, "seed": 0}))
    assert main(["eval", str(tmp_path)]) == 2
    assert "holds no finished run: it has no checkpoints/final.pt" in _one_line_error(capsys)
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in _one_line_error(capsys)


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--stepz", "5"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --stepz" in _one_line_error(capsys)


def test_train_script_learns_evaluates_and_saves(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("rlmem_train_script", ROOT / "scripts" / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "agent.pt"
    result = script.main(["--env", TMAZE, "--steps", "2048", "--device", "cpu", "--out", str(out)])
    assert 0.0 <= result["mean_return"] <= 1.0 and result["mean_length"] == 11.0
    assert "mean return" in capsys.readouterr().out
    assert RecurrentPPO.load(out, device="cpu").num_timesteps == 2048


def test_train_and_eval_a_dqn_run(tmp_path, capsys):
    run_dir = tmp_path / "dqn"
    code = main(["train", "--env", TMAZE, "--algo", "dqn", "--steps", "600", "--set", "n_envs=8", "--set", "seq_len=8",
                 "--set", "overlap=4", "--set", "burn_in=2", "--set", "hidden_size=16", "--set", "encoder_sizes=[16]",
                 "--set", "learning_starts=64", "--set", "buffer_size=2000", "--eval-episodes", "4", "--device", "cpu",
                 "--run-dir", str(run_dir)])
    assert code == 0
    out = capsys.readouterr().out
    assert "rounded up to 608: whole iterations of n_envs * (seq_len - overlap) = 32" in out
    assert "replay: 248 sequences of 8 steps (2,000 transitions)" in out
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["algo"] == "dqn" and config["hyperparameters"]["seq_len"] == 8
    assert (run_dir / "checkpoints" / "final.pt").is_file()
    assert json.loads((run_dir / "eval.json").read_text())["steps"] == 608
    assert main(["eval", str(run_dir), "--episodes", "4"]) == 0
    assert "dqn on rlmem/PassiveTMazeEasy-v0, 608 steps" in capsys.readouterr().out


def test_dqn_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "bad"
    assert main(["train", "--algo", "dqn", "--set", "burn_in=20", "--run-dir", str(run_dir)]) == 2
    assert "burn_in (20) must be shorter than seq_len (20)" in capsys.readouterr().err
    assert main(["train", "--algo", "dqn", "--set", "buffer_size=1000000000000", "--device", "cpu",
                 "--run-dir", str(run_dir)]) == 2
    assert "replay of buffer_size 1,000,000,000,000 transitions needs" in capsys.readouterr().err
    assert not run_dir.exists()


# ---------------------------------------------------------------------- bad files: one line, nothing touched
def _snapshot(run_dir: Path) -> dict:
    return {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


class _RunsCode:
    """Unpickling this writes a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code from the checkpoint ran"))


def _truncate(run_dir: Path) -> None:
    final = run_dir / "checkpoints" / "final.pt"
    final.write_bytes(final.read_bytes()[:2000])


def _flip_a_byte(run_dir: Path) -> None:
    final = run_dir / "checkpoints" / "final.pt"
    data = bytearray(final.read_bytes())
    data[len(data) // 2] ^= 0xFF
    final.write_bytes(bytes(data))


def _plant_code(run_dir: Path) -> None:
    final = run_dir / "checkpoints" / "final.pt"
    data = torch.load(final, weights_only=True)
    data["seed"] = _RunsCode(run_dir.parent / "marker.txt")
    torch.save(data, final)


def _another_agent(run_dir: Path) -> None:
    from rlmem import RecurrentDQN

    RecurrentDQN(TMAZE, device="cpu", n_envs=2, seq_len=4, overlap=0, burn_in=0, buffer_size=64,
                 verbose=0).save(run_dir / "checkpoints" / "final.pt")


def _another_env(run_dir: Path) -> None:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "env": "rlmem/RepeatPreviousEasy-v0"}))


@pytest.mark.parametrize(("damage", "message"), [
    (_truncate, "checkpoints/final.pt' is truncated or corrupted: it could not be read"),
    (_flip_a_byte, "checkpoints/final.pt' is corrupted: its contents do not match the checksum stored in it"),
    (_plant_code, "checkpoints/final.pt' is refused: it holds a Python object"),
    (_another_agent, "checkpoints/final.pt' holds a RecurrentDQN agent, not a RecurrentPPO"),
    (_another_env, "the checkpoint's observation space Box(0.0, 1.0, (3,), float32) does not match the env's "
                   "Box(0.0, 1.0, (4,), float32)"),
])
def test_a_bad_checkpoint_is_one_line_and_touches_no_file(ppo_run, tmp_path, capsys, damage, message):
    run_dir = tmp_path / "run"
    shutil.copytree(ppo_run, run_dir)
    damage(run_dir)
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "4", "--device", "cpu", "--write"]) == 2
    assert message in _one_line_error(capsys)
    assert _snapshot(run_dir) == before  # eval.json (--write) included
    assert not (tmp_path / "marker.txt").exists()  # no code from the file ran


def test_bad_input_with_overwrite_leaves_the_existing_run_as_it_was(ppo_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(ppo_run, run_dir)
    before = _snapshot(run_dir)
    for bad in (["--set", "n_epoch=2"], ["--env", "rlmem/NoSuchTask-v0"], ["--algo", "dqn", "--env", "Pendulum-v1"]):
        assert main(["train", *bad, "--overwrite", "--device", "cpu", "--run-dir", str(run_dir)]) == 2
        _one_line_error(capsys)
    assert _snapshot(run_dir) == before


def test_a_bad_checkpoint_is_one_line_from_a_real_process(ppo_run, tmp_path):
    """No warning or traceback reaches stderr: exactly the one line, and exit code 2."""
    run_dir = tmp_path / "run"
    shutil.copytree(ppo_run, run_dir)
    _truncate(run_dir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "rlmem.cli", "eval", str(run_dir), "--device", "cpu"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert re.fullmatch(rf"rlmem: error: '{re.escape(str(run_dir / 'checkpoints' / 'final.pt'))}' is truncated or "
                        r"corrupted: it could not be read \(\w+\)\n", done.stderr), done.stderr


# ---------------------------------------------------------------------- the nan guard, from the command line
class _HugeRewardTMaze(gym.Env):
    """An 11-step episode whose rewards turn huge after 40 steps of each env: 3e38 is finite (float32 holds it,
    so the env passes the check at the edge), but the returns and the loss overflow to nan."""

    observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.t = self.total = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        self.total += 1
        reward = 3e38 if self.total > 40 else float(action)
        return np.zeros(3, np.float32), reward, self.t >= 11, False, {}


def test_a_nan_loss_stops_the_run_with_one_line_naming_the_step_and_the_last_checkpoint(tmp_path, capsys):
    gym.register("rlmemtest/HugeRewardTMaze-v0", entry_point=_HugeRewardTMaze)
    run_dir = tmp_path / "run"
    try:
        code = main(["train", "--env", "rlmemtest/HugeRewardTMaze-v0", "--steps", "1280", "--checkpoint-every", "128",
                     *TINY, "--run-dir", str(run_dir)])
    finally:
        del gym.registry["rlmemtest/HugeRewardTMaze-v0"]
    assert code == 1
    last = run_dir / "checkpoints" / "step-000000256.pt"  # 16 steps of each env an iteration: nan in the 3rd
    assert (f"rlmem: error: training stopped at step 384: the loss is nan; nothing was saved from these weights; "
            f"the last good checkpoint is {last} (left as it was)") == _one_line_error(capsys)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000000128.pt", "step-000000256.pt"]
    assert not (run_dir / "eval.json").exists()
    agent = RecurrentPPO.load(last, env="rlmem/PassiveTMazeEasy-v0", device="cpu")
    assert agent.num_timesteps == 256 and all(bool(torch.isfinite(p).all()) for p in agent.policy.parameters())


def test_running_out_of_device_memory_is_one_line_naming_the_sizes_and_the_remedy(tmp_path, capsys, monkeypatch):
    """A CUDA out-of-memory error in an iteration (here raised by hand) ends the run with one line, exit 1."""
    iteration = RecurrentPPO._iteration

    def out_of_memory_in_the_third(agent):
        if agent.num_timesteps == 256:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.\nSee the allocator docs")
        return iteration(agent)

    monkeypatch.setattr(RecurrentPPO, "_iteration", out_of_memory_in_the_third)
    run_dir = tmp_path / "run"
    code = main(["train", "--env", "rlmem/PassiveTMazeEasy-v0", "--steps", "1280", "--checkpoint-every", "128",
                 *TINY, "--run-dir", str(run_dir)])
    assert code == 1
    last = run_dir / "checkpoints" / "step-000000256.pt"
    assert _one_line_error(capsys) == (
        "rlmem: error: training stopped at step 256: an iteration of RecurrentPPO with n_envs 8 ran out of memory "
        "on cpu: CUDA out of memory. Tried to allocate 20.00 GiB.; lower n_envs or n_steps, or raise n_minibatches "
        f"(the update holds one minibatch's activations); nothing was saved from this iteration; the last "
        f"checkpoint is {last}")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000000128.pt", "step-000000256.pt"]


# ---------------------------------------------------------------------- messages that say more
@pytest.mark.parametrize("env_id", ["rlmem/RepeatPrevious-v0", "rlmem/RepeatPreviousEasy-v0"])
def test_an_unknown_env_keyword_lists_the_keywords_the_task_takes(tmp_path, capsys, env_id):
    assert main(["train", "--env", env_id, "--env-set", "lag=3", "--run-dir", str(tmp_path / "run")]) == 2
    assert (f"env_kwargs {{'lag': 3}} do not fit {env_id}: RepeatPrevious.__init__() got an unexpected keyword "
            f"argument 'lag' ({env_id} takes k, length, num_symbols)") in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_a_preset_that_is_not_text_or_is_a_directory_is_named(tmp_path, capsys):
    binary = tmp_path / "p.yaml"
    binary.write_bytes(b"\xff\xfealgo: ppo\n")
    assert main(["train", "--preset", str(binary), "--run-dir", str(tmp_path / "run")]) == 2
    assert _one_line_error(capsys) == (f"rlmem: error: {binary}: not a YAML text file (byte 0xff at offset 0 is not "
                                       "UTF-8)")
    assert main(["train", "--preset", str(tmp_path), "--run-dir", str(tmp_path / "run")]) == 2
    assert _one_line_error(capsys) == f"rlmem: error: preset '{tmp_path}' is a directory, not a YAML file"
    assert not (tmp_path / "run").exists()


def test_an_unfinished_sb3_run_is_not_told_to_resume(sb3_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(sb3_run, run_dir)
    (run_dir / "checkpoints" / "final.zip").unlink()
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 2
    err = _one_line_error(capsys)
    assert "holds no finished run: it has no checkpoints/final.zip" in err
    assert "sb3-ppo-lstm runs cannot be resumed: train it again with --overwrite" in err and "--resume" not in err
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "sb3-ppo-lstm runs cannot be resumed" in _one_line_error(capsys)
