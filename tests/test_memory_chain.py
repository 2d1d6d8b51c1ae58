"""Behaviour of MemoryChain: a memory policy on its observations, its returns, the observation layout, the probe.

Seeding, bad arguments, out-of-range actions, the oracle and chance (on the Easy level): tests/test_tasks.py.
"""

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
        assert torch.equal(actions[asked], env.oracle_actions()[asked])  # the scored answer is the oracle's
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
    """Remembering the context shown at step 0 is optimal: the task is solvable from what it shows."""
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
    assert abs(returns.mean().item() - env.chance_return()) < 5 / math.sqrt(returns.numel())


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


def test_the_probe_reads_the_context_bits_at_the_first_step_only():
    env = MemoryChain(16, seed=2, memory_length=3, num_bits=3)
    obs, _ = env.reset()
    observations, steps, contexts = [obs], [torch.zeros(16, dtype=torch.int64)], [env.context.clone()]
    for t in range(1, 9):
        obs, _, _, _, _ = env.step(env.oracle_actions())
        observations.append(obs)
        steps.append(torch.full((16,), t % 3))
        contexts.append(env.context.clone())
    labels, valid, reads = env.probe_labels(torch.stack(observations), torch.stack(steps))
    assert reads == "the context bits shown at the episode's first step"
    assert torch.equal(valid, torch.stack(steps) == 0)
    as_class = (torch.stack(contexts) * torch.tensor([1, 2, 4])).sum(-1)  # bit i weighs 2**i
    assert torch.equal(labels[valid], as_class[valid])
    assert labels[valid].unique().numel() > 4  # the contexts vary
