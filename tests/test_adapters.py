"""The views (gymnasium Env / VectorEnv) and the adapter (any gymnasium env -> tensors) keep
rlmem's semantics: same-step autoreset with the final observation kept, seeded determinism."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlmem
from rlmem.envs.adapters import GymVectorEnvAdapter
from rlmem.envs.masked_cartpole import MaskedCartPoleEasy
from rlmem.envs.passive_tmaze import PassiveTMazeEasy
from rlmem.envs.repeat_previous import RepeatPrevious, RepeatPreviousEasy


EASY_IDS = sorted(env_id for env_id in rlmem.TASKS if env_id.endswith("Easy-v0"))


@pytest.mark.parametrize("env_id", EASY_IDS)
def test_single_view_and_batch_of_one_agree_across_episodes(env_id):
    """gymnasium.make's Env and a TorchVecEnv of one env give identical episodes under one seed."""
    view = gym.make(env_id)
    batch = rlmem.TASKS[env_id](num_envs=1)
    view.action_space.seed(0)
    obs, _ = view.reset(seed=3)
    b_obs, _ = batch.reset(seed=3)
    episodes = 0
    for _ in range(400):
        np.testing.assert_array_equal(obs, b_obs[0].numpy())
        action = view.action_space.sample()
        obs, reward, term, trunc, _ = view.step(action)
        b_obs, b_reward, b_term, b_trunc, info = batch.step(torch.tensor([action]))
        assert reward == pytest.approx(float(b_reward[0]))
        assert (term, trunc) == (bool(b_term[0]), bool(b_trunc[0]))
        if term or trunc:
            np.testing.assert_array_equal(obs, info["final_obs"][0].numpy())
            episodes += 1
            obs, _ = view.reset()
    assert episodes >= 1


def test_autoreset_keeps_final_obs_and_starts_the_next_episode():
    env = MaskedCartPoleEasy(num_envs=4, seed=0, max_steps=6)
    obs, _ = env.reset(seed=0)
    for _ in range(6):
        obs, reward, term, trunc, info = env.step(torch.zeros(4, dtype=torch.long))
    done = term | trunc
    assert done.all()
    assert trunc.all() and not term.any()  # six pushes do not drop the pole; the time limit ends it
    # Pushing left moves the cart left; the new episode starts near the origin again.
    assert (info["final_obs"][:, 0] < -0.05).all()
    assert (obs.abs() <= 0.05).all()
    assert info["_final_obs"].all() and info["_episode"].all()
    assert (info["episode"]["l"] == 6).all()
    assert torch.allclose(info["episode"]["r"], torch.full((4,), 1.0, dtype=torch.float64))
    assert (env.elapsed_steps == 0).all() and (env.episode_return == 0).all()


def test_episode_start_is_flagged_by_done_and_the_next_episode_counts_from_zero():
    env = PassiveTMazeEasy(num_envs=2, seed=1)
    obs, _ = env.reset()
    assert (obs[:, :2].sum(1) == 1).all()  # goal visible at the start
    for _ in range(10):
        obs, reward, term, trunc, info = env.step(torch.zeros(2, dtype=torch.long))
    assert not (term | trunc).any() and (obs[:, 2] == 1).all()  # at the junction
    obs, reward, term, trunc, info = env.step(torch.zeros(2, dtype=torch.long))
    assert term.all() and (env.elapsed_steps == 0).all()
    assert (info["final_obs"] == 0).all()  # after the turn there is nothing left to see
    assert (obs[:, :2].sum(1) == 1).all() and (obs[:, 2] == 0).all()  # new episode: goal shown again


def test_seeded_determinism_and_reseeding():
    def rollout(seed):
        env = RepeatPrevious(num_envs=8, seed=seed, k=2, length=10)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for t in range(25):
            obs, reward, *_ = env.step(torch.full((8,), t % 4))
            out += [obs, reward[:, None]]
        return torch.cat(out, 1)

    assert torch.equal(rollout(5), rollout(5))
    assert not torch.equal(rollout(5), rollout(6))


def test_check_actions_names_expected_shape():
    env = RepeatPreviousEasy(num_envs=3, check_actions=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \(3,\).*got shape \(2,\)"):
        env.step(torch.zeros(2, dtype=torch.long))


class CoinMemory(gym.Env):
    """A user's own numpy env: remember a coin shown at step 0, name it at step 3."""

    observation_space = gym.spaces.Discrete(3)  # 0 = heads, 1 = tails, 2 = nothing to see
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.coin, self.t = int(self.np_random.integers(2)), 0
        return self.coin, {}

    def step(self, action):
        self.t += 1
        done = self.t == 4
        reward = float(action == self.coin) if done else 0.0
        return 2, reward, done, False, {}


def test_make_vec_env_takes_a_users_numpy_env():
    env = rlmem.make_vec_env(CoinMemory, num_envs=6, seed=0)
    assert isinstance(env, rlmem.TorchVecEnv)
    obs, _ = env.reset()
    assert obs.shape == (6,) and obs.dtype == torch.int64  # the Discrete index as it is (the agent one-hots it)
    coins = obs.clone()
    for _ in range(4):
        obs, reward, term, trunc, info = env.step(coins)
    assert term.all()
    assert torch.equal(reward, torch.ones(6))
    assert torch.equal(info["episode"]["r"], torch.ones(6, dtype=torch.float64))
    assert torch.equal(info["episode"]["l"], torch.full((6,), 4))
    assert torch.equal(info["final_obs"], torch.full((6,), 2))
    assert (obs != 2).all()  # already the next episode's coin


def test_make_vec_env_from_a_gymnasium_id_matches_gymnasium():
    env = rlmem.make_vec_env("CartPole-v1", num_envs=3, seed=11)
    ref = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 3,
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = env.reset()
    ref_obs, _ = ref.reset(seed=11)
    np.testing.assert_allclose(obs.numpy(), ref_obs)
    saw_done = False
    for t in range(60):
        actions = np.array([t % 2, 1, 0])
        obs, reward, term, trunc, info = env.step(torch.as_tensor(actions))
        ref_obs, ref_reward, ref_term, ref_trunc, ref_info = ref.step(actions)
        np.testing.assert_allclose(obs.numpy(), ref_obs)
        np.testing.assert_array_equal(term.numpy(), ref_term)
        for i in np.flatnonzero(ref_term | ref_trunc):
            saw_done = True
            np.testing.assert_allclose(info["final_obs"][i].numpy(), ref_info["final_obs"][i])
    assert saw_done


def test_make_vec_env_async_and_vector_env_inputs():
    env = rlmem.make_vec_env("CartPole-v1", num_envs=2, vectorization="async", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 4)
    env.step(torch.zeros(2, dtype=torch.long))
    env.close()
    same_step = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                             vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    assert isinstance(rlmem.make_vec_env(same_step), GymVectorEnvAdapter)


def test_bad_env_inputs_say_what_is_accepted():
    next_step = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with pytest.raises(ValueError, match="needs AutoresetMode.SAME_STEP"):
        rlmem.make_vec_env(next_step)
    with pytest.raises(TypeError, match="pass an env id or a callable"):
        rlmem.make_vec_env(gym.make("CartPole-v1"), 2)
    with pytest.raises(ValueError, match="vectorization must be one of"):
        rlmem.make_vec_env("CartPole-v1", 2, vectorization="threads")
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1, got 0"):
        rlmem.make_vec_env("rlmem/RepeatPreviousEasy-v0", 0)


def test_resolve_device():
    assert rlmem.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert rlmem.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        rlmem.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' requested but no CUDA GPU is available"):
            rlmem.resolve_device("cuda")
