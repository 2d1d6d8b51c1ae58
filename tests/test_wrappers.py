"""Tests for rlmem.envs.wrappers: POMDP wrappers around any gymnasium Env."""

from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from rlmem.envs.wrappers import (
    FlickerObservation,
    MaskObservation,
    ObservationNoise,
    PreviousActionReward,
)

VELOCITIES = [1, 3]  # CartPole state: (x, x_dot, theta, theta_dot)
POSITIONS = [0, 2]

# check_env warnings that are expected for a wrapped CartPole and say nothing about our code.
_EXPECTED_CHECK_ENV_WARNINGS = (
    "is different from the unwrapped version",
    "minimum value is -infinity",
    "maximum value is infinity",
)


def cartpole() -> gym.Env:
    return gym.make("CartPole-v1")


def state(env: gym.Env) -> np.ndarray:
    """CartPole's true (fully observable) state as float32."""
    return np.asarray(env.unwrapped.state, dtype=np.float32)


class ToyEnv(gym.Env):
    """Deterministic env with a configurable action/observation space; reward = step index."""

    metadata = {"render_modes": [], "toy": True}

    def __init__(
        self,
        action_space: spaces.Space | None = None,
        observation_space: spaces.Space | None = None,
    ) -> None:
        self.action_space = action_space if action_space is not None else spaces.Discrete(3)
        self.observation_space = (
            observation_space
            if observation_space is not None
            else spaces.Box(-1.0, 1.0, (2,), np.float32)
        )
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        obs = np.full(self.observation_space.shape, 0.5, dtype=self.observation_space.dtype)
        return obs, float(self.t) - 0.25, False, self.t >= 50, {}


WRAPPER_FACTORIES = {
    "mask-remove": lambda env: MaskObservation(env, VELOCITIES),
    "mask-zero": lambda env: MaskObservation(env, VELOCITIES, mode="zero"),
    "flicker": lambda env: FlickerObservation(env, 0.5),
    "noise-scalar": lambda env: ObservationNoise(env, 0.1),
    "noise-array": lambda env: ObservationNoise(env, [0.1, 0.0, 0.2, 0.0]),
    "prev-action-reward": PreviousActionReward,
}


# ------------------------------------------------------------------------------ check_env


@pytest.mark.parametrize("name", list(WRAPPER_FACTORIES))
@pytest.mark.parametrize("unwrapped", [False, True])
def test_check_env_passes(name: str, unwrapped: bool) -> None:
    env = cartpole()
    wrapped = WRAPPER_FACTORIES[name](env.unwrapped if unwrapped else env)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(wrapped, skip_render_check=True)
    unexpected = [
        str(w.message)
        for w in caught
        if not any(text in str(w.message) for text in _EXPECTED_CHECK_ENV_WARNINGS)
    ]
    assert unexpected == []


@pytest.mark.parametrize("name", list(WRAPPER_FACTORIES))
def test_observations_stay_in_space_and_metadata_passes_through(name: str) -> None:
    env = cartpole()
    wrapped = WRAPPER_FACTORIES[name](env)
    assert wrapped.metadata == env.metadata
    assert wrapped.action_space == env.action_space
    obs, _ = wrapped.reset(seed=0)
    wrapped.action_space.seed(0)
    for _ in range(100):
        assert obs.dtype == np.float32
        assert obs in wrapped.observation_space
        obs, _, terminated, truncated, _ = wrapped.step(wrapped.action_space.sample())
        if terminated or truncated:
            obs, _ = wrapped.reset()


@pytest.mark.parametrize("name", list(WRAPPER_FACTORIES))
def test_spec_rebuilds_the_wrapper(name: str) -> None:
    wrapped = WRAPPER_FACTORIES[name](cartpole())
    rebuilt = wrapped.spec.make()
    assert type(rebuilt) is type(wrapped)
    assert rebuilt.observation_space == wrapped.observation_space


@pytest.mark.parametrize(
    "factory",
    [
        lambda env: MaskObservation(env, [0]),
        lambda env: FlickerObservation(env, 0.1),
        lambda env: ObservationNoise(env, 0.1),
        PreviousActionReward,
    ],
)
@pytest.mark.parametrize(
    "obs_space",
    [
        spaces.Discrete(4),
        spaces.Box(-1.0, 1.0, (2, 3), np.float32),
        spaces.Dict({"a": spaces.Box(-1.0, 1.0, (2,), np.float32)}),
    ],
)
def test_non_1d_box_observation_space_is_rejected(factory, obs_space: spaces.Space) -> None:
    with pytest.raises(ValueError, match=re.escape(str(obs_space))) as err:
        factory(ToyEnv(observation_space=obs_space))
    assert "1-D Box" in str(err.value)
    assert "FlattenObservation" in str(err.value)


def test_flattened_observation_space_is_accepted() -> None:
    env = gym.wrappers.FlattenObservation(
        ToyEnv(observation_space=spaces.Box(-1.0, 1.0, (2, 3), np.float32))
    )
    assert MaskObservation(env, [0]).observation_space.shape == (5,)


# ------------------------------------------------------------------------------ MaskObservation


def test_mask_remove_drops_exactly_the_velocities() -> None:
    env = MaskObservation(cartpole(), VELOCITIES)
    base = cartpole().observation_space
    assert env.observation_space.shape == (2,)
    np.testing.assert_array_equal(env.observation_space.low, base.low[POSITIONS])
    np.testing.assert_array_equal(env.observation_space.high, base.high[POSITIONS])
    assert env.kept_indices == tuple(POSITIONS)
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs, state(env)[POSITIONS])
    for _ in range(20):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        np.testing.assert_array_equal(obs, state(env)[POSITIONS])
        if terminated or truncated:
            break


def test_mask_zero_keeps_shape_and_zeroes_the_velocities() -> None:
    env = MaskObservation(cartpole(), VELOCITIES, mode="zero")
    assert env.observation_space == cartpole().observation_space
    obs, _ = env.reset(seed=1)
    for _ in range(20):
        true = state(env)
        assert not np.any(true[VELOCITIES] == 0)  # so the zeros below are the wrapper's
        np.testing.assert_array_equal(obs[POSITIONS], true[POSITIONS])
        np.testing.assert_array_equal(obs[VELOCITIES], 0.0)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break


def test_mask_zero_uses_nearest_bound_when_zero_is_out_of_bounds() -> None:
    space = spaces.Box(np.array([1, -3, -1], np.float32), np.array([2, -2, 1], np.float32))
    env = MaskObservation(ToyEnv(observation_space=space), [0, 1, 2], mode="zero")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [1.0, -2.0, 0.0])
    assert obs in env.observation_space


def test_mask_keeps_the_env_dtype() -> None:
    space = spaces.Box(-1.0, 1.0, (3,), np.float64)
    env = MaskObservation(ToyEnv(observation_space=space), [1])
    assert env.observation_space.dtype == np.float64
    assert env.reset(seed=0)[0].dtype == np.float64


@pytest.mark.parametrize(
    ("indices", "mode", "pattern"),
    [
        ([], "remove", r"at least one.*\[\]"),
        ([4], "remove", r"index 4 .* size 4"),
        ([-1], "zero", r"index -1 .* size 4"),
        ([1, 1], "remove", r"index 1 appears more than once"),
        ([0, 1, 2, 3], "remove", r"\[0, 1, 2, 3\] would remove all 4"),
        ([1.5], "remove", r"1\.5"),
        ([1], "hide", r"'hide'.*\('remove', 'zero'\)|\('remove', 'zero'\).*'hide'"),
        (3, "remove", r"sequence of ints, got 3"),
    ],
)
def test_mask_rejects_bad_input(indices, mode: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        MaskObservation(cartpole(), indices, mode=mode)


def test_mask_zero_may_hide_every_entry() -> None:
    env = MaskObservation(cartpole(), [0, 1, 2, 3], mode="zero")
    np.testing.assert_array_equal(env.reset(seed=0)[0], np.zeros(4, np.float32))


# ------------------------------------------------------------------------------ FlickerObservation


def flicker_pattern(env: FlickerObservation, steps: int, seed: int) -> tuple[np.ndarray, list]:
    """Blank flags of ``steps`` non-reset observations, and the visible ones with their state."""
    obs, _ = env.reset(seed=seed)
    assert not np.all(obs == 0), "reset observation must stay visible"
    env.action_space.seed(seed)
    blanks, visible = [], []
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        blank = bool(np.all(obs == 0))
        blanks.append(blank)
        if not blank:
            visible.append((obs, state(env)))
        if terminated or truncated:
            obs, _ = env.reset()
            assert not np.all(obs == 0), "reset observation must stay visible"
    return np.array(blanks), visible


def test_flicker_p0_never_blanks() -> None:
    blanks, visible = flicker_pattern(FlickerObservation(cartpole(), 0.0), 500, seed=0)
    assert not blanks.any()
    for obs, true in visible:
        np.testing.assert_array_equal(obs, true)


def test_flicker_p1_blanks_every_step_but_not_reset() -> None:
    env = FlickerObservation(cartpole(), 1.0)
    blanks, _ = flicker_pattern(env, 300, seed=0)  # also asserts resets are visible
    assert blanks.all()


def test_flicker_rate_matches_p() -> None:
    p, steps = 0.3, 4000
    blanks, visible = flicker_pattern(FlickerObservation(cartpole(), p), steps, seed=3)
    tolerance = 4 * np.sqrt(p * (1 - p) / steps)  # 4 standard errors of a binomial mean
    assert abs(blanks.mean() - p) < tolerance
    for obs, true in visible:  # visible frames are untouched
        np.testing.assert_array_equal(obs, true)


def test_flicker_same_seed_same_pattern_and_inner_stream_untouched() -> None:
    a, _ = flicker_pattern(FlickerObservation(cartpole(), 0.3), 300, seed=7)
    b, _ = flicker_pattern(FlickerObservation(cartpole(), 0.3), 300, seed=7)
    c, _ = flicker_pattern(FlickerObservation(cartpole(), 0.3), 300, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)

    # The inner env follows the same trajectory with and without the wrapper.
    wrapped, plain = FlickerObservation(cartpole(), 0.5), cartpole()
    wrapped.reset(seed=11)
    plain.reset(seed=11)
    for t in range(20):  # alternating actions: CartPole stays up far longer than 20 steps
        action = t % 2
        assert not wrapped.step(action)[2]
        plain.step(action)
        np.testing.assert_array_equal(state(wrapped), state(plain))


def test_flicker_unseeded_uses_fresh_entropy() -> None:
    patterns = []
    for _ in range(2):
        env = FlickerObservation(cartpole(), 0.5)
        env.reset()  # no seed: the wrapper draws fresh entropy
        patterns.append([bool(np.all(env.step(0)[0] == 0)) for _ in range(5)])
        patterns[-1].extend(env.wrapper_rng.random(16) < 0.5)
    assert patterns[0] != patterns[1]


def test_flicker_blank_is_nearest_bound_when_zero_is_out_of_bounds() -> None:
    space = spaces.Box(np.array([1, -3, -1], np.float32), np.array([2, -2, 1], np.float32))
    env = FlickerObservation(ToyEnv(observation_space=space), 1.0)
    env.reset(seed=0)
    obs = env.step(0)[0]
    np.testing.assert_array_equal(obs, [1.0, -2.0, 0.0])
    assert obs in env.observation_space
    assert env.observation_space == space


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", True])
def test_flicker_rejects_bad_p(p) -> None:
    with pytest.raises(ValueError, match=re.escape(f"got {p!r}")) as err:
        FlickerObservation(cartpole(), p)
    assert "[0, 1]" in str(err.value)


# ------------------------------------------------------------------------------ ObservationNoise


def noise_samples(env: ObservationNoise, steps: int, seed: int) -> np.ndarray:
    """(noisy - clean) for ``steps`` observations, reset observations included."""
    diffs = []
    obs, _ = env.reset(seed=seed)
    diffs.append(obs.astype(np.float64) - state(env))
    env.action_space.seed(seed)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        diffs.append(obs.astype(np.float64) - state(env))
        if terminated or truncated:
            obs, _ = env.reset()
            diffs.append(obs.astype(np.float64) - state(env))
    return np.array(diffs)


def test_noise_std0_is_exactly_clean() -> None:
    env = ObservationNoise(cartpole(), 0.0)
    assert env.observation_space == cartpole().observation_space
    np.testing.assert_array_equal(noise_samples(env, 200, seed=0), 0.0)


@pytest.mark.parametrize("std", [0.5, [0.1, 0.0, 0.2, 1.0]])
def test_noise_empirical_std_matches(std) -> None:
    env = ObservationNoise(cartpole(), std)
    diffs = noise_samples(env, 3000, seed=0)
    expected = np.broadcast_to(np.asarray(std, dtype=np.float64), (4,))
    n = diffs.shape[0]
    for i, s in enumerate(expected):
        if s == 0:
            np.testing.assert_array_equal(diffs[:, i], 0.0)
            continue
        # float32 rounding of the observation is far below these tolerances
        assert abs(diffs[:, i].mean()) < 5 * s / np.sqrt(n)
        assert abs(diffs[:, i].std() / s - 1) < 5 / np.sqrt(2 * n)


def test_noise_widens_bounds_only_where_noisy() -> None:
    base = cartpole().observation_space
    env = ObservationNoise(cartpole(), [0.1, 0.0, 0.0, 0.2])
    assert env.observation_space.dtype == np.float32
    low, high = env.observation_space.low, env.observation_space.high
    np.testing.assert_array_equal(low, [-np.inf, base.low[1], base.low[2], -np.inf])
    np.testing.assert_array_equal(high, [np.inf, base.high[1], base.high[2], np.inf])


def test_noise_is_reproducible_and_seed_dependent() -> None:
    a = noise_samples(ObservationNoise(cartpole(), 0.3), 50, seed=5)
    b = noise_samples(ObservationNoise(cartpole(), 0.3), 50, seed=5)
    c = noise_samples(ObservationNoise(cartpole(), 0.3), 50, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:10], c[:10])


def test_noise_unseeded_uses_fresh_entropy() -> None:
    first = [ObservationNoise(cartpole(), 1.0).wrapper_rng.random(4) for _ in range(2)]
    assert not np.array_equal(*first)


def test_noise_keeps_float64_and_promotes_integer_boxes() -> None:
    f64 = ObservationNoise(ToyEnv(observation_space=spaces.Box(-1.0, 1.0, (2,), np.float64)), 0.1)
    assert f64.observation_space.dtype == np.float64
    assert f64.reset(seed=0)[0].dtype == np.float64
    ints = ObservationNoise(ToyEnv(observation_space=spaces.Box(0, 10, (2,), np.int64)), 0.1)
    assert ints.observation_space.dtype == np.float32
    assert ints.reset(seed=0)[0] in ints.observation_space


@pytest.mark.parametrize(
    ("std", "pattern"),
    [
        (-0.1, r"got -0\.1"),
        (float("inf"), r"got inf"),
        ([0.1, -0.2, 0.0, 0.0], r"std\[1\] = -0\.2"),
        ([0.1, 0.2], r"shape \(4,\).*got shape \(2,\)"),
        ("abc", r"got 'abc'"),
    ],
)
def test_noise_rejects_bad_std(std, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        ObservationNoise(cartpole(), std)


# -------------------------------------------------------------------------- PreviousActionReward


def test_prev_action_reward_discrete_cartpole() -> None:
    env = PreviousActionReward(cartpole())
    space = env.observation_space
    assert space.shape == (7,)
    np.testing.assert_array_equal(space.low[4:6], [0, 0])
    np.testing.assert_array_equal(space.high[4:6], [1, 1])
    assert space.low[6] == -np.inf and space.high[6] == np.inf

    for seed in (0, 1):  # the second reset must zero the appended part again
        obs, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(obs[:4], state(env))
        np.testing.assert_array_equal(obs[4:], np.zeros(3))
        for action in [0, 1, 1, 0, 1, 0, 0]:
            obs, reward, _, _, _ = env.step(action)
            np.testing.assert_array_equal(obs[:4], state(env))
            np.testing.assert_array_equal(obs[4:6], np.eye(2)[action])
            assert obs[6] == np.float32(reward)


def test_prev_action_reward_box_pendulum() -> None:
    env = PreviousActionReward(gym.make("Pendulum-v1"))
    assert env.observation_space.shape == (5,)
    np.testing.assert_array_equal(env.observation_space.low[3:], [-2.0, -np.inf])
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[3:], [0.0, 0.0])
    rewards = set()
    for action in [0.5, -1.25, 2.0, 3.0, -7.0]:  # the last two are clipped to the bounds
        obs, reward, _, _, _ = env.step(np.array([action], dtype=np.float32))
        assert obs in env.observation_space
        assert obs[3] == np.float32(np.clip(action, -2.0, 2.0))
        assert obs[4] == np.float32(reward)
        rewards.add(float(reward))
    assert len(rewards) > 1  # the rewards really vary, so the check above is meaningful
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[3:], [0.0, 0.0])


def test_prev_action_reward_multidiscrete_and_discrete_start() -> None:
    md = PreviousActionReward(ToyEnv(action_space=spaces.MultiDiscrete([3, 2, 4])))
    assert md.observation_space.shape == (2 + 9 + 1,)
    md.reset(seed=0)
    obs = md.step(np.array([2, 0, 1]))[0]
    np.testing.assert_array_equal(obs[2:11], [0, 0, 1, 1, 0, 0, 1, 0, 0])
    assert obs[11] == np.float32(0.75)
    assert obs in md.observation_space

    ds = PreviousActionReward(ToyEnv(action_space=spaces.Discrete(3, start=-1)))
    ds.reset(seed=0)
    np.testing.assert_array_equal(ds.step(-1)[0][2:5], [1, 0, 0])
    np.testing.assert_array_equal(ds.step(np.int64(1))[0][2:5], [0, 0, 1])


def test_prev_action_reward_box_action_bounds_include_zero() -> None:
    space = spaces.Box(np.array([1, -3], np.float32), np.array([2, -1], np.float32))
    env = PreviousActionReward(ToyEnv(action_space=space))
    np.testing.assert_array_equal(env.observation_space.low[2:4], [0.0, -3.0])
    np.testing.assert_array_equal(env.observation_space.high[2:4], [2.0, 0.0])
    assert env.reset(seed=0)[0] in env.observation_space


@pytest.mark.parametrize(
    "action_space",
    [spaces.MultiBinary(3), spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2)))],
)
def test_prev_action_reward_rejects_other_action_spaces(action_space: spaces.Space) -> None:
    with pytest.raises(ValueError, match=re.escape(str(action_space))):
        PreviousActionReward(ToyEnv(action_space=action_space))
