"""A user's own gymnasium env gets errors about the env: an observation that does not fit its declared
space, old gym's API, a space rlmem cannot encode, nan or inf in what it returns. Each is one line
naming the env, the space (or the env index and step) and what was received, at construction or at the
first reset / step; nan and inf are caught where the env meets rlmem, not later as a diverged loss."""

import math

import gymnasium as gym
import numpy as np
import pytest

from rlmem import make_vec_env
from rlmem.cli import main
from rlmem.envs.base import TorchVecEnv

BOX3 = "Box(0.0, 1.0, (3,), float32)"


class _Env(gym.Env):
    """A well-behaved 5-step env with Box(3,) observations; the subclasses below each break one rule."""

    observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.t = 0

    def obs(self):
        return np.zeros(3, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.obs(), {}

    def step(self, action):
        self.t += 1
        return self.obs(), 1.0, self.t >= 5, False, {}


class WrongShape(_Env):
    def obs(self):
        return np.zeros(4, np.float32)


class WrongDtype(_Env):
    def step(self, action):
        return np.zeros(3, np.float64), 1.0, False, False, {}


class WrongStructure(_Env):
    observation_space = gym.spaces.Dict({"cue": gym.spaces.Discrete(2), "view": gym.spaces.Box(0.0, 1.0, (3,), np.float32)})

    def obs(self):
        return {"cue": 1, "view": np.zeros(3, np.float32)}

    def step(self, action):
        return np.zeros(3, np.float32), 1.0, False, False, {}


class OldStep(_Env):
    def step(self, action):
        return self.obs(), 1.0, False, {}


class OldReset(_Env):
    def reset(self, *, seed=None, options=None):
        return self.obs()


class NanObservation(_Env):
    """Env index 1's observation turns nan at its 4th step."""

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def obs(self):
        return np.full(3, math.nan if (self.index == 1 and self.t == 4) else 0.0, np.float32)


class InfReward(_Env):
    def step(self, action):
        obs, _, term, trunc, info = super().step(action)
        return obs, math.inf if self.t == 2 else 1.0, term, trunc, info


def _space_env(space: gym.Space) -> type:
    return type("SpaceEnv", (_Env,), {"observation_space": space})


def _error(make, steps: int = 1, num_envs: int = 2) -> str:
    env = make_vec_env(make, num_envs)
    with pytest.raises(ValueError) as error:
        env.reset(seed=0)
        for _ in range(steps):
            env.step(np.zeros(num_envs, np.int64))
    return str(error.value)


def test_each_broken_rule_is_one_line_naming_the_env_the_space_and_what_came():
    assert _error(WrongShape) == (
        f"env WrongShape: reset() returned an observation that does not fit the space: ndarray (4,) float32: shape "
        f"(4,) where the space has (3,) (env index 0; observation space {BOX3})")
    assert _error(WrongDtype) == (
        f"env WrongDtype: step() returned an observation that does not fit the space: ndarray (3,) float64: dtype "
        f"float64 where the space holds float32 (env index 0; observation space {BOX3})")
    assert _error(WrongStructure).startswith(
        "env WrongStructure: step() returned an observation that does not fit the space: ndarray (3,) float32, not "
        "a dict with keys ['cue', 'view'] (env index 0; observation space Dict(")
    assert _error(OldStep) == (
        "env OldStep: step() returned 4 values; rlmem needs gymnasium's five (observation, reward, terminated, "
        f"truncated, info); four (observation, reward, done, info) is old gym's API (env index 0; observation space "
        f"{BOX3})")
    assert _error(OldReset) == (
        "env OldReset: reset() returned ndarray (3,) float32, not (observation, info): rlmem needs gymnasium's API "
        f"(old gym's reset returned the observation alone) (env index 0; observation space {BOX3})")


@pytest.mark.parametrize("space", [gym.spaces.Text(5), gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), None),
                                   gym.spaces.Sequence(gym.spaces.Discrete(2)),
                                   gym.spaces.Dict({"name": gym.spaces.Text(3)})])
def test_a_space_rlmem_cannot_encode_is_refused_at_construction(space):
    with pytest.raises(ValueError, match=r"^env SpaceEnv: observation space .* cannot be encoded as a vector; rlmem "
                                         r"accepts Box, Discrete, MultiDiscrete, MultiBinary and Dict / Tuple of "
                                         r"those") as error:
        make_vec_env(_space_env(space), 2)
    assert str(space) in str(error.value)


def test_nan_and_inf_from_the_env_are_caught_at_the_edge_with_the_step_and_env_index():
    env = make_vec_env(lambda index=iter(range(3)): NanObservation(next(index)), 3)
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"^env NanObservation returned an observation holding nan at step 4 of an "
                                         r"episode \(env index 1 of 3; batch step 4\); rlmem stops at the env rather "
                                         r"than train on it$"):
        env.step(np.zeros(3, np.int64))
    assert _error(InfReward, steps=2) == ("env InfReward returned reward inf at step 2 of an episode (env index 0 of 2; "
                                          "batch step 2); rlmem stops at the env rather than train on it")


def test_rlmems_own_tasks_are_not_wrapped_or_checked_per_step():
    env = make_vec_env("rlmem/RepeatPreviousEasy-v0", 4)
    assert type(env).__module__ == "rlmem.envs.repeat_previous" and isinstance(env, TorchVecEnv)


class _NanRewardTMaze(gym.Env):
    """An 11-step episode whose rewards turn nan after 40 steps of each env (a broken user env)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.t = self.total = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        self.total += 1
        reward = math.nan if self.total > 40 else float(action)
        return np.zeros(3, np.float32), reward, self.t >= 11, False, {}


TINY = ["--set", "n_envs=8", "--set", "n_steps=16", "--set", "hidden_size=16", "--set", "encoder_sizes=[16]",
        "--set", "n_epochs=1", "--eval-episodes", "4", "--device", "cpu"]


def test_a_nan_reward_stops_training_naming_the_env_not_a_diverged_loss(tmp_path, capsys):
    gym.register("rlmemtest/NanRewardTMaze-v0", entry_point=_NanRewardTMaze)
    run_dir = tmp_path / "run"
    try:
        code = main(["train", "--env", "rlmemtest/NanRewardTMaze-v0", "--steps", "1280", "--checkpoint-every", "128",
                     *TINY, "--run-dir", str(run_dir)])
    finally:
        del gym.registry["rlmemtest/NanRewardTMaze-v0"]
    assert code == 2
    err = capsys.readouterr().err
    last = run_dir / "checkpoints" / "step-000000256.pt"
    assert err == ("rlmem: error: training stopped at step 256: env 'rlmemtest/NanRewardTMaze-v0' returned reward "
                   "nan at step 8 of an episode (env index 0 of 8; batch step 41); rlmem stops at the env rather "
                   f"than train on it; nothing was saved from this iteration; the last good checkpoint is {last} "
                   "(left as it was)\n")
    assert sorted(p.name for p in last.parent.iterdir()) == ["step-000000128.pt", "step-000000256.pt"]


def test_a_broken_env_is_refused_before_the_run_directory_is_made(tmp_path, capsys):
    gym.register("rlmemtest/WrongShape-v0", entry_point=WrongShape)
    run_dir = tmp_path / "run"
    try:
        assert main(["train", "--env", "rlmemtest/WrongShape-v0", *TINY, "--run-dir", str(run_dir)]) == 2
    finally:
        del gym.registry["rlmemtest/WrongShape-v0"]
    err = capsys.readouterr().err
    assert err.startswith("rlmem: error: env 'rlmemtest/WrongShape-v0': reset() returned an observation that does "
                          "not fit the space: ndarray (4,) float32: shape (4,)") and err.count("\n") == 1, err
    assert not run_dir.exists()
