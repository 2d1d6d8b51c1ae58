"""Behaviour of RepeatFirst: a memory policy on its observations, chance against num_symbols, semantics.

Seeding, bad arguments, out-of-range actions, the oracle and chance (on the Easy level): tests/test_tasks.py.
"""

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
        assert torch.equal(first, env.oracle_actions())
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
    """Remembering the first observation is optimal: the task is solvable from what it shows."""
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
    assert env.chance_return() == pytest.approx(chance)
    # Each step is an independent +-1/length coin with P(+)=p: Var(return) = 4p(1-p)/length.
    std_of_mean = math.sqrt(4 * p * (1 - p) / length / returns.numel())
    assert abs(returns.mean().item() - chance) < 5 * std_of_mean


def test_one_symbol_is_too_few():
    # (Negative, zero, float, bool and string settings: tests/test_tasks.py.)
    with pytest.raises(ValueError, match="num_symbols must be an integer >= 2, got 1"):
        RepeatFirst(num_symbols=1)


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
