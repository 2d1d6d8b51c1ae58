"""rlmem.probes and `rlmem probe`: a hand-built memory that holds exactly the last K observations is
read perfectly up to lag K and at chance beyond; the horizon rule; recall curves; the command's files."""

import csv
import json

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlmem.cli import main
from rlmem.envs.passive_tmaze import PassiveTMaze
from rlmem.envs.repeat_previous import RepeatPrevious
from rlmem.probes import HORIZON_RULE, balanced_accuracy, memory_horizon, probe_agent, recall_curve

RP = "rlmem/RepeatPreviousEasy-v0"  # 4 symbols, a fresh one every step: chance 0.25


class ShiftRegisterAgent:
    """A hand-built recurrent agent: its state is exactly the last ``keep + 1`` observations
    (zeros before the episode began), and it names the symbol it saw ``answer_lag`` steps ago."""

    def __init__(self, obs_size: int, keep: int, answer_lag: int = 0, n_actions: int = 4) -> None:
        import gymnasium as gym

        self.obs_size, self.keep, self.answer_lag = obs_size, keep, answer_lag
        self.action_space = gym.spaces.Discrete(n_actions)
        self.device = torch.device("cpu")

    def initial_state(self, n):
        return (torch.zeros(1, n, (self.keep + 1) * self.obs_size),)

    action_dtype = torch.int64

    def env_action(self, action):
        return action

    def act(self, obs, state, episode_start, prev_action, prev_reward, deterministic):
        memory = state[0][0] * (~episode_start).float().unsqueeze(1)
        memory = torch.cat((obs, memory[:, : self.keep * self.obs_size]), dim=1)
        d = self.obs_size
        action = memory[:, self.answer_lag * d:(self.answer_lag + 1) * d].argmax(1)
        return action, (memory.unsqueeze(0),)


class BlankAgent(ShiftRegisterAgent):
    """A memory that holds nothing: every probe of it is at chance."""

    def act(self, obs, state, episode_start, prev_action, prev_reward, deterministic):
        return torch.zeros(obs.shape[0], dtype=torch.int64), state


def test_a_memory_of_the_last_k_observations_is_read_up_to_k_and_at_chance_beyond():
    keep = 5
    result = probe_agent(ShiftRegisterAgent(4, keep), BlankAgent(4, keep), RP, max_lag=keep + 4, n_envs=64)
    rows = result["rows"]
    for row in rows:
        assert row["chance"] == pytest.approx(0.25)
        assert row["untrained"] == pytest.approx(0.25, abs=0.03)  # a constant read-out scores 1 / classes
        if row["lag"] <= keep:
            assert row["trained"] > 0.99, row
        else:
            assert row["trained"] == pytest.approx(0.25, abs=0.04), row
    assert result["horizon_trained"] == keep and not result["horizon_trained_is_lower_bound"]
    assert result["horizon_untrained"] == -1
    assert result["horizon_rule"] == HORIZON_RULE


def test_tmaze_probe_reads_the_goal_side_shown_at_the_first_step():
    keep = 3
    result = probe_agent(ShiftRegisterAgent(3, keep, n_actions=2), BlankAgent(3, keep, n_actions=2),
                         "rlmem/PassiveTMazeEasy-v0", max_lag=8, n_envs=64)
    assert result["reads"].startswith("the goal side")
    for row in result["rows"]:
        assert row["chance"] == pytest.approx(0.5) and row["classes"] == 2
        # One pair per episode and lag: the state k steps after the goal was shown.
        expected = 1.0 if row["lag"] <= keep else 0.5
        assert row["trained"] == pytest.approx(expected, abs=0.05), row
    assert result["horizon_trained"] == keep


@pytest.mark.parametrize("curve, horizon", [
    ([1.0, 0.95, 0.9, 0.89, 0.99], 2),      # 0.9 itself counts; the run ends at the first lag below
    ([0.85, 1.0, 1.0], -1),                 # lag 0 below: no horizon
    ([1.0, 1.0, None, 1.0], 1),             # a lag not measured ends the run
    ([1.0, 1.0, float("nan")], 1),
    ([0.99] * 6, 5),                        # every lag passes: the last one
    ([], -1),
])
def test_memory_horizon_is_the_last_lag_of_the_unbroken_run_at_or_above_0_9(curve, horizon):
    assert memory_horizon(curve) == horizon


def test_balanced_accuracy_of_a_constant_guess_is_one_over_the_classes():
    target = torch.tensor([0] * 90 + [1] * 10)
    assert balanced_accuracy(torch.zeros(100, dtype=torch.int64), target) == pytest.approx(0.5)


def test_recall_curve_converts_returns_to_the_fraction_of_recalls_right():
    # Answers the symbol shown 6 steps ago: right at k = 6, at chance at k = 3.
    points = recall_curve(ShiftRegisterAgent(4, 8, answer_lag=6), RP, [6, 3], episodes=64, seed=1)
    assert [p["lag"] for p in points] == [6, 3]
    assert points[0]["mean_return"] == pytest.approx(1.0) and points[0]["recall_accuracy"] == pytest.approx(1.0)
    assert points[1]["recall_accuracy"] == pytest.approx(0.25, abs=0.03)
    assert all(p["chance"] == 0.25 and p["episodes"] == 64 for p in points)


def test_recall_curve_refuses_a_task_without_a_lag():
    with pytest.raises(ValueError, match="has no lag to sweep; recall curves need one of RepeatPrevious"):
        recall_curve(ShiftRegisterAgent(2, 1), "rlmem/MaskedCartPoleEasy-v0", [1])


def test_lag_tasks_sweep_the_documented_parameter():
    """lag_task reads the task's own lag facts (a level's are its task's)."""
    from rlmem.probes import lag_task

    level = RepeatPrevious(k=4, length=52)
    family, spec = lag_task("rlmem/RepeatPreviousMedium-v0")
    assert family is RepeatPrevious and spec.parameter == "k"
    assert spec.kwargs(level, 10) == level.lag_kwargs(10) == {"k": 10, "length": 58, "num_symbols": 4}
    family, spec = lag_task("rlmem/PassiveTMaze-v0")
    assert family is PassiveTMaze and spec.parameter == "corridor_length"
    assert spec.kwargs(PassiveTMaze(), 40) == {"corridor_length": 40}


# ---------------------------------------------------------------------- the command
TINY = ["--set", "n_envs=8", "--set", "n_steps=16", "--set", "hidden_size=16", "--set", "encoder_sizes=[16]",
        "--set", "n_epochs=1", "--eval-episodes", "4", "--device", "cpu"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rlmem: error: "), err
    return err


def test_probe_command_writes_csv_json_png_and_tensorboard_scalars(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--env", RP, "--steps", "256", *TINY, "--run-dir", str(run_dir)]) == 0
    assert main(["probe", str(run_dir), "--max-lag", "6", "--n-envs", "32", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "memory horizon: " in out and HORIZON_RULE in out
    result = json.loads((run_dir / "probe.json").read_text())
    assert result["algo"] == "ppo" and result["env"] == RP and result["horizon_rule"] == HORIZON_RULE
    assert isinstance(result["horizon_trained"], int) and isinstance(result["horizon_untrained"], int)
    rows = list(csv.DictReader((run_dir / "probe.csv").open()))
    assert [int(r["lag"]) for r in rows] == list(range(7))
    assert all(0 <= float(r["trained"]) <= 1 and float(r["chance"]) == 0.25 for r in rows)
    assert float(rows[0]["trained"]) > 0.9  # the state just saw the symbol: even a barely trained net holds it
    assert (run_dir / "probe.png").stat().st_size > 10_000
    events = EventAccumulator(str(run_dir / "probe"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"probe/accuracy_trained", "probe/accuracy_untrained", "probe/chance", "probe/memory_horizon"} <= set(tags)
    assert [e.step for e in events.Scalars("probe/accuracy_trained")] == list(range(7))
    capsys.readouterr()
    # A task whose spaces differ is refused in one line.
    assert main(["probe", str(run_dir), "--task", "rlmem/PassiveTMazeEasy-v0"]) == 2
    assert "observation space" in _one_line_error(capsys)


def test_probe_of_a_directory_without_a_finished_run_says_so(tmp_path, capsys):
    assert main(["probe", str(tmp_path)]) == 2
    assert f"'{tmp_path}' holds no run: it has no config.yaml" in _one_line_error(capsys)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"algo": "ppo", "env": RP, "seed": 0}))
    assert main(["probe", str(tmp_path)]) == 2
    assert "holds no finished run: it has no checkpoints/final.pt" in _one_line_error(capsys)
    assert not (tmp_path / "probe.json").exists()
