"""Behaviour of PassiveTMaze: optimal and chance returns, observation layout, seeding, validation."""

from __future__ import annotations

import pytest
import torch

from rlmem.envs.passive_tmaze import (
    PassiveTMaze,
    PassiveTMazeEasy,
    PassiveTMazeHard,
    PassiveTMazeMedium,
)

LEVELS = [(PassiveTMazeEasy, 10), (PassiveTMazeMedium, 100), (PassiveTMazeHard, 400)]


def _random_actions(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(2, (n,), generator=gen)


@pytest.mark.parametrize(("cls", "corridor_length"), LEVELS)
def test_memory_policy_returns_one_over_consecutive_episodes(cls, corridor_length):
    env = cls(num_envs=64, seed=0)
    assert env.corridor_length == corridor_length
    assert env.max_episode_steps == corridor_length + 1
    obs, _ = env.reset()
    remembered = obs[:, :2].argmax(dim=1)
    returns: list[torch.Tensor] = []
    for _ in range(2 * (corridor_length + 1)):
        obs, _, _, _, info = env.step(remembered)
        done = info["_episode"]
        if done.any():
            assert done.all()  # every episode has the same length
            returns.append(info["episode"]["r"])
            assert (info["episode"]["l"] == corridor_length + 1).all()
        # A fresh episode shows its goal in the first step's observation.
        shown = obs[:, :2].sum(dim=1) > 0
        remembered = torch.where(shown, obs[:, :2].argmax(dim=1), remembered)
    assert len(returns) == 2
    for r in returns:
        torch.testing.assert_close(r, torch.ones_like(r), atol=1e-6, rtol=0)


def test_random_policy_is_at_chance():
    env = PassiveTMaze(num_envs=2048, seed=1, corridor_length=3)
    gen = torch.Generator().manual_seed(1)
    env.reset()
    returns = []
    for _ in range(2 * 4):
        _, _, _, _, info = env.step(_random_actions(env.num_envs, gen))
        if info["_episode"].any():
            returns.append(info["episode"]["r"][info["_episode"]])
    returns = torch.cat(returns)
    assert returns.numel() == 2 * 2048
    # Bernoulli(0.5) returns: standard error 0.5 / sqrt(4096) ~ 0.008, so 0.04 is 5 sigma.
    assert abs(returns.mean().item() - 0.5) < 0.04


def test_observation_layout_and_episode_length():
    L = 4
    env = PassiveTMaze(num_envs=256, seed=3, corridor_length=L)
    obs, _ = env.reset()
    assert obs.dtype == torch.float32 and obs.shape == (256, 3)
    assert env.observation_space.contains(obs.numpy())
    # Step 0: one-hot of the goal in the first two entries, nothing in the third.
    assert (obs[:, :2].sum(dim=1) == 1).all()
    assert (obs[:, 2] == 0).all()
    goal = obs[:, :2].argmax(dim=1)
    assert torch.equal(goal, env.goal)
    assert 0 < goal.sum().item() < 256  # both sides get drawn
    wrong = 1 - goal
    for t in range(1, L + 1):
        # Corridor actions are ignored: even the wrong turn neither ends nor rewards anything.
        obs, reward, terminated, truncated, info = env.step(wrong)
        assert (reward == 0).all() and not terminated.any() and not truncated.any()
        if t < L:
            assert (obs == 0).all()  # corridor: all zeros
        else:
            assert torch.equal(obs, torch.tensor([0.0, 0.0, 1.0]).expand(256, 3))  # junction
    # At the junction, turning towards the goal in half the envs and away in the other half.
    actions = torch.where(torch.arange(256) % 2 == 0, goal, wrong)
    obs, reward, terminated, truncated, info = env.step(actions)
    assert terminated.all() and not truncated.any()
    expected = (torch.arange(256) % 2 == 0).to(torch.float32)
    assert torch.equal(reward, expected)
    assert torch.equal(info["episode"]["r"], expected.double())
    assert (info["episode"]["l"] == L + 1).all()
    # Same-step autoreset: the returned observation is the next episode's step 0.
    assert (obs[:, :2].sum(dim=1) == 1).all() and (obs[:, 2] == 0).all()
    assert (env.elapsed_steps == 0).all()


def test_corridor_length_one():
    env = PassiveTMaze(num_envs=8, seed=0, corridor_length=1)
    obs, _ = env.reset()
    goal = obs[:, :2].argmax(dim=1)
    obs, _, terminated, _, _ = env.step(goal)
    assert not terminated.any() and (obs[:, 2] == 1).all() and (obs[:, :2] == 0).all()
    _, reward, terminated, _, info = env.step(goal)
    assert terminated.all() and (reward == 1).all() and (info["episode"]["l"] == 2).all()


def _rollout(seed: int, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    env = PassiveTMaze(num_envs=64, seed=seed, corridor_length=5)
    gen = torch.Generator().manual_seed(0)
    obs, _ = env.reset()
    all_obs, all_rew = [obs], []
    for _ in range(steps):
        obs, reward, _, _, _ = env.step(_random_actions(64, gen))
        all_obs.append(obs)
        all_rew.append(reward)
    return torch.stack(all_obs), torch.stack(all_rew)


def test_seeding():
    obs_a, rew_a = _rollout(7)
    obs_b, rew_b = _rollout(7)
    assert torch.equal(obs_a, obs_b) and torch.equal(rew_a, rew_b)
    obs_c, _ = _rollout(8)
    assert not torch.equal(obs_a, obs_c)
    # reset(seed=...) re-seeds: same first observation as a fresh env with that seed.
    env = PassiveTMaze(num_envs=64, seed=123, corridor_length=5)
    obs, _ = env.reset(seed=7)
    assert torch.equal(obs, obs_a[0])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_invalid_corridor_length(bad):
    with pytest.raises(ValueError, match="corridor_length"):
        PassiveTMaze(num_envs=2, corridor_length=bad)


def test_check_actions():
    env = PassiveTMazeEasy(num_envs=4, seed=0, check_actions=True)
    env.reset()
    env.step(torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="action space"):
        env.step(torch.tensor([0, 2, 0, 1]))
    with pytest.raises(ValueError, match="action space"):
        env.step(torch.tensor([0, -1, 0, 1]))
