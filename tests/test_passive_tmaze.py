"""Behaviour of PassiveTMaze: a memory policy on its observations, the observation layout, what the probe reads.

Seeding, bad arguments, out-of-range actions, the oracle and chance (on the Easy level): tests/test_tasks.py.
"""

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


@pytest.mark.parametrize(("cls", "corridor_length"), LEVELS)
def test_memory_policy_returns_one_over_consecutive_episodes(cls, corridor_length):
    """Remembering the goal shown at step 0 is optimal (and is the oracle): the task is solvable from what it shows."""
    env = cls(num_envs=64, seed=0)
    assert env.corridor_length == corridor_length
    assert env.max_episode_steps == corridor_length + 1
    obs, _ = env.reset()
    remembered = obs[:, :2].argmax(dim=1)
    returns: list[torch.Tensor] = []
    for _ in range(2 * (corridor_length + 1)):
        assert torch.equal(remembered, env.oracle_actions())
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


def test_the_probe_reads_the_goal_side_at_the_first_step_only():
    env = PassiveTMaze(num_envs=16, seed=2, corridor_length=3)
    obs, _ = env.reset()
    observations, steps, goals = [obs], [torch.zeros(16, dtype=torch.int64)], [env.goal.clone()]
    for t in range(1, 9):
        obs, _, _, _, _ = env.step(env.oracle_actions())
        observations.append(obs)
        steps.append(torch.full((16,), t % 4))
        goals.append(env.goal.clone())
    labels, valid, reads = env.probe_labels(torch.stack(observations), torch.stack(steps))
    assert reads == "the goal side shown at the episode's first step"
    assert torch.equal(valid, torch.stack(steps) == 0)
    assert torch.equal(labels[valid], torch.stack(goals)[valid])
