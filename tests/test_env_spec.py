"""A user's own env by string: ``module:Class``, ``module:function`` and gymnasium's ``module:env-id``, in
Python, in a suite file and from the command line (a subprocess, as a user runs it); bad strings are one line."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlmem.envs.registry import make_vec_env, resolve_env_spec
from rlmem.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
_names = itertools.count()

MODULE = '''
import gymnasium as gym
import numpy as np


class CueEnv(gym.Env):
    """A cue at the first step; act on it at the last of 4 steps (reward 1 if right)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return np.eye(2, dtype=np.float32)[self.cue], {}

    def step(self, action):
        self.t += 1
        done = self.t == 4
        reward = float(done and int(action) == self.cue)
        return np.zeros(2, np.float32), reward, done, False, {}


def make_cue():
    return CueEnv()


gym.register(id="{name}Cue-v0", entry_point=CueEnv)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh module (a new name each test: sys.modules keeps imports) in tmp_path, on sys.path."""
    name = f"user_envs_{os.getpid()}_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(MODULE.replace("{name}", name))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("form", ["CueEnv", "make_cue", "{name}Cue-v0"])
def test_module_forms_build_a_batch(user_module, form):
    env = make_vec_env(f"{user_module}:{form.format(name=user_module)}", 3, seed=0)
    obs, _ = env.reset(seed=0)
    assert tuple(obs.shape) == (3, 2)
    env.close()


def test_gymnasium_module_id_form_returns_the_registered_id(user_module):
    assert resolve_env_spec(f"{user_module}:{user_module}Cue-v0") == f"{user_module}Cue-v0"


def test_a_module_that_does_not_import_is_one_line_naming_it():
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_module_xyz'") as info:
        make_vec_env("no_such_module_xyz:Env", 1)
    assert "\n" not in str(info.value)


def test_a_name_not_in_the_module_lists_what_it_holds(user_module):
    with pytest.raises(ValueError) as info:
        make_vec_env(f"{user_module}:Nope", 1)
    text = str(info.value)
    assert "'Nope' is not found in module" in text and "CueEnv" in text and "make_cue" in text
    assert f"{user_module}Cue-v0" in text and "\n" not in text


def test_a_suite_entry_takes_a_module_env_with_its_chance(user_module, tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"envs": [{"id": f"{user_module}:CueEnv", "steps": 100, "threshold": 0.9,
                                              "chance": 0.5}]}))
    suite = load_suite(path)
    assert suite.envs[0].id == f"{user_module}:CueEnv" and suite.envs[0].slug == f"{user_module}_CueEnv"
    path.write_text(yaml.safe_dump({"envs": [{"id": f"{user_module}:CueEnv", "steps": 100, "threshold": 0.9}]}))
    with pytest.raises(ValueError, match="give the entry a 'chance'"):
        load_suite(path)
    path.write_text(yaml.safe_dump({"envs": [{"id": f"{user_module}:Nope", "steps": 100, "threshold": 0.9}]}))
    with pytest.raises(ValueError, match=r"envs\[0\]\.id: env .*'Nope' is not found"):
        load_suite(path)


def test_train_and_eval_from_the_command_line(user_module, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]), "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "run"
    train = [sys.executable, "-m", "rlmem.cli", "train", "--env", f"{user_module}:CueEnv", "--steps", "256",
             "--set", "n_envs=4", "--set", "n_steps=16", "--set", "hidden_size=8", "--set", "encoder_sizes=[8]",
             "--set", "n_epochs=1", "--eval-episodes", "4", "--device", "cpu", "--threads", "1",
             "--run-dir", str(run_dir)]
    done = subprocess.run(train, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["env"] == f"{user_module}:CueEnv"
    done = subprocess.run([sys.executable, "-m", "rlmem.cli", "eval", str(run_dir), "--episodes", "4",
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "rlmem.cli", "probe", str(run_dir), "--max-lag", "2", "--n-envs", "8"],
                          env=env, capture_output=True, text=True, timeout=300)  # the env rebuilt from config.yaml
    assert done.returncode == 0, done.stderr
    assert (run_dir / "probe.json").exists()
    bad = subprocess.run([*train[:5], f"{user_module}:Nope", *train[6:-1], str(tmp_path / "bad")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "'Nope' is not found in module" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_a_bench_runs_a_module_env_from_its_suite_file(user_module, tmp_path):
    from rlmem.bench import run_bench

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"eval_episodes": 4, "envs": [
        {"id": f"{user_module}:CueEnv", "steps": 64, "threshold": 0.9, "chance": 0.5,
         "hyperparameters": {"ppo": {"n_envs": 4, "n_steps": 16, "hidden_size": 8}}}]}))
    assert run_bench(path, "ppo-lstm", 1, tmp_path / "out", echo=lambda *a, **k: None) == 0
    assert (tmp_path / "out" / "runs" / f"{user_module}_CueEnv" / "ppo-lstm" / "seed0" / "result.json").exists()
    assert f"{user_module}:CueEnv" in (tmp_path / "out" / "summary.md").read_text()


def test_a_popgym_env_trains_by_its_id_saves_loads_and_predicts(tmp_path):
    """popgym registers its ids when imported: rlmem imports it for a ``popgym-`` id (Discrete observations,
    one-hot encoded by the agent). In a subprocess, so popgym's ids do not join this session's registry."""
    pytest.importorskip("popgym")
    script = f"""
import gymnasium as gym, numpy as np, torch
from rlmem import RecurrentPPO
agent = RecurrentPPO("popgym-RepeatPreviousEasy-v0", device="cpu", seed=0, verbose=0, n_envs=4, n_steps=16,
                     hidden_size=8)
assert agent.env.single_observation_space == gym.spaces.Discrete(4)
agent.learn(64)
assert agent._buffer.obs.dtype == torch.int64 and agent._buffer.obs.shape == (16, 4)
agent.save({str(tmp_path / "a.pt")!r})
loaded = RecurrentPPO.load({str(tmp_path / "a.pt")!r}, device="cpu", verbose=0)
action, _ = loaded.predict(3, deterministic=True)
actions, _ = loaded.predict([0, 1, 2], deterministic=True)
assert np.ndim(action) == 0 and actions.shape == (3,)
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr


def test_a_plugin_id_whose_package_is_missing_says_what_to_install(monkeypatch):
    from rlmem.envs import registry

    monkeypatch.setitem(registry.PLUGINS, "NoSuchPkg-", "no_such_pkg_xyz")
    with pytest.raises(ValueError, match=r"^env 'NoSuchPkg-Memory-v0' is one of the no_such_pkg_xyz package's: "
                                         r"install it \(pip install no_such_pkg_xyz\)"):
        make_vec_env("NoSuchPkg-Memory-v0", 1)
