"""Behaviour of MaskedCartPole: solvable from two observations, gymnasium dynamics, time limit, noise.

Seeding, bad arguments, out-of-range actions, the oracle and chance (on the Easy level): tests/test_tasks.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control import CartPoleEnv

from rlmem.envs.masked_cartpole import (
    MaskedCartPole,
    MaskedCartPoleEasy,
    MaskedCartPoleHard,
    MaskedCartPoleMedium,
)

TAU = 0.02
# State feedback on [x, x_dot, theta, theta_dot] (push right when positive).
GAINS = (1.0, 1.5, 18.0, 3.0)


def _pd_action(obs: torch.Tensor, prev_obs: torch.Tensor) -> torch.Tensor:
    """Bang-bang state feedback with the velocities estimated by finite differences."""
    vel = (obs - prev_obs) / TAU
    u = GAINS[0] * obs[:, 0] + GAINS[1] * vel[:, 0] + GAINS[2] * obs[:, 1] + GAINS[3] * vel[:, 1]
    return (u > 0).long()


def test_levels():
    assert MaskedCartPoleEasy(num_envs=1).noise_std == 0.0
    assert MaskedCartPoleMedium(num_envs=1).noise_std == 0.05
    assert MaskedCartPoleHard(num_envs=1).noise_std == 0.1
    for level in (MaskedCartPoleEasy, MaskedCartPoleMedium, MaskedCartPoleHard):
        env = level(num_envs=3)
        assert env.max_steps == env.max_episode_steps == 500
        assert env.single_observation_space.shape == (2,)
        assert env.single_action_space.n == 2


def test_finite_difference_controller_balances_for_two_full_episodes():
    env = MaskedCartPoleEasy(num_envs=64, seed=0)
    obs, _ = env.reset()
    assert obs.dtype == torch.float32 and obs.shape == (64, 2)
    prev = obs.clone()  # velocity estimate 0 on an episode's first step
    returns = []
    for t in range(1, 2 * 500 + 1):
        action = _pd_action(obs, prev)
        prev = obs
        obs, reward, terminated, truncated, info = env.step(action)
        assert not terminated.any(), f"pole fell at step {t}"
        done = info["_episode"]
        assert torch.equal(done, truncated)
        if t % 500 == 0:
            assert done.all()
            assert (info["episode"]["l"] == 500).all()
            returns.append(info["episode"]["r"])
        else:
            assert not done.any()
        prev = torch.where(done.unsqueeze(1), obs, prev)
    assert len(returns) == 2
    for r in returns:
        torch.testing.assert_close(r, torch.ones_like(r), atol=1e-6, rtol=0)


def test_random_policy_falls_quickly():
    env = MaskedCartPoleEasy(num_envs=256, seed=2)
    gen = torch.Generator().manual_seed(2)
    env.reset()
    lengths, returns = [], []
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(torch.randint(2, (256,), generator=gen))
        assert not truncated.any()
        done = info["_episode"]
        assert torch.equal(done, terminated)
        lengths.append(info["episode"]["l"][done])
        returns.append(info["episode"]["r"][done])
    lengths, returns = torch.cat(lengths), torch.cat(returns)
    assert lengths.numel() > 1000
    # CartPole's random policy lasts about 22 steps on average.
    assert 10 <= lengths.double().mean().item() <= 40
    torch.testing.assert_close(returns, lengths.double() / 500, atol=1e-6, rtol=0)


def test_dynamics_match_gymnasium():
    n = 6
    env = MaskedCartPoleEasy(num_envs=n, seed=4)
    obs, _ = env.reset()
    torch.testing.assert_close(obs, env.state[:, [0, 2]], atol=0, rtol=0)
    assert (env.state.abs() <= 0.05).all()
    refs = []
    for i in range(n):
        ref = CartPoleEnv()
        ref.reset(seed=i)
        ref.state = env.state[i].double().numpy().copy()
        refs.append(ref)
    alive = [True] * n
    gen = torch.Generator().manual_seed(4)
    steps = 0
    while any(alive):
        actions = torch.randint(2, (n,), generator=gen)
        _, reward, terminated, truncated, info = env.step(actions)
        steps += 1
        for i, ref in enumerate(refs):
            if not alive[i]:
                continue
            ref_obs, ref_reward, ref_term, ref_trunc, _ = ref.step(int(actions[i]))
            np.testing.assert_allclose(
                info["final_obs"][i].numpy(), ref_obs[[0, 2]], atol=1e-5, rtol=0
            )
            assert bool(terminated[i]) == ref_term
            assert math.isclose(float(reward[i]) * 500, ref_reward, rel_tol=1e-6)
            if ref_term:
                alive[i] = False
                assert int(info["episode"]["l"][i]) == steps
        assert steps < 500


def test_truncation_at_max_steps():
    env = MaskedCartPole(num_envs=16, seed=5, max_steps=7)
    obs, _ = env.reset()
    prev = obs.clone()
    for t in range(1, 15):
        action = _pd_action(obs, prev)
        prev = obs
        obs, reward, terminated, truncated, info = env.step(action)
        assert not terminated.any()
        assert truncated.all() == (t % 7 == 0) and truncated.any() == (t % 7 == 0)
        torch.testing.assert_close(reward, torch.full((16,), 1 / 7), atol=1e-7, rtol=0)
        if t % 7 == 0:
            assert (info["episode"]["l"] == 7).all()
            torch.testing.assert_close(
                info["episode"]["r"], torch.ones(16, dtype=torch.float64), atol=1e-6, rtol=0
            )
            # The final observation is the state the time limit cut; obs starts a new episode.
            assert (obs.abs() <= 0.05).all()
        prev = torch.where(info["_episode"].unsqueeze(1), obs, prev)


def test_termination_on_fall():
    env = MaskedCartPoleEasy(num_envs=32, seed=6)
    env.reset()
    push_right = torch.ones(32, dtype=torch.long)
    fell = torch.zeros(32, dtype=torch.bool)
    for _ in range(40):
        _, reward, terminated, truncated, info = env.step(push_right)
        assert not truncated.any()
        first_fall = terminated & ~fell
        if first_fall.any():
            final = info["final_obs"][first_fall]
            out = (final[:, 0].abs() > 2.4) | (final[:, 1].abs() > 12 * 2 * math.pi / 360)
            assert out.all()
            # The step on which the pole falls is rewarded too.
            lengths = info["episode"]["l"][first_fall]
            torch.testing.assert_close(
                info["episode"]["r"][first_fall], lengths.double() / 500, atol=1e-6, rtol=0
            )
        fell |= terminated
    assert fell.all()


def test_observation_noise():
    env = MaskedCartPoleMedium(num_envs=4096, seed=7)
    obs, _ = env.reset()
    noise = [obs - env.state[:, [0, 2]]]
    for _ in range(3):
        obs, _, _, _, info = env.step(torch.zeros(4096, dtype=torch.long))
        # final_obs and obs agree where the episode went on (one noise draw per step).
        assert torch.equal(info["final_obs"][~info["_episode"]], obs[~info["_episode"]])
        noise.append(obs - env.state[:, [0, 2]])
    noise = torch.cat(noise)
    assert abs(noise.mean().item()) < 0.005
    assert abs(noise.std().item() - 0.05) < 0.0025
    assert not torch.equal(noise[0], noise[1])


def test_seeding_with_observation_noise():
    """The noise comes from the batch's generator too (seeding in general: tests/test_tasks.py)."""
    def rollout(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        env = MaskedCartPoleHard(num_envs=32, seed=seed)
        gen = torch.Generator().manual_seed(0)
        obs, _ = env.reset()
        all_obs, all_flags = [obs], []
        for _ in range(60):
            obs, _, terminated, _, _ = env.step(torch.randint(2, (32,), generator=gen))
            all_obs.append(obs)
            all_flags.append(terminated)
        return torch.stack(all_obs), torch.stack(all_flags)

    (obs_a, flags_a), (obs_b, flags_b) = rollout(11), rollout(11)
    assert torch.equal(obs_a, obs_b) and torch.equal(flags_a, flags_b)
    assert not torch.equal(obs_a, rollout(12)[0])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_noise_std_must_be_finite_and_not_negative(bad):
    # (Strings, bools and the like, and every bad max_steps: tests/test_tasks.py.)
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0"):
        MaskedCartPole(num_envs=2, noise_std=bad)
