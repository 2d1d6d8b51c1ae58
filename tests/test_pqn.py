"""RecurrentPQN: its API and logging, the Q(lambda) targets, what a rollout stores, files, the CLI, bench and
probe, and bad input. Resume equality and predict against evaluate, for every core: tests/test_memory_agents.py."""

import csv
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlmem import PQNConfig, RecurrentPPO, RecurrentPQN
from rlmem.agents.buffers import QRolloutBuffer, tensor_nbytes
from rlmem.bench import run_bench
from rlmem.cli import main

TINY = {"n_envs": 8, "n_steps": 16, "n_minibatches": 2, "hidden_size": 16, "encoder_sizes": (16,)}
TMAZE = "rlmem/PassiveTMazeEasy-v0"
SMOKE = str(Path(__file__).resolve().parents[1] / "envs" / "smoke.yaml")


# ---------------------------------------------------------------------- API
def test_learn_logs_every_tag_and_continues(tmp_path):
    agent = RecurrentPQN(TMAZE, device="cpu", verbose=0, tensorboard_log=tmp_path, exploration_steps=256, **TINY)
    agent.learn(256, progress_bar=False)
    assert agent.num_timesteps == 256 and agent.num_updates == 2 * 4 * 2  # iterations x epochs x minibatches
    agent.learn(128, progress_bar=False)  # continues where it stopped
    assert agent.num_timesteps == 384
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/epsilon",
                "charts/updates", "losses/loss", "losses/q_values", "losses/td_error"):
        assert tag in tags, tag
    assert events.Scalars("charts/episodic_length")[-1].value == 11.0
    assert [e.value for e in events.Scalars("charts/epsilon")][:2] == pytest.approx([1.0, 1.0 - 0.5 * 0.95])
    assert agent.last_log["charts/epsilon"] == pytest.approx(0.05)  # decayed after exploration_steps


def test_predict_has_sb3_contrib_semantics():
    agent = RecurrentPQN("rlmem/RepeatPreviousEasy-v0", device="cpu", verbose=0, **TINY)
    obs = np.eye(4, dtype=np.float32)[[0, 1, 2]]
    actions, state = agent.predict(obs, deterministic=True)
    assert actions.shape == (3,) and len(state) == 2 and state[0].shape == (1, 3, 16)
    again, _ = agent.predict(obs, state=state, episode_start=np.ones(3, bool), deterministic=True)
    np.testing.assert_array_equal(actions, again)  # a start zeroes memory, like no state at all
    _, state2 = agent.predict(obs, state=state, deterministic=True)
    assert not np.allclose(state2[0], state[0])  # memory moves when carried
    assert np.ndim(agent.predict(obs[0], deterministic=True)[0]) == 0


def test_save_and_load_round_trip(tmp_path):
    agent = RecurrentPQN("rlmem/RepeatPreviousEasy-v0", device="cpu", verbose=0, memory="gru", **TINY)
    agent.learn(256, progress_bar=False)
    agent.save(tmp_path / "agent.pt")
    loaded = RecurrentPQN.load(tmp_path / "agent.pt", device="cpu")
    assert loaded.num_timesteps == 256 and loaded.num_updates == agent.num_updates and loaded.config == agent.config
    obs = np.eye(4, dtype=np.float32)[[0, 3]]
    a1, s1 = agent.predict(obs, deterministic=True)
    a2, s2 = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(s1[0], s2[0])
    with pytest.raises(ValueError, match="holds a RecurrentPQN agent, not a RecurrentPPO"):
        RecurrentPPO.load(tmp_path / "agent.pt")


def test_the_network_has_layer_norm_in_its_encoder_only_when_asked():
    with_norm = RecurrentPQN(TMAZE, device="cpu", verbose=0, **TINY)
    assert [type(m).__name__ for m in with_norm.q_net.encoder] == ["Linear", "LayerNorm", "Tanh"]
    plain = RecurrentPQN(TMAZE, device="cpu", verbose=0, layer_norm=False, **TINY)
    assert [type(m).__name__ for m in plain.q_net.encoder] == ["Linear", "Tanh"]


# ---------------------------------------------------------------------- targets and the rollout
def test_q_lambda_targets_on_a_hand_made_rollout():
    buffer = QRolloutBuffer(4, 1, 1, [], torch.device("cpu"))
    buffer.rewards[:, 0] = torch.tensor([1.0, 2.0, 4.0, 8.0])
    buffer.values[:, 0] = torch.tensor([10.0, 20.0, 30.0, 40.0])  # max Q of each step's observation
    buffer.dones[:, 0] = torch.tensor([False, True, False, False])  # the episode ends at step 1
    last = torch.tensor([50.0])  # max Q of the observation after the rollout
    gamma, lam = 0.5, 0.25
    buffer.compute_lambda_returns(last, gamma, lam)
    g3 = 8 + gamma * 50
    g2 = 4 + gamma * ((1 - lam) * 40 + lam * g3)
    g1 = 2.0  # its episode ended there: its reward alone
    g0 = 1 + gamma * ((1 - lam) * 20 + lam * g1)
    np.testing.assert_allclose(buffer.returns[:, 0].numpy(), [g0, g1, g2, g3])
    buffer.compute_lambda_returns(last, gamma, 0.0)  # lambda 0: one-step Q-learning
    np.testing.assert_allclose(buffer.returns[:, 0].numpy(), [1 + 0.5 * 20, 2, 4 + 0.5 * 40, 8 + 0.5 * 50])
    buffer.compute_lambda_returns(last, gamma, 1.0)  # lambda 1: the discounted rewards, bootstrapped at the end
    np.testing.assert_allclose(buffer.returns[:, 0].numpy(), [1 + 0.5 * 2, 2, 4 + 0.5 * (8 + 0.5 * 50), 8 + 0.5 * 50])


def test_a_rollout_stores_the_greedy_q_values_the_actor_acted_on():
    """With epsilon 0, unrolling the stored observations from the stored start state gives the actions
    taken and the stored max Q (float noise aside), a start state that is not zeros, and the targets."""
    agent = RecurrentPQN("rlmem/RepeatPreviousEasy-v0", device="cpu", verbose=0, epsilon_start=0.0, epsilon_end=0.0,
                         **TINY)
    agent.start()
    agent.collect()
    agent.collect()  # the second rollout starts mid-episode
    b = agent._buffer
    assert not torch.all(b.initial_state[0] == 0)
    with torch.no_grad():
        q, _ = agent.q_net(b.obs, b.initial_state, b.episode_starts)
    assert torch.equal(q.argmax(-1), b.actions)
    torch.testing.assert_close(q.max(-1).values, b.values, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        next_q, _ = agent.q_net.step(agent._last["obs"], agent._last["state"], agent._last["episode_start"])
    expected = b.returns.clone()
    b.compute_lambda_returns(next_q.max(-1).values, agent.config.gamma, agent.config.td_lambda)
    torch.testing.assert_close(b.returns, expected)
    assert agent.num_timesteps == 2 * 8 * 16


def test_a_truncated_episode_bootstraps_from_its_final_observation():
    """Only the rewards of truncated steps depend on gamma (by gamma * max Q(final obs)), the others not."""
    buffers = []
    for gamma in (0.0, 0.5):
        agent = RecurrentPQN("rlmem/MaskedCartPole-v0", env_kwargs={"max_steps": 4}, device="cpu", verbose=0,
                             gamma=gamma, seed=1, **TINY)
        agent.start()
        agent.collect()
        buffers.append(agent._buffer)
    zero, half = buffers
    assert torch.equal(zero.actions, half.actions)
    steps_in = torch.zeros_like(zero.rewards, dtype=torch.int64)  # steps since the episode began
    for t in range(1, zero.n_steps):
        steps_in[t] = torch.where(zero.episode_starts[t], 0, steps_in[t - 1] + 1)
    truncated = zero.dones & (steps_in == 3)
    assert truncated.any() and torch.equal(half.rewards != zero.rewards, truncated)


def test_updates_regress_towards_the_rollouts_targets():
    agent = RecurrentPQN(TMAZE, device="cpu", verbose=0, learning_rate=1e-2, **TINY)
    agent.start()
    agent.collect()
    losses = [agent.update()["loss"] for _ in range(5)]
    assert losses[-1] < 0.7 * losses[0]  # the targets stay put: the regression closes in on them
    stats = agent.update()
    assert set(stats) == {"loss", "q_values", "td_error"} and all(np.isfinite(list(stats.values())))


# ---------------------------------------------------------------------- the command line, bench and probe
def test_train_eval_resume_and_probe_a_pqn_run(tmp_path, capsys):
    run_dir = tmp_path / "pqn"
    flags = ["--set", "n_envs=8", "--set", "n_steps=16", "--set", "n_minibatches=2", "--set", "hidden_size=16",
             "--set", "encoder_sizes=[16]"]
    assert main(["train", "--env", TMAZE, "--algo", "pqn", "--steps", "500", *flags, "--checkpoint-every", "256",
                 "--eval-episodes", "4", "--device", "cpu", "--run-dir", str(run_dir)]) == 0
    assert "rounded up to 512: whole rollouts of n_envs * n_steps = 128" in capsys.readouterr().out
    assert json.loads((run_dir / "eval.json").read_text())["steps"] == 512
    assert main(["eval", str(run_dir), "--episodes", "4"]) == 0
    assert "pqn on rlmem/PassiveTMazeEasy-v0, 512 steps" in capsys.readouterr().out
    assert main(["train", "--resume", str(run_dir), "--steps", "768"]) == 0
    assert json.loads((run_dir / "eval.json").read_text())["resumed_from_step"] == 512
    assert main(["probe", str(run_dir), "--max-lag", "4", "--n-envs", "32", "--threads", "1"]) == 0
    assert json.loads((run_dir / "probe.json").read_text())["algo"] == "pqn"


def test_the_smoke_bench_runs_the_pqn_preset(tmp_path):
    out = tmp_path / "smoke"
    assert run_bench(SMOKE, "pqn-lstm", 1, out, echo=lambda *a, **k: None) == 0
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert sorted(r["env"] for r in rows) == ["rlmem/PassiveTMazeEasy-v0", "rlmem/RepeatPreviousEasy-v0"]
    assert all(r["agent"] == "pqn-lstm" for r in rows)


# ---------------------------------------------------------------------- bad input
def test_continuous_and_multidiscrete_actions_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^RecurrentPQN needs a Discrete action space; this env's is continuous"):
        RecurrentPQN("Pendulum-v1", device="cpu", **TINY)
    with pytest.raises(ValueError, match="MultiDiscrete is refused, not flattened"):
        RecurrentPQN(TwoSwitches, device="cpu", **TINY)


class TwoSwitches(gym.Env):
    observation_space = gym.spaces.Box(0, 1, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


def test_rollout_buffer_size_is_known_before_allocation_and_refused_when_too_big(monkeypatch):
    sizes = (16, 8, 3, [(1, 8, 16), (1, 8, 16)])  # an LSTM's (h, c) at the rollout's start
    assert QRolloutBuffer.nbytes(*sizes) == tensor_nbytes(QRolloutBuffer(*sizes, torch.device("cpu")))
    assert QRolloutBuffer.nbytes(*sizes) == 16 * 8 * (3 * 4 + 8 + 3 * 4 + 2) + 2 * 8 * 16 * 4
    monkeypatch.setattr("rlmem.device.available_memory", lambda device: 1_000)
    with pytest.raises(ValueError, match=r"^the rollout buffer of n_envs 8 x n_steps 16 needs 5,376 bytes \(0.00 GiB\), "
                                         r"more than the 1,000 bytes available on cpu; lower n_envs or n_steps$"):
        RecurrentPQN(TMAZE, device="cpu", verbose=0, **TINY)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"n_minibatches": 3}, r"n_minibatches \(3\) must divide n_envs \(8\)"),
    ({"td_lambda": 1.5}, r"td_lambda must be in \[0, 1\], got 1.5"),
    ({"epsilon_end": -0.1}, r"epsilon_end must be in \[0, 1\]"),
    ({"td_loss": "l1"}, "td_loss must be 'mse' or 'huber', got 'l1'"),
    ({"exploration_steps": -1}, "exploration_steps"),
    ({"layer_norm": 1}, "layer_norm must be true or false, got int 1"),
    ({"unroll": "scan"}, "unroll must be one of"),
    ({"lambda_": 0.5}, "unknown hyperparameter 'lambda_' for PQNConfig; did you mean 'td_lambda'?"),
])
def test_bad_hyperparameters_fail_naming_them(overrides, message):
    with pytest.raises(ValueError, match=message):
        RecurrentPQN(TMAZE, device="cpu", **{**TINY, **overrides})


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "bad"
    assert main(["train", "--algo", "pqn", "--env", "Pendulum-v1", "--device", "cpu", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "RecurrentPQN needs a Discrete action space" in err and "\n" not in err
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun
    assert main(["train", "--algo", "pqn", "--device", "cpu", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlmem: error: data-parallel training (torchrun, WORLD_SIZE=2) is not supported yet for pqn")
    assert "\n" not in err and not run_dir.exists()


def test_config_defaults_validate():
    PQNConfig().validate()
