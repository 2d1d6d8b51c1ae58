"""RecurrentPPO (the ppo-lstm preset's defaults) learns PixelRepeatPreviousEasy on the CPU: a CNN reads the
glyph, the LSTM holds the last two symbols. Slow-marked (2 to 4 minutes on 2 shared CPU cores: seed 0 took
245,760 env-steps, 160 s, to a greedy return of 0.987; docs/benchmarks.md), judged seed after seed
(tests/learning.py)."""

import pytest

from learning import learned, train_ppo

pytestmark = pytest.mark.slow


def test_pixel_repeat_previous_easy_is_learned_and_memory_does_the_work():
    agent = learned(train_ppo, "rlmem/PixelRepeatPreviousEasy-v0", 600_000)
    assert agent.evaluate(200)["mean_return"] >= 0.9
    assert agent.evaluate(200, memory="reset")["mean_return"] <= -0.3  # without its memory: back to chance
