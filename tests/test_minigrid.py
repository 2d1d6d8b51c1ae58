"""MiniGrid by its id, with no wrapper: ``MiniGrid-MemoryS7-v0`` (a Dict of a 7x7x3 uint8 image, a Discrete
direction and minigrid's own ``MissionSpace`` of strings, which is left out) trains with each agent, its
checkpoint round-trips, ``predict`` takes the env's raw observation dict, and the command line trains,
evaluates and refuses the probe in one line.

minigrid is in the ``test`` extra; without it these tests are skipped. The ones that import minigrid run in
a subprocess, so that its ids do not join this session's gymnasium registry (as popgym's test does)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlmem.agents.checkpoints import SavedStrings, space_from_dict, space_to_dict
from rlmem.agents.encoders import make_obs_encoder
from rlmem.observations import as_batch, is_text, layout

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ID = "MiniGrid-MemoryS7-v0"


class Strings(gym.spaces.Space):
    """A space of strings that is not gymnasium's Text, declared as minigrid's MissionSpace is (dtype=str)."""

    def __init__(self):
        super().__init__(dtype=str)

    def sample(self, mask=None, probability=None):
        return "go to the ball"

    def contains(self, x):
        return isinstance(x, str)

    def __eq__(self, other):
        return isinstance(other, Strings)


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
    return done.stdout


def test_a_space_of_strings_is_left_out_like_text_and_saved_by_its_class():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
                             "direction": gym.spaces.Discrete(4), "mission": Strings()})
    assert is_text(Strings()) and is_text(gym.spaces.Text(3))
    assert not any(is_text(s) for s in (gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (2,)), space))
    assert set(layout(space)) == {"image", "direction"}
    assert make_obs_encoder(space).output_size == 128 + 4
    batch, n, single = as_batch(space, {"image": np.zeros((7, 7, 3), np.uint8), "direction": 2, "mission": "x"})
    assert (n, single, set(batch)) == (1, True, {"image", "direction"})
    saved = space_from_dict(space_to_dict(space))
    assert isinstance(saved["mission"], SavedStrings) and saved == space
    other = gym.spaces.Dict({**space.spaces, "mission": gym.spaces.Text(5)})
    assert saved != other and space_from_dict(space_to_dict(other)) == other


PPO_SCRIPT = """
import sys
import gymnasium as gym, numpy as np, torch
torch.set_num_threads(1)
ID, PATH = sys.argv[1], sys.argv[2]
from rlmem import RecurrentPPO

agent = RecurrentPPO(ID, device="cpu", seed=0, verbose=0, n_envs=8, n_steps=32, n_minibatches=2, hidden_size=32)
space = agent.env.single_observation_space
assert space["image"] == gym.spaces.Box(0, 255, (7, 7, 3), np.uint8) and space["direction"] == gym.spaces.Discrete(4)
assert type(space["mission"]).__name__ == "MissionSpace"
assert agent.policy.obs_encoder.output_size == 128 + 4  # the small CNN's features and the one-hot direction
agent.learn(2048)
assert agent.num_timesteps == 2048
obs = agent._buffer.obs  # what the agent saw, as it stores it: the mission left out
assert set(obs) == {"image", "direction"}
assert obs["image"].dtype == torch.uint8 and obs["image"].shape == (32, 8, 7, 7, 3) and int(obs["image"].max()) > 0
assert obs["direction"].dtype == torch.int64 and obs["direction"].shape == (32, 8)
assert 0 <= int(obs["direction"].min()) and int(obs["direction"].max()) <= 3
assert 0.0 <= float(agent._buffer.rewards.min()) and float(agent._buffer.rewards.max()) < 1.0

agent.save(PATH)
loaded = RecurrentPPO.load(PATH, device="cpu", verbose=0)  # rebuilt from the id the checkpoint names
assert loaded.env_source == ID and loaded.num_timesteps == 2048
for name, module in agent._modules().items():
    mine, theirs = module.state_dict(), loaded._modules()[name].state_dict()
    assert list(mine) == list(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine), name

env = gym.make(ID)
raw, _ = env.reset(seed=3)
assert isinstance(raw["mission"], str) and isinstance(raw["direction"], int)  # as minigrid gives it
states, starts = [None, None], np.ones(1, bool)
for step in range(40):  # the two agents act alike on the env's own dicts, memory carried
    actions = []
    for i, who in enumerate((agent, loaded)):
        action, states[i] = who.predict(raw, state=states[i], episode_start=starts, deterministic=True)
        actions.append(int(action))
    assert actions[0] == actions[1] and 0 <= actions[0] < 7, (step, actions)
    raw, _, term, trunc, _ = env.step(actions[0])
    starts = np.array([term or trunc])
    if term or trunc:
        raw, _ = env.reset()
batch = {"image": np.stack([raw["image"]] * 3), "direction": np.array([0, 1, 2])}  # the mission may be left out
actions, _ = loaded.predict(batch, deterministic=True)
assert actions.shape == (3,)
try:
    loaded.predict({"image": raw["image"]})
except ValueError as error:
    assert "expected Dict(direction: Discrete(4), image: Box(7, 7, 3) uint8, mission: MissionSpace (left out))" \\
        in str(error), error
else:
    raise AssertionError("a dict without the direction was accepted")
print("ok")
"""


def test_ppo_trains_on_minigrid_by_its_id_saves_loads_and_predicts_on_raw_observations(tmp_path):
    pytest.importorskip("minigrid")
    _run(PPO_SCRIPT, ID, str(tmp_path / "ppo.pt"))


Q_SCRIPT = """
import sys
import gymnasium as gym, numpy as np, torch
torch.set_num_threads(1)
ID, PATH = sys.argv[1], sys.argv[2]
from rlmem import RecurrentDQN, RecurrentPQN

cls = {"RecurrentDQN": RecurrentDQN, "RecurrentPQN": RecurrentPQN}[sys.argv[3]]
options = dict(n_envs=4, hidden_size=16)
options.update(dict(seq_len=8, overlap=4, burn_in=2, batch_size=8, learning_starts=64) if cls is RecurrentDQN
               else dict(n_steps=16, n_minibatches=2))
agent = cls(ID, device="cpu", seed=0, verbose=0, **options)
agent.learn(512)
store = agent.replay.obs if cls is RecurrentDQN else agent._buffer.obs
assert set(store) == {"image", "direction"}
assert store["image"].dtype == torch.uint8 and store["image"].shape[2:] == (7, 7, 3)
assert store["direction"].dtype == torch.int64 and store["direction"].shape == store["image"].shape[:2]
agent.save(PATH)
loaded = cls.load(PATH, device="cpu", verbose=0)
assert all(torch.equal(a, b) for a, b in zip(agent.q_net.state_dict().values(), loaded.q_net.state_dict().values()))
raw, _ = gym.make(ID).reset(seed=1)
ones = np.ones(1, bool)
assert int(agent.predict(raw, episode_start=ones, deterministic=True)[0]) == int(
    loaded.predict(raw, episode_start=ones, deterministic=True)[0])
print("ok")
"""


@pytest.mark.parametrize("cls", ["RecurrentDQN", "RecurrentPQN"])
def test_dqn_and_pqn_train_on_minigrid_by_its_id(cls, tmp_path):
    pytest.importorskip("minigrid")
    _run(Q_SCRIPT, ID, str(tmp_path / "q.pt"), cls)


def test_the_command_line_trains_evaluates_and_refuses_the_probe_on_minigrid(tmp_path):
    pytest.importorskip("minigrid")
    run_dir = tmp_path / "run"

    def rlmem(*args):
        return subprocess.run([sys.executable, "-m", "rlmem", *args], env=ENV, capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)

    done = rlmem("train", "--env", ID, "--preset", "ppo-lstm", "--steps", "1024", "--n-envs", "8", "--set",
                 "n_steps=32", "--set", "n_minibatches=2", "--threads", "1", "--device", "cpu", "--eval-episodes",
                 "4", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "'mission' (MissionSpace) are left out" in done.stdout
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["env"] == ID and result["steps"] == 1024 and result["n_episodes"] == 4
    assert 0.0 <= result["mean_return"] < 1.0 and (run_dir / "checkpoints" / "final.pt").is_file()
    done = rlmem("eval", str(run_dir), "--episodes", "4", "--device", "cpu", "--threads", "1")
    assert done.returncode == 0 and "n_episodes: 4" in done.stdout, done.stderr
    done = rlmem("probe", str(run_dir), "--device", "cpu", "--threads", "1")
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("rlmem: error: the probe reads observations that are one array; ") and "Dict" in lines[0]
