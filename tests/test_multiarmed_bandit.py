"""Behaviour of MultiarmedBandit: the oracle on every level, returns against the drawn arms, observation of pulls.

Seeding, bad arguments, out-of-range actions, the oracle and chance on the Easy level: tests/test_tasks.py.
"""

from __future__ import annotations

import pytest
import torch

from rlmem.envs.multiarmed_bandit import (
    MultiarmedBandit,
    MultiarmedBanditEasy,
    MultiarmedBanditHard,
    MultiarmedBanditMedium,
)

LEVELS = [
    (MultiarmedBanditEasy, 10, 200),
    (MultiarmedBanditMedium, 20, 400),
    (MultiarmedBanditHard, 30, 600),
]


@pytest.mark.parametrize(("cls", "num_arms", "length"), LEVELS)
def test_oracle_returns_one_over_consecutive_episodes(cls, num_arms, length):
    """The oracle pulls the known best arm, on every level (tests/test_tasks.py: on Easy, as for every
    task); each episode draws new payout probabilities."""
    env = cls(num_envs=64, seed=0)
    assert (env.num_arms, env.length, env.max_episode_steps) == (num_arms, length, length)
    env.reset()
    probs_at_start = env.arm_probs.clone()
    returns = []
    for t in range(1, 2 * length + 1):
        actions = env.oracle_actions()
        assert torch.equal(actions, env.arm_probs.argmax(dim=1))
        _, _, terminated, truncated, info = env.step(actions)
        assert not truncated.any()
        assert terminated.all() == (t % length == 0) and terminated.any() == (t % length == 0)
        if t % length == 0:
            assert (info["episode"]["l"] == length).all()
            returns.append(info["episode"]["r"])
    assert len(returns) == 2
    for r in returns:
        torch.testing.assert_close(r, torch.ones_like(r), atol=1e-6, rtol=0)
    # Each episode drew new payout probabilities.
    assert not torch.equal(env.arm_probs, probs_at_start)


def test_suboptimal_arm_return_is_its_normalised_expected_payout():
    env = MultiarmedBandit(num_envs=64, seed=1, num_arms=5, length=50)
    env.reset()
    p = env.arm_probs.clone()
    assert ((p > 0) & (p <= 1)).all()
    worst = p.argmin(dim=1)
    for _ in range(50):
        _, reward, _, _, info = env.step(worst)
        expected = p.amin(dim=1) / (p.amax(dim=1) * 50)
        torch.testing.assert_close(reward, expected)
    torch.testing.assert_close(
        info["episode"]["r"], (p.amin(dim=1) / p.amax(dim=1)).double(), atol=1e-6, rtol=0
    )


def test_random_policy_is_at_chance():
    env = MultiarmedBanditEasy(num_envs=512, seed=2)
    gen = torch.Generator().manual_seed(2)
    env.reset()
    p = env.arm_probs
    chance = (p.mean(dim=1) / p.amax(dim=1)).mean().item()
    assert 0.45 < chance < 0.65  # about 0.5 + 1/(2 * num_arms) on average over draws of p
    for _ in range(env.length):
        _, _, _, _, info = env.step(torch.randint(env.num_arms, (512,), generator=gen))
    assert info["_episode"].all()
    # Per-env return has std about sqrt(Var(p[a]/max p) / length) ~ 0.02; over 512 envs the
    # mean has std ~ 0.001, so 0.01 is many sigma.
    assert abs(info["episode"]["r"].mean().item() - chance) < 0.01


def test_observation_carries_previous_pull_and_payout():
    env = MultiarmedBandit(num_envs=1024, seed=3, num_arms=4, length=20)
    obs, _ = env.reset()
    assert obs.dtype == torch.float32 and obs.shape == (1024, 5)
    assert (obs == 0).all()  # nothing pulled yet
    gen = torch.Generator().manual_seed(3)
    payout_minus_p = []
    for t in range(1, 21):
        p = env.arm_probs.clone()
        actions = torch.randint(4, (1024,), generator=gen)
        obs, _, terminated, _, info = env.step(actions)
        seen = info["final_obs"]  # == obs except on the last step, where obs is reset
        assert env.observation_space.contains(seen.numpy())
        assert torch.equal(seen[:, :4], torch.nn.functional.one_hot(actions, 4).float())
        payout = seen[:, 4]
        assert ((payout == 0) | (payout == 1)).all()
        payout_minus_p.append(payout - p.gather(1, actions[:, None]).squeeze(1))
        if t < 20:
            assert not terminated.any() and torch.equal(obs, seen)
        else:
            assert terminated.all() and (obs == 0).all()  # the next episode starts blank
    # Payouts are Bernoulli(p[a]): mean(payout - p) ~ 0 with std ~ 0.002 over 20480 pulls.
    assert abs(torch.cat(payout_minus_p).mean().item()) < 0.015
    # Sure and impossible arms: set p and check the payout follows it.
    env.reset()
    env.arm_probs[:, 0] = 1.0
    env.arm_probs[:, 1] = 0.0
    obs, _, _, _, _ = env.step(torch.zeros(1024, dtype=torch.long))
    assert (obs[:, 4] == 1).all()
    obs, _, _, _, _ = env.step(torch.ones(1024, dtype=torch.long))
    assert (obs[:, 4] == 0).all()


def test_one_arm_is_too_few():
    # (Negative, zero, float, bool and string settings: tests/test_tasks.py.)
    with pytest.raises(ValueError, match="num_arms must be an integer >= 2, got 1"):
        MultiarmedBandit(num_envs=2, num_arms=1)
