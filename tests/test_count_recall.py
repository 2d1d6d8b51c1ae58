"""Behaviour of CountRecall: a tallying policy on its observations, chance against the deck, the deck, semantics.

Seeding, bad arguments, out-of-range actions, the oracle and chance (on the Easy level): tests/test_tasks.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlmem.envs.count_recall import CountRecall, CountRecallEasy, CountRecallHard, CountRecallMedium

LEVELS = [(CountRecallEasy, 2, 52), (CountRecallMedium, 4, 104), (CountRecallHard, 13, 208)]


def _split(obs: torch.Tensor, num_values: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dealt one-hot as int64 [N, V], query index [N]) from an observation."""
    return obs[:, :num_values].to(torch.int64), obs[:, num_values:].argmax(dim=1)


@pytest.mark.parametrize(("cls", "num_values", "deck_size"), LEVELS)
def test_optimal_policy_returns_one_on_every_level(cls, num_values, deck_size):
    """Tallying the dealt cards shown is optimal (and is the oracle): the observations show the whole deck."""
    env = cls(num_envs=64, seed=0)
    length = deck_size - 1
    assert env.num_values == num_values and env.deck_size == deck_size
    assert env.max_episode_steps == length
    assert env.single_action_space.n == deck_size // num_values + 1
    assert env.single_observation_space.shape == (2 * num_values,)
    obs, _ = env.reset(seed=1)
    dealt, query = _split(obs, num_values)
    counts = dealt.clone()  # the agent's tally of dealt values
    deck_seen = dealt.clone()  # every card shown, final observations included
    returns, lengths = [], []
    for _ in range(2 * length):
        actions = counts.gather(1, query.unsqueeze(1)).squeeze(1)
        assert torch.equal(actions, env.oracle_actions())
        obs, reward, _, truncated, info = env.step(actions)
        assert bool((reward > 0).all())
        assert not bool(truncated.any())
        done = info["_episode"]
        returns.append(info["episode"]["r"][done])
        lengths.append(info["episode"]["l"][done])
        last_card, _ = _split(info["final_obs"], num_values)
        deck_seen += torch.where(done.unsqueeze(1), last_card, 0)
        if bool(done.any()):
            # The whole deck was shown, each value exactly deck_size / num_values times.
            assert bool((deck_seen[done] == deck_size // num_values).all())
        deck_seen = torch.where(done.unsqueeze(1), 0, deck_seen)
        counts = torch.where(done.unsqueeze(1), 0, counts)
        dealt, query = _split(obs, num_values)
        counts += dealt
        deck_seen += dealt
    returns, lengths = torch.cat(returns), torch.cat(lengths)
    assert returns.numel() == 2 * 64
    assert torch.allclose(returns, torch.ones_like(returns), atol=1e-6, rtol=0)
    assert bool((lengths == length).all())


@pytest.mark.parametrize(("num_values", "deck_size"), [(2, 52), (3, 9), (13, 26)])
def test_random_policy_matches_chance(num_values, deck_size):
    num_envs, episodes = 256, 4
    env = CountRecall(num_envs, seed=0, num_values=num_values, deck_size=deck_size)
    num_actions, length = env.single_action_space.n, deck_size - 1
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(4)
    returns = []
    for _ in range(episodes * length):
        actions = torch.randint(num_actions, (num_envs,), generator=gen)
        _, _, _, _, info = env.step(actions)
        returns.append(info["episode"]["r"][info["_episode"]])
    returns = torch.cat(returns)
    assert returns.numel() == num_envs * episodes
    p = 1.0 / num_actions  # the true count is always a valid action
    chance = 2 * p - 1
    assert env.chance_return() == pytest.approx(chance)
    # Each step is an independent +-1/length coin with P(+)=p: Var(return) = 4p(1-p)/length.
    std_of_mean = math.sqrt(4 * p * (1 - p) / length / returns.numel())
    assert abs(returns.mean().item() - chance) < 5 * std_of_mean


def test_deck_is_dealt_without_replacement_in_proportion_to_the_remaining_cards():
    # (The optimal-policy test checks that each episode shows the whole deck exactly.)
    num_envs, num_values = 4096, 4
    env = CountRecall(num_envs, seed=0, num_values=num_values, deck_size=8)
    obs, _ = env.reset(seed=5)
    first = obs[:, :num_values]
    # The first card is uniform: a binomial proportion with p=1/4 per value; 5 sigma.
    tol = 5 * math.sqrt(0.25 * 0.75 / num_envs)
    assert torch.allclose(first.mean(dim=0), torch.full((num_values,), 0.25), atol=tol)
    # The second card repeats the first value with P = 1/7 (one of the 7 cards left).
    obs, _, _, _, _ = env.step(torch.zeros(num_envs, dtype=torch.int64))
    same = (obs[:, :num_values] * first).sum(dim=1).mean().item()
    assert abs(same - 1 / 7) < 5 * math.sqrt((1 / 7) * (6 / 7) / num_envs)
    # With two copies of each value, a value already dealt twice never comes up again.
    counts = first.to(torch.int64) + obs[:, :num_values].to(torch.int64)
    for _ in range(5):
        obs, _, terminated, _, _ = env.step(torch.zeros(num_envs, dtype=torch.int64))
        assert not bool(terminated.any())
        counts += obs[:, :num_values].to(torch.int64)
        assert bool((counts <= 2).all())
    assert bool(((counts == 2).sum(dim=1) == 3).all())  # 7 of the 8 cards are out


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_values": 1}, "num_values"),
        ({"deck_size": 51}, "deck_size"),
        ({"num_values": 4, "deck_size": 10}, "deck_size"),
        ({"num_values": 13, "deck_size": 52 + 1}, "deck_size"),
    ],
)
def test_invalid_kwargs_raise(kwargs, field):
    """Too few values, and a deck that does not split evenly (the rest: tests/test_tasks.py)."""
    with pytest.raises(ValueError, match=field):
        CountRecall(**kwargs)


def test_non_divisible_deck_message_names_num_values():
    message = r"deck_size must be a positive multiple of num_values \(4\), got 10"
    with pytest.raises(ValueError, match=message):
        CountRecall(num_values=4, deck_size=10)


def test_count_includes_the_card_dealt_this_step():
    num_envs, num_values, deck_size = 64, 2, 52
    env = CountRecall(num_envs, seed=0, num_values=num_values, deck_size=deck_size)
    obs, _ = env.reset(seed=2)
    assert obs.dtype == torch.float32 and obs.shape == (num_envs, 2 * num_values)
    assert bool((obs[:, :num_values].sum(dim=1) == 1).all())
    assert bool((obs[:, num_values:].sum(dim=1) == 1).all())
    dealt, query = _split(obs, num_values)
    match = dealt.gather(1, query.unsqueeze(1)).squeeze(1)  # 1 where the query is the dealt value
    assert bool((match == 1).any()) and bool((match == 0).any())
    # At step 0 the right answer is 1 if the query names the card just dealt, else 0.
    _, reward, _, _, _ = env.step(match)
    assert torch.allclose(reward, torch.full((num_envs,), 1.0 / (deck_size - 1)))
    # Answering 0 ("not dealt yet") is wrong exactly where the query is the dealt card.
    env.reset(seed=2)
    _, reward, _, _, _ = env.step(torch.zeros(num_envs, dtype=torch.int64))
    expected = torch.where(match == 1, -1.0, 1.0).to(torch.float32) / (deck_size - 1)
    assert torch.allclose(reward, expected)
