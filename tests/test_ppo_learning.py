"""RecurrentPPO learns the memory tasks with its default hyperparameters (the ppo-lstm preset).

Each agent trains until its training return holds above 0.95 (or a step budget runs out),
then is judged by a deterministic evaluation on fresh episodes; seed after seed until one
passes (tests/learning.py), so one unlucky trajectory on another CPU cannot fail a test.
Slow-marked, but CI runs them.
"""

import gymnasium as gym
import numpy as np
import pytest

import rlmem
from learning import learned as learned_with_seeds
from learning import train_ppo

pytestmark = pytest.mark.slow


def learned(env, budget, episodes=200, threshold=0.9, **hyperparameters):
    """A PPO agent trained on ``env`` (seed 0, else 1, else 2) whose deterministic return over ``episodes``
    is >= ``threshold`` (tests/learning.py)."""
    return learned_with_seeds(train_ppo, env, budget, episodes, threshold, **hyperparameters)


@pytest.fixture(scope="module")
def repeat_previous_agent():
    return learned("rlmem/RepeatPreviousEasy-v0", 800_000)


def test_repeat_previous_easy_is_learned(repeat_previous_agent):
    assert repeat_previous_agent.evaluate(200)["mean_return"] >= 0.9


def test_memory_does_the_work(repeat_previous_agent):
    """The same agent with its memory zeroed at every step is back at chance (-0.5)."""
    result = repeat_previous_agent.evaluate(200, memory="reset")
    assert result["mean_return"] <= -0.3


def test_predict_with_carried_state_reproduces_evaluate(repeat_previous_agent):
    agent, n = repeat_previous_agent, 16
    expected = agent.evaluate(n, seed=123)["mean_return"]
    env = rlmem.make_vec_env("rlmem/RepeatPreviousEasy-v0", n, seed=123)
    obs, _ = env.reset(seed=123)
    state, starts = None, np.ones(n, dtype=bool)
    reset_obs = obs
    for _ in range(52):
        actions, state = agent.predict(obs.numpy(), state=state, episode_start=starts, deterministic=True)
        obs, _, term, trunc, info = env.step(actions)
        starts = (term | trunc).numpy()
    returns = info["episode"]["r"].numpy()
    assert starts.all()
    assert returns.mean() == pytest.approx(expected, abs=1e-6)

    # Without its state (reset every step) the same agent falls to chance.
    obs = reset_obs
    env.reset(seed=123)
    for _ in range(52):
        actions, _ = agent.predict(obs.numpy(), state=None, deterministic=True)
        obs, _, term, trunc, info = env.step(actions)
    assert info["episode"]["r"].numpy().mean() <= -0.3


def test_gru_learns_repeat_previous_easy():
    agent = learned("rlmem/RepeatPreviousEasy-v0", 800_000, memory="gru")
    assert agent.evaluate(200)["mean_return"] >= 0.9


@pytest.mark.parametrize(
    "env_id, budget, settings",
    [("rlmem/RepeatFirstEasy-v0", 600_000, {}), ("rlmem/PassiveTMazeEasy-v0", 200_000, {}),
     # A per-task setting (rl-zoo style): balancing 500 steps rewards every step, and GAE lambda 0.95 carries
     # the credit of a fall further back than the default 0.7. With 0.7, 8 of 10 seeds learned within 1M
     # steps (one needed 1.4M); with 0.95, 7 of 7 within 0.56M (docs/benchmarks.md).
     ("rlmem/MaskedCartPoleEasy-v0", 1_000_000, {"gae_lambda": 0.95})],
)
def test_learns_easy_level(env_id, budget, settings):
    agent = learned(env_id, budget, episodes=100, **settings)
    assert agent.evaluate(100)["mean_return"] >= 0.9


class CoinFlipMemory(gym.Env):
    """A user's own numpy env: a coin shown at the first step only, to be named 6 steps later."""

    observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)  # [heads, tails, asked]
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.coin, self.t = int(self.np_random.integers(2)), 0
        return np.eye(3, dtype=np.float32)[self.coin], {}

    def step(self, action):
        self.t += 1
        asked = self.t == 6
        done = self.t == 7
        reward = float(int(action) == self.coin) if done else 0.0
        obs = np.array([0, 0, float(asked)], np.float32)
        return obs, reward, done, False, {}


def test_a_users_numpy_env_trains_through_make_vec_env():
    agent = learned(lambda: CoinFlipMemory(), 200_000, episodes=64, n_envs=16)
    assert agent.evaluate(64)["mean_return"] >= 0.9


class MultiSwitch(gym.Env):
    """Two switches to copy from the first observation: a MultiDiscrete action, rewarded at step 2."""

    observation_space = gym.spaces.Box(0, 1, (4,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.bits, self.t = self.np_random.integers(2, size=2), 0
        obs = np.zeros(4, np.float32)
        obs[[self.bits[0], 2 + self.bits[1]]] = 1
        return obs, {}

    def step(self, action):
        self.t += 1
        done = self.t == 2
        reward = float(np.mean(np.asarray(action) == self.bits)) if done else 0.0
        return np.zeros(4, np.float32), reward, done, False, {}


def test_multidiscrete_actions_learn_a_memory_task():
    agent = learned(MultiSwitch, 100_000, episodes=100, n_envs=16, n_steps=16)
    assert agent.evaluate(100)["mean_return"] >= 0.9
