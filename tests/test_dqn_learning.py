"""RecurrentDQN learns the memory tasks with its default hyperparameters (the dqn-lstm preset).

Each agent trains until a greedy evaluation on 100 episodes (seeded apart from the final one)
reaches 0.95, or a step budget runs out; it is then judged by a deterministic evaluation on
fresh episodes; seed after seed until one passes (tests/learning.py), so one unlucky
trajectory on another CPU cannot fail a test. Slow-marked, but CI runs them.
"""

import pytest

from learning import learned as learned_with_seeds
from learning import train_dqn

pytestmark = pytest.mark.slow


def learned(env, budget, **hyperparameters):
    """A DQN agent trained on ``env`` (seed 0, else 1, else 2) whose deterministic return over 200 episodes
    is >= 0.9 (tests/learning.py)."""
    return learned_with_seeds(train_dqn, env, budget, **hyperparameters)


@pytest.fixture(scope="module")
def tmaze_agent():
    return learned("rlmem/PassiveTMazeEasy-v0", 150_000)


def test_passive_tmaze_easy_is_learned(tmaze_agent):
    assert tmaze_agent.evaluate(200)["mean_return"] >= 0.9


def test_memory_does_the_work(tmaze_agent):
    """The same agent with its memory zeroed at every step is back at chance (0.5)."""
    assert tmaze_agent.evaluate(200, memory="reset")["mean_return"] <= 0.6


def test_memory_chain_length_10_is_learned():
    agent = learned("rlmem/MemoryChainEasy-v0", 150_000)  # memory_length 10, 2 bits
    assert agent.evaluate(200)["mean_return"] >= 0.9


def test_repeat_previous_easy_is_learned():
    """Name the symbol shown 4 steps ago; a reward every step (+-1/48), chance is -0.5.

    gamma 0.9 rather than the default 0.99, as a per-task setting (rl-zoo style): with a reward
    at every step, gamma 0.99 makes Q sum ~50 future rewards while the action gap is 0.04, and
    the greedy return oscillated between 0.4 and 0.9 over 300k steps; with 0.9 it reached 1.0
    within about 100k (docs/benchmarks.md).
    """
    agent = learned("rlmem/RepeatPreviousEasy-v0", 200_000, gamma=0.9)
    assert agent.evaluate(200)["mean_return"] >= 0.9
