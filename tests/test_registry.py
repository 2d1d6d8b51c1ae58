"""Every task is a gymnasium id with both entry points; bad ids and kwargs fail clearly."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import rlmem
from rlmem.envs.registry import LEVELS, TASKS

TASK_NAMES = ["RepeatPrevious", "RepeatFirst", "CountRecall", "PassiveTMaze", "MemoryChain",
              "MaskedCartPole", "MultiarmedBandit", "PixelRepeatPrevious"]


def test_every_task_and_level_is_registered():
    expected = {f"rlmem/{t}{lvl}-v0" for t in TASK_NAMES for lvl in ("", *LEVELS)}
    assert set(TASKS) == expected
    assert expected <= set(gym.registry)
    for env_id in expected:
        spec = gym.spec(env_id)
        assert spec.entry_point is not None and spec.vector_entry_point is not None


@pytest.mark.parametrize("env_id", sorted(TASKS))
def test_check_env_passes(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", sorted(TASKS))
def test_make_vec_vector_entry_point_matches_native_batch(env_id):
    vec = gym.make_vec(env_id, num_envs=5, vectorization_mode="vector_entry_point")
    native = TASKS[env_id](num_envs=5, seed=7)
    obs, _ = vec.reset(seed=7)
    native_obs, _ = native.reset(seed=7)
    assert obs.shape == (5, *vec.single_observation_space.shape)
    np.testing.assert_array_equal(obs, native_obs.numpy())
    vec.action_space.seed(0)
    for _ in range(30):
        actions = vec.action_space.sample()
        obs, reward, term, trunc, _ = vec.step(actions)
        n_obs, n_reward, n_term, n_trunc, _ = native.step(torch.as_tensor(actions))
        np.testing.assert_array_equal(obs, n_obs.numpy())
        np.testing.assert_array_equal(reward, n_reward.numpy())
        np.testing.assert_array_equal(term | trunc, (n_term | n_trunc).numpy())
    vec.close()


def test_level_ids_carry_the_level_settings_and_base_id_takes_kwargs():
    assert gym.make("rlmem/RepeatPreviousMedium-v0").unwrapped.env.k == 32
    env = gym.make("rlmem/RepeatPrevious-v0", k=7, length=20).unwrapped.env
    assert (env.k, env.length) == (7, 20)
    vec = gym.make_vec("rlmem/PassiveTMaze-v0", num_envs=3, vectorization_mode="vector_entry_point",
                       corridor_length=5)
    assert vec.env.max_episode_steps == 6


def test_unknown_id_names_the_closest_match():
    with pytest.raises(ValueError, match=r"unknown env id 'rlmem/RepeatPrevius-v0'; did you mean 'rlmem/RepeatPrevious-v0'"):
        rlmem.make_vec_env("rlmem/RepeatPrevius-v0", 2)
    with pytest.raises(ValueError, match="did you mean 'rlmem/RepeatPrevious-v0'"):
        rlmem.make_env("rlmem/RepeatPrevius-v0")


@pytest.mark.parametrize(
    "env_id, kwargs, field",
    [
        ("rlmem/RepeatPrevious-v0", {"k": 52, "length": 52}, "k"),
        ("rlmem/RepeatPrevious-v0", {"length": -3}, "length"),
        ("rlmem/MemoryChain-v0", {"num_bits": 0}, "num_bits"),
        ("rlmem/PassiveTMaze-v0", {"corridor_length": -1}, "corridor_length"),
    ],
)
def test_impossible_kwargs_name_the_field(env_id, kwargs, field):
    with pytest.raises(ValueError, match=field):
        rlmem.make_vec_env(env_id, 2, env_kwargs=kwargs)
    with pytest.raises(ValueError, match=field):
        gym.make(env_id, **kwargs)


def test_out_of_range_action_is_a_clear_error_in_both_gymnasium_views():
    env = gym.make("rlmem/RepeatPreviousEasy-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"outside the action space Discrete\(4\)"):
        env.step(4)
    vec = gym.make_vec("rlmem/RepeatPreviousEasy-v0", num_envs=3, vectorization_mode="vector_entry_point")
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"action -1 of env 2 is outside the action space Discrete\(4\)"):
        vec.step(np.array([0, 1, -1]))


def test_rendering_is_refused_with_the_allowed_value():
    with pytest.raises(ValueError, match="render_mode 'human' is not supported"):
        gym.make("rlmem/RepeatPreviousEasy-v0", render_mode="human")


@pytest.mark.parametrize("env_id", sorted(TASKS))
def test_can_truncate_tells_the_truth(env_id):
    """A task that says it never truncates does not, over two whole episodes of random actions;
    MaskedCartPole (the one with a step limit) says it can."""
    env = TASKS[env_id](num_envs=8, seed=3)
    assert env.can_truncate == env_id.startswith("rlmem/MaskedCartPole")
    if env.can_truncate:
        return
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2 * env.max_episode_steps):
        actions = torch.randint(int(env.single_action_space.n), (8,), generator=gen)
        _, _, _, truncated, _ = env.step(actions)
        assert not truncated.any()
