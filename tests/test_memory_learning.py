"""Every memory core learns, or fails, where it should: PPO with each core's preset learns RepeatPreviousEasy
(name the symbol shown 4 steps ago; minGRU and FFM: PassiveTMazeEasy), PPO without memory stays at chance
there, and RecurrentDQN learns
PassiveTMazeEasy with the transformer and with a scan core. Judged seed after seed (tests/learning.py);
how often each learns over more seeds is in docs/benchmarks.md. Slow-marked, but CI runs them.
"""

import pytest

from learning import learned, train_dqn, train_ppo
from rlmem.agents.presets import load_preset

pytestmark = pytest.mark.slow

RP = "rlmem/RepeatPreviousEasy-v0"  # chance -0.5, perfect 1.0
TMAZE = "rlmem/PassiveTMazeEasy-v0"  # chance 0.5, perfect 1.0


@pytest.mark.parametrize("preset", ["ppo-transformer", "ppo-lru", "ppo-elman", "ppo-framestack"])
def test_ppo_with_each_core_learns_repeat_previous_easy(preset):
    hyperparameters = load_preset(preset).hyperparameters
    agent = learned(train_ppo, RP, 800_000, **hyperparameters)
    assert agent.evaluate(200)["mean_return"] >= 0.9
    assert agent.evaluate(200, memory="reset")["mean_return"] <= -0.3  # its memory does the work


@pytest.mark.parametrize("preset", ["ppo-mingru", "ppo-ffm"])
def test_ppo_with_the_slower_cores_learns_passive_tmaze_easy(preset):
    """minGRU needs 4M steps and a larger network for RepeatPreviousEasy, FFM about 1M (docs/benchmarks.md):
    too long for the suite; both hold the T-maze's cue."""
    agent = learned(train_ppo, TMAZE, 200_000, **load_preset(preset).hyperparameters)
    assert agent.evaluate(200)["mean_return"] >= 0.9
    assert agent.evaluate(200, memory="reset")["mean_return"] <= 0.6


def test_ppo_without_memory_stays_at_chance_on_repeat_previous_easy():
    """The mlp core sees only the current symbol: whatever it learns, it cannot name the one 4 steps back."""
    agent = train_ppo(RP, 400_000, **load_preset("ppo-mlp").hyperparameters)
    assert agent.evaluate(200)["mean_return"] <= -0.4


@pytest.mark.parametrize("memory", ["transformer", "lru"])
def test_dqn_learns_passive_tmaze_easy_with_the_transformer_and_a_scan_core(memory):
    agent = learned(train_dqn, TMAZE, 150_000, memory=memory)
    assert agent.evaluate(200)["mean_return"] >= 0.9
    assert agent.evaluate(200, memory="reset")["mean_return"] <= 0.6
