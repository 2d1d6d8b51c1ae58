"""Behaviour of RepeatFirst: optimal and chance returns, seeding, validation, semantics."""

from __future__ import annotations

import math

import pytest
import torch

from rlmem.envs.repeat_first import RepeatFirst, RepeatFirstEasy, RepeatFirstHard, RepeatFirstMedium

LEVELS = [(RepeatFirstEasy, 52), (RepeatFirstMedium, 416), (RepeatFirstHard, 832)]


def _optimal_returns(env: RepeatFirst, episodes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Play ``episodes`` full episodes per env remembering the first one-hot; return (r, l)."""
    obs, _ = env.reset(seed=seed)
    first = obs.argmax(dim=1)
    returns, lengths = [], []
    for _ in range(episodes * env.length):
        obs, reward, terminated, truncated, info = env.step(first)
        assert bool((reward > 0).all())
        assert not bool(truncated.any())
        done = info["_episode"]
        returns.append(info["episode"]["r"][done])
        lengths.append(info["episode"]["l"][done])
        first = torch.where(done, obs.argmax(dim=1), first)
    return torch.cat(returns), torch.cat(lengths)


@pytest.mark.parametrize(("cls", "length"), LEVELS)
def test_optimal_policy_returns_one_on_every_level(cls, length):
    env = cls(num_envs=64, seed=0)
    assert env.length == env.max_episode_steps == length
    returns, lengths = _optimal_returns(env, episodes=2, seed=1)
    assert returns.numel() == 2 * 64
    assert torch.allclose(returns, torch.ones_like(returns), atol=1e-6, rtol=0)
    assert bool((lengths == length).all())


@pytest.mark.parametrize("num_symbols", [2, 4, 7])
def test_random_policy_matches_chance(num_symbols):
    num_envs, length, episodes = 256, 20, 4
    env = RepeatFirst(num_envs, seed=0, length=length, num_symbols=num_symbols)
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(4)
    returns = []
    for _ in range(episodes * length):
        actions = torch.randint(num_symbols, (num_envs,), generator=gen)
        _, _, _, _, info = env.step(actions)
        returns.append(info["episode"]["r"][info["_episode"]])
    returns = torch.cat(returns)
    assert returns.numel() == num_envs * episodes
    p = 1.0 / num_symbols
    chance = 2 * p - 1
    # Each step is an independent +-1/length coin with P(+)=p: Var(return) = 4p(1-p)/length.
    std_of_mean = math.sqrt(4 * p * (1 - p) / length / returns.numel())
    assert abs(returns.mean().item() - chance) < 5 * std_of_mean


def _trajectory(env: RepeatFirst, seed: int, steps: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    obs, _ = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(7)
    all_obs, all_rewards = [obs], []
    for _ in range(steps):
        obs, reward, _, _, _ = env.step(torch.randint(env.num_symbols, (env.num_envs,), generator=gen))
        all_obs.append(obs)
        all_rewards.append(reward)
    return torch.stack(all_obs), torch.stack(all_rewards)


def test_same_seed_same_trajectory_different_seed_differs():
    obs_a, rew_a = _trajectory(RepeatFirst(8, seed=0, length=30), seed=123)
    obs_b, rew_b = _trajectory(RepeatFirst(8, seed=99, length=30), seed=123)
    obs_c, rew_c = _trajectory(RepeatFirst(8, seed=0, length=30), seed=124)
    assert torch.equal(obs_a, obs_b) and torch.equal(rew_a, rew_b)
    assert not torch.equal(obs_a, obs_c)
    assert not torch.equal(rew_a, rew_c)
    # The constructor seed alone is deterministic too.
    env_d, env_e = RepeatFirst(8, seed=5), RepeatFirst(8, seed=5)
    assert torch.equal(env_d.reset()[0], env_e.reset()[0])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"length": 0}, "length"),
        ({"length": -5}, "length"),
        ({"length": 2.5}, "length"),
        ({"length": True}, "length"),
        ({"num_symbols": 1}, "num_symbols"),
        ({"num_symbols": 0}, "num_symbols"),
        ({"num_symbols": -2}, "num_symbols"),
        ({"num_symbols": 3.0}, "num_symbols"),
        ({"num_envs": 0}, "num_envs"),
    ],
)
def test_invalid_kwargs_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RepeatFirst(**kwargs)


@pytest.mark.parametrize("bad", [4, -1])
def test_check_actions_rejects_out_of_range(bad):
    env = RepeatFirst(4, seed=0, check_actions=True, num_symbols=4)
    env.reset()
    env.step(torch.tensor([0, 1, 2, 3]))  # in range: fine
    with pytest.raises(ValueError, match="action space"):
        env.step(torch.tensor([0, bad, 1, 2]))


def test_spaces_and_observations():
    env = RepeatFirstMedium(16, seed=0, num_symbols=5)
    assert env.length == 416
    assert env.single_action_space.n == 5
    assert env.single_observation_space.shape == (5,)
    obs, _ = env.reset()
    assert obs.dtype == torch.float32 and obs.shape == (16, 5)
    assert bool((obs.sum(dim=1) == 1).all())
    assert env.observation_space.shape == (16, 5)


def test_step_zero_is_rewarded_and_target_is_the_first_symbol():
    length, num_symbols = 10, 4
    env = RepeatFirst(64, seed=0, length=length, num_symbols=num_symbols)
    obs, _ = env.reset(seed=11)
    first = obs.argmax(dim=1)
    # Step 0 already counts: naming the shown symbol earns +1/length, anything else -1/length.
    _, reward, _, _, _ = env.step(first)
    assert torch.allclose(reward, torch.full((64,), 1.0 / length))
    obs, _ = env.reset(seed=11)
    _, reward, _, _, _ = env.step((first + 1) % num_symbols)
    assert torch.allclose(reward, torch.full((64,), -1.0 / length))
    # Later steps compare with the step-0 symbol, not the one shown now.
    obs, reward, _, _, _ = env.step(first)
    current = obs.argmax(dim=1)
    differs = current != first
    assert bool(differs.any()) and bool((~differs).any())
    _, reward, _, _, _ = env.step(current)
    expected = torch.where(differs, -1.0 / length, 1.0 / length).to(torch.float32)
    assert torch.allclose(reward, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step_does_not_synchronise_on_cuda():
    env = RepeatFirst(64, device="cuda", seed=0, length=8)
    env.reset()
    actions = torch.zeros(64, dtype=torch.int64, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(20):
            env.step(actions)
    finally:
        torch.cuda.set_sync_debug_mode(0)
