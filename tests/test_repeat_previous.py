"""RepeatPrevious: rewards and episode ends against a plain per-env Python reference, and its saved state."""

from __future__ import annotations

import pytest
import torch

from rlmem.envs.repeat_previous import RepeatPrevious, RepeatPreviousEasy


def _symbol(obs: torch.Tensor) -> list[int]:
    return obs.argmax(-1).tolist()


@pytest.mark.parametrize("k,length", [(0, 5), (3, 9), (4, 52)])
def test_rewards_and_ends_match_a_python_reference(k, length):
    """Random actions, several episodes: every reward, termination and observation as a per-env list says."""
    n, scale = 5, 1.0 / (length - k)
    env = RepeatPrevious(n, seed=3, k=k, length=length)
    obs, _ = env.reset(seed=3)
    shown = [[s] for s in _symbol(obs)]  # the symbols of each env's current episode
    gen = torch.Generator().manual_seed(0)
    for _ in range(3 * length + 2):
        actions = torch.randint(4, (n,), generator=gen)
        obs, reward, terminated, truncated, info = env.step(actions)
        for i in range(n):
            t = len(shown[i]) - 1  # this step's index in the episode
            expected = 0.0 if t < k else (scale if actions[i].item() == shown[i][t - k] else -scale)
            assert reward[i].item() == pytest.approx(expected)
            assert bool(terminated[i]) == (t == length - 1)
            assert not bool(truncated[i])
            if terminated[i]:
                shown[i] = []
            shown[i].append(_symbol(obs[i:i + 1])[0])


def test_perfect_policy_returns_exactly_one():
    """A policy that remembers the observations is perfect, and names what the task's oracle names."""
    env = RepeatPreviousEasy(8, seed=1)
    obs, _ = env.reset(seed=1)
    past = [_symbol(obs)]
    returns = torch.zeros(8, dtype=torch.float64)
    for t in range(52):
        actions = torch.tensor(past[t - 4]) if t >= 4 else torch.zeros(8, dtype=torch.int64)
        if t >= 4:
            assert torch.equal(actions, env.oracle_actions())
        obs, reward, terminated, _, info = env.step(actions)
        past.append(_symbol(obs))
        returns += reward.double()
    assert terminated.all()
    assert torch.allclose(info["episode"]["r"], torch.ones(8, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(returns, torch.ones(8, dtype=torch.float64), atol=1e-5)


def test_state_saved_with_a_python_counter_still_loads():
    """Checkpoints written while the ring's step counter was a Python int continue exactly."""
    env = RepeatPreviousEasy(4, seed=2)
    env.reset(seed=2)
    for _ in range(7):
        env.step(torch.zeros(4, dtype=torch.int64))
    state = env.state_dict()
    old = {**state, "tensors": {k: v for k, v in state["tensors"].items() if k != "step_count"},
           "attributes": {"_step_count": int(state["tensors"]["step_count"])}}
    a, b = RepeatPreviousEasy(4, seed=9), RepeatPreviousEasy(4, seed=9)
    a.load_state_dict(state)
    b.load_state_dict(old)
    actions = torch.tensor([0, 1, 2, 3])
    for _ in range(60):
        out_a, out_b = a.step(actions), b.step(actions)
        for x, y in zip(out_a[:4], out_b[:4]):
            assert torch.equal(x, y)
