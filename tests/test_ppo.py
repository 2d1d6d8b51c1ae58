"""RecurrentPPO's API: sb3-contrib semantics, spaces, logging, files, and bad input."""

import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlmem import RecurrentPPO

TINY = {"n_envs": 8, "n_steps": 16, "n_minibatches": 2, "hidden_size": 16, "encoder_sizes": (16,)}


def test_learn_logs_every_tag_and_continues(tmp_path, capsys):
    agent = RecurrentPPO("rlmem/PassiveTMazeEasy-v0", device="cpu", tensorboard_log=tmp_path, **TINY)
    agent.learn(256, progress_bar=False)
    assert agent.num_timesteps == 256
    agent.learn(256, progress_bar=False)  # continues where it stopped
    assert agent.num_timesteps == 512
    out = capsys.readouterr().out
    assert "step" in out and "SPS" in out  # plain progress lines when not on a terminal
    last = out.strip().splitlines()[-1]  # the end of the second learn call: 100%, nothing left
    assert re.fullmatch(r"step +512 +\(100\.0%\) +SPS +[\d,]+ +return \S+ +elapsed \d+:\d\d +ETA 0:00", last), last
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "losses/policy_loss",
                "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
                "losses/explained_variance"):
        assert tag in tags, tag
    assert events.Scalars("charts/episodic_length")[-1].value == 11.0
    assert [e.step for e in events.Scalars("charts/SPS")][-1] == 512


def test_predict_has_sb3_contrib_semantics():
    agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cpu", **TINY)
    obs = np.eye(4, dtype=np.float32)[[0, 1, 2]]
    actions, state = agent.predict(obs, deterministic=True)
    assert actions.shape == (3,) and len(state) == 2 and state[0].shape == (1, 3, 16)
    again, _ = agent.predict(obs, state=None, episode_start=np.ones(3, bool), deterministic=True)
    np.testing.assert_array_equal(actions, again)  # a start zeroes memory, like no state at all
    _, state2 = agent.predict(obs, state=state, deterministic=True)
    assert not np.allclose(state2[0], state[0])  # memory moves when carried
    single, _ = agent.predict(obs[0], deterministic=True)
    assert np.ndim(single) == 0
    with pytest.raises(ValueError, match=r"observation has shape \(3, 5\); expected \(4,\)"):
        agent.predict(np.zeros((3, 5), np.float32))


def test_save_and_load_round_trip(tmp_path):
    agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cpu", **TINY)
    agent.learn(128, progress_bar=False)
    agent.save(tmp_path / "agent.pt")
    loaded = RecurrentPPO.load(tmp_path / "agent.pt", device="cpu")
    assert loaded.num_timesteps == 128 and loaded.config == agent.config
    obs = np.eye(4, dtype=np.float32)[[0, 3]]
    a1, s1 = agent.predict(obs, deterministic=True)
    a2, s2 = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(s1[0], s2[0])


def test_load_refuses_what_is_not_an_rlmem_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not an rlmem checkpoint"):
        RecurrentPPO.load(junk)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not an rlmem checkpoint"):
        RecurrentPPO.load(tmp_path / "other.pt")
    agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cpu", **TINY)
    agent.save(tmp_path / "rp.pt")
    with pytest.raises(ValueError, match="observation space .* does not match"):
        RecurrentPPO.load(tmp_path / "rp.pt", env="rlmem/PassiveTMazeEasy-v0", device="cpu")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rat": 1e-3}, "unknown hyperparameter 'learning_rat' for PPOConfig; did you mean 'learning_rate'"),
        ({"n_envs": 8, "n_minibatches": 3}, r"n_minibatches \(3\) must divide n_envs \(8\)"),
        ({"n_steps": 0}, "n_steps must be an integer >= 1, got 0"),
        ({"hidden_size": -4}, "hidden_size must be an integer >= 1, got -4"),
        ({"memory": "ntm"}, "memory must be one of"),
        ({"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1.5"),
    ],
)
def test_bad_hyperparameters_name_the_rule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cpu", **kwargs)


def test_box_actions_stay_in_bounds_and_train():
    agent = RecurrentPPO("Pendulum-v1", device="cpu", verbose=0, **TINY)
    agent.learn(256, progress_bar=False)
    assert np.isfinite(agent.last_log["losses/loss"])
    actions, _ = agent.predict(np.zeros((5, 3), np.float32))
    assert actions.shape == (5, 1) and (np.abs(actions) <= 2.0).all()


def test_target_kl_stops_the_epochs_early():
    agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cpu", n_epochs=4, target_kl=1e-12, **TINY)
    agent.learn(128, progress_bar=False)
    assert agent.last_log["losses/epochs"] == 1
    agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cpu", n_epochs=4, **TINY)
    agent.learn(128, progress_bar=False)
    assert agent.last_log["losses/epochs"] == 4


def test_linear_schedule_anneals_the_learning_rate():
    agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cpu", lr_schedule="linear", learning_rate=1e-3,
                         **TINY)
    agent.learn(4 * 128, progress_bar=False)  # four iterations: 1, 0.75, 0.5, 0.25 of the rate
    assert agent.last_log["charts/learning_rate"] == pytest.approx(0.25e-3)


def test_separate_critic_memory_and_previous_action_reward():
    agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cpu", separate_critic_memory=True,
                         prev_action_reward=True, **TINY)
    assert agent.policy.critic_core is not None and agent.policy.encoder[0].in_features == 4 + 4 + 1
    agent.learn(128, progress_bar=False)
    obs = np.eye(4, dtype=np.float32)[[1, 2]]
    _, state = agent.predict(obs, deterministic=True)
    assert len(state) == 4  # actor (h, c) then critic (h, c)
    # The previous action and reward reach the memory unless the step starts an episode.
    _, moved = agent.predict(obs, state=state, prev_action=np.array([3, 3]), prev_reward=np.array([1.0, 1.0]))
    _, plain = agent.predict(obs, state=state, prev_action=np.array([0, 0]), prev_reward=np.array([0.0, 0.0]))
    assert not np.allclose(moved[0], plain[0])
    starts = np.ones(2, bool)
    _, moved = agent.predict(obs, state=state, episode_start=starts, prev_action=np.array([3, 3]),
                             prev_reward=np.array([1.0, 1.0]))
    _, plain = agent.predict(obs, state=state, episode_start=starts)
    np.testing.assert_allclose(moved[0], plain[0])


def test_final_obs_bootstrap_runs_only_where_it_can_matter():
    """Never for a task that cannot truncate; on the CPU only at steps with a truncation; on an
    accelerator always (reading the mask there would sync the device every step)."""
    never = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", n_envs=4, n_steps=8, device="cpu", verbose=0)
    can = RecurrentPPO("rlmem/MaskedCartPoleEasy-v0", n_envs=4, n_steps=8, device="cpu", verbose=0)
    some, none = torch.tensor([False, True, False, False]), torch.zeros(4, dtype=torch.bool)
    assert not never._needs_bootstrap(some)
    assert can._needs_bootstrap(some) and not can._needs_bootstrap(none)
    can.device = torch.device("cuda")  # only the device type is read: no GPU needed
    assert can._needs_bootstrap(none)
    never.device = torch.device("cuda")
    assert not never._needs_bootstrap(some)


def test_rollout_buffer_size_is_known_before_allocation_and_refused_when_too_big(monkeypatch):
    from rlmem.agents.buffers import RolloutBuffer

    sizes = (16, 8, 4, (), torch.int64, [(1, 8, 64), (1, 8, 64)])  # an LSTM's (h, c) at the rollout's start
    real = RolloutBuffer(*sizes, torch.device("cpu"))
    allocated = sum(t.numel() * t.element_size() for value in vars(real).values()
                    for t in (value if isinstance(value, tuple) else (value,)) if isinstance(t, torch.Tensor))
    assert RolloutBuffer.nbytes(*sizes) == allocated == 16 * 8 * (4 * 4 + 2 * 8 + 6 * 4 + 2) + 2 * 8 * 64 * 4
    monkeypatch.setattr("rlmem.device.available_memory", lambda device: 1_000)
    with pytest.raises(ValueError, match=r"^the rollout buffer of n_envs 8 x n_steps 16 needs 11,520 bytes \(0.00 GiB\), "
                                         r"more than the 1,000 bytes available on cpu; lower n_envs or n_steps$"):
        RecurrentPPO("rlmem/RepeatPreviousEasy-v0", n_envs=8, n_steps=16, device="cpu", verbose=0)
