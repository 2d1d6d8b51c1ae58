"""sb3-contrib's RecurrentPPO trains on rlmem tasks through the SB3 VecEnv view, unchanged."""

import numpy as np
from sb3_contrib import RecurrentPPO

import rlmem
from rlmem.envs.masked_cartpole import MaskedCartPoleEasy


def test_sb3_contrib_recurrent_ppo_runs_on_the_view():
    venv = rlmem.SB3VecEnvView(rlmem.make_vec_env("rlmem/RepeatPreviousEasy-v0", num_envs=4, seed=0))
    model = RecurrentPPO("MlpLstmPolicy", venv, n_steps=64, batch_size=128, n_epochs=1, seed=0,
                         policy_kwargs={"lstm_hidden_size": 16}, device="cpu")
    model.learn(total_timesteps=512)
    assert model.num_timesteps == 512
    episodes = list(model.ep_info_buffer)
    assert len(episodes) == 4 * (512 // 4 // 52)  # every env finished two 52-step episodes
    assert all(ep["l"] == 52 for ep in episodes)
    assert all(-1.0 - 1e-6 <= ep["r"] <= 1.0 + 1e-6 for ep in episodes)
    obs = venv.reset()
    action, state = model.predict(obs, state=None, episode_start=np.ones(4, dtype=bool))
    assert action.shape == (4,) and state[0].shape == (1, 4, 16)


def test_view_reports_terminal_observation_and_truncation_like_sb3():
    venv = rlmem.SB3VecEnvView(MaskedCartPoleEasy(num_envs=3, seed=0, max_steps=4))
    venv.seed(5)
    obs = venv.reset()
    assert obs.shape == (3, 2) and obs.dtype == np.float32
    for _ in range(4):
        venv.step_async(np.zeros(3, dtype=np.int64))
        obs, reward, done, infos = venv.step_wait()
    assert done.all()
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (2,)
        assert info["episode"]["l"] == 4 and abs(info["episode"]["r"] - 4 / 4) < 1e-6
    assert not np.allclose(obs, np.stack([i["terminal_observation"] for i in infos]))


def test_view_seed_makes_reset_deterministic():
    venv = rlmem.SB3VecEnvView(rlmem.make_vec_env("rlmem/RepeatPreviousEasy-v0", num_envs=8))
    venv.seed(3)
    first = venv.reset()
    venv.seed(3)
    np.testing.assert_array_equal(first, venv.reset())
    assert venv.get_attr("num_envs") == [8] * 8 and venv.env_is_wrapped(object) == [False] * 8
