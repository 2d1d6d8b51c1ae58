"""Behaviour of MemoryChain: optimal and chance returns, seeding, validation, observation layout."""

from __future__ import annotations

import math

import pytest
import torch

from rlmem.envs.memory_chain import MemoryChain, MemoryChainEasy, MemoryChainHard, MemoryChainMedium

LEVELS = [(MemoryChainEasy, 10, 2), (MemoryChainMedium, 30, 4), (MemoryChainHard, 100, 8)]


def _optimal_returns(env: MemoryChain, episodes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Remember the context shown at step 0, answer the query when it appears; return (r, l)."""
    bits = env.num_bits
    obs, _ = env.reset(seed=seed)
    context = obs[:, 1 + bits :] > 0
    returns, lengths = [], []
    for _ in range(episodes * env.memory_length):
        query = obs[:, 1 : 1 + bits]
        asked = query.sum(dim=1) > 0
        answer = context.gather(1, query.argmax(dim=1, keepdim=True)).squeeze(1).to(torch.int64)
        actions = torch.where(asked, answer, torch.zeros_like(answer))
        obs, reward, terminated, truncated, info = env.step(actions)
        assert torch.equal(reward, torch.where(terminated, 1.0, 0.0))
        assert not bool(truncated.any())
        done = info["_episode"]
        returns.append(info["episode"]["r"][done])
        lengths.append(info["episode"]["l"][done])
        context = torch.where(done.unsqueeze(1), obs[:, 1 + bits :] > 0, context)
    return torch.cat(returns), torch.cat(lengths)


@pytest.mark.parametrize(("cls", "memory_length", "num_bits"), LEVELS)
def test_optimal_policy_returns_one_on_every_level(cls, memory_length, num_bits):
    env = cls(num_envs=64, seed=0)
    assert env.memory_length == env.max_episode_steps == memory_length
    assert env.num_bits == num_bits
    assert env.single_observation_space.shape == (1 + 2 * num_bits,)
    assert env.single_action_space.n == 2
    returns, lengths = _optimal_returns(env, episodes=2, seed=1)
    assert returns.numel() == 2 * 64
    assert torch.allclose(returns, torch.ones_like(returns), atol=1e-6, rtol=0)
    assert bool((lengths == memory_length).all())


def test_optimal_policy_with_one_step_episodes():
    # memory_length=1: step 0 is also the last step, so context and query show together.
    env = MemoryChain(64, seed=0, memory_length=1, num_bits=3)
    returns, lengths = _optimal_returns(env, episodes=3, seed=2)
    assert returns.numel() == 3 * 64
    assert torch.allclose(returns, torch.ones_like(returns), atol=1e-6, rtol=0)
    assert bool((lengths == 1).all())


def test_random_policy_matches_chance():
    num_envs, memory_length, episodes = 1024, 10, 20
    env = MemoryChain(num_envs, seed=0, memory_length=memory_length, num_bits=2)
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(4)
    returns = []
    for _ in range(episodes * memory_length):
        _, _, _, _, info = env.step(torch.randint(2, (num_envs,), generator=gen))
        returns.append(info["episode"]["r"][info["_episode"]])
    returns = torch.cat(returns)
    assert returns.numel() == num_envs * episodes
    assert bool(((returns == 1.0) | (returns == -1.0)).all())
    # Each return is +-1 with P=1/2: variance 1, so the mean's std is 1/sqrt(n); 5 sigma.
    assert abs(returns.mean().item()) < 5 / math.sqrt(returns.numel())


def test_always_wrong_policy_returns_minus_one():
    env = MemoryChain(32, seed=0, memory_length=5, num_bits=4)
    obs, _ = env.reset(seed=9)
    context = obs[:, 5:] > 0
    for _ in range(4):
        obs, reward, _, _, _ = env.step(torch.zeros(32, dtype=torch.int64))
        assert bool((reward == 0).all())
    answer = context.gather(1, obs[:, 1:5].argmax(dim=1, keepdim=True)).squeeze(1).to(torch.int64)
    _, reward, terminated, _, info = env.step(1 - answer)
    assert bool(terminated.all())
    assert bool((reward == -1.0).all())
    assert bool((info["episode"]["r"] == -1.0).all())


def _trajectory(env: MemoryChain, seed: int, steps: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    obs, _ = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(7)
    all_obs, all_rewards = [obs], []
    for _ in range(steps):
        obs, reward, _, _, _ = env.step(torch.randint(2, (env.num_envs,), generator=gen))
        all_obs.append(obs)
        all_rewards.append(reward)
    return torch.stack(all_obs), torch.stack(all_rewards)


def test_same_seed_same_trajectory_different_seed_differs():
    kwargs = {"memory_length": 6, "num_bits": 5}
    obs_a, rew_a = _trajectory(MemoryChain(16, seed=0, **kwargs), seed=123)
    obs_b, rew_b = _trajectory(MemoryChain(16, seed=99, **kwargs), seed=123)
    obs_c, rew_c = _trajectory(MemoryChain(16, seed=0, **kwargs), seed=124)
    assert torch.equal(obs_a, obs_b) and torch.equal(rew_a, rew_b)
    assert not torch.equal(obs_a, obs_c)
    assert not torch.equal(rew_a, rew_c)
    env_d, env_e = MemoryChainHard(8, seed=5), MemoryChainHard(8, seed=5)
    assert torch.equal(env_d.reset()[0], env_e.reset()[0])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"memory_length": 0}, "memory_length"),
        ({"memory_length": -10}, "memory_length"),
        ({"memory_length": 10.0}, "memory_length"),
        ({"memory_length": True}, "memory_length"),
        ({"num_bits": 0}, "num_bits"),
        ({"num_bits": -1}, "num_bits"),
        ({"num_bits": 1.5}, "num_bits"),
        ({"num_envs": 0}, "num_envs"),
    ],
)
def test_invalid_kwargs_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MemoryChain(**kwargs)


@pytest.mark.parametrize("bad", [2, -1])
def test_check_actions_rejects_out_of_range(bad):
    env = MemoryChainEasy(4, seed=0, check_actions=True)
    env.reset()
    env.step(torch.tensor([0, 1, 1, 0]))  # in range: fine
    with pytest.raises(ValueError, match="action space"):
        env.step(torch.tensor([0, bad, 1, 0]))


def test_observation_layout():
    num_envs, memory_length, num_bits = 64, 5, 3
    env = MemoryChain(num_envs, seed=0, memory_length=memory_length, num_bits=num_bits)
    obs, _ = env.reset(seed=4)
    assert obs.dtype == torch.float32 and obs.shape == (num_envs, 1 + 2 * num_bits)
    time_left, query, context = obs[:, 0], obs[:, 1 : 1 + num_bits], obs[:, 1 + num_bits :]
    # Step 0: full time, no query yet, the context as +-1.
    assert bool((time_left == 1.0).all())
    assert bool((query == 0).all())
    assert bool(((context == 1.0) | (context == -1.0)).all())
    assert bool((context == 1.0).any()) and bool((context == -1.0).any())
    context_bits = context > 0
    for t in range(1, memory_length):
        obs, reward, terminated, _, _ = env.step(torch.zeros(num_envs, dtype=torch.int64))
        assert bool((reward == 0).all()) and not bool(terminated.any())
        time_left, query, context = obs[:, 0], obs[:, 1 : 1 + num_bits], obs[:, 1 + num_bits :]
        assert torch.allclose(time_left, torch.full((num_envs,), 1.0 - t / memory_length))
        assert bool((context == 0).all())  # the context is gone after step 0
        if t < memory_length - 1:
            assert bool((query == 0).all())
        else:  # last step: the query one-hot appears
            assert bool((query.sum(dim=1) == 1).all()) and bool(((query == 0) | (query == 1)).all())
            assert bool((query.argmax(dim=1) != query.argmax(dim=1)[0]).any())  # queries vary
    answer = context_bits.gather(1, query.argmax(dim=1, keepdim=True)).squeeze(1).to(torch.int64)
    obs, reward, terminated, _, info = env.step(answer)
    assert bool(terminated.all()) and bool((reward == 1.0).all())
    assert bool((info["episode"]["l"] == memory_length).all())
    # The final observation is the post-episode clock (0 time left) with nothing shown;
    # the returned observation is already step 0 of the next episode.
    final = info["final_obs"]
    assert bool((final == 0).all())
    assert bool((obs[:, 0] == 1.0).all()) and bool((obs[:, 1 + num_bits :].abs() == 1).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step_does_not_synchronise_on_cuda():
    env = MemoryChain(64, device="cuda", seed=0, memory_length=4, num_bits=3)
    env.reset()
    actions = torch.zeros(64, dtype=torch.int64, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(20):
            env.step(actions)
    finally:
        torch.cuda.set_sync_debug_mode(0)
