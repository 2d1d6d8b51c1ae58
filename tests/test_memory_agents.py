"""Every memory core through the agents: a checkpoint round trip, an exact resume on the CPU, and predict
with a carried state reproducing evaluate. Untrained tiny agents (the rules hold for any weights), a
second or so each."""

import numpy as np
import pytest
import torch

import rlmem
from rlmem import RecurrentDQN, RecurrentPPO, RecurrentPQN
from rlmem.memory import CORES

TINY = {"hidden_size": 8, "encoder_sizes": [8], "memory_options": {}}
PPO_TINY = {**TINY, "n_envs": 8, "n_steps": 16, "n_minibatches": 2}
DQN_TINY = {**TINY, "n_envs": 8, "seq_len": 8, "overlap": 4, "burn_in": 2, "batch_size": 8, "learning_starts": 64,
            "buffer_size": 2_000}
OPTIONS = {"transformer": {"context_length": 6, "num_heads": 2}, "framestack": {"context_length": 3},
           "ffm": {"memory_size": 4, "context_size": 2}}


PQN_TINY = {**TINY, "n_envs": 8, "n_steps": 16, "n_minibatches": 2}
AGENTS = {"ppo": (RecurrentPPO, PPO_TINY, "rlmem/PassiveTMazeEasy-v0"),
          "dqn": (RecurrentDQN, DQN_TINY, "rlmem/MemoryChainEasy-v0"),
          "pqn": (RecurrentPQN, PQN_TINY, "rlmem/PassiveTMazeEasy-v0")}


def _make(algo: str, memory: str, **overrides):
    cls, tiny, env = AGENTS[algo]
    settings = {**tiny, "memory_options": OPTIONS.get(memory, {}), **overrides}
    return cls(env, memory=memory, device="cpu", verbose=0, **{"seed": 3, **settings})


def _weights(agent) -> dict[str, torch.Tensor]:
    modules = agent._modules()
    return {f"{name}.{key}": value for name, module in modules.items() for key, value in module.state_dict().items()}


@pytest.mark.parametrize("algo", ["ppo", "dqn", "pqn"])
@pytest.mark.parametrize("memory", list(CORES))
def test_a_run_resumed_from_a_checkpoint_is_the_uninterrupted_run(algo, memory, tmp_path):
    whole = _make(algo, memory)
    whole.learn(512, checkpoint_dir=tmp_path, checkpoint_every=256)
    resumed = type(whole).restore(tmp_path / "step-000000256.pt", device="cpu", verbose=0)
    assert resumed.config.memory == memory and resumed.config.memory_options == whole.config.memory_options
    resumed.resume()
    assert resumed.num_timesteps == whole.num_timesteps == 512
    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("algo", ["ppo", "dqn", "pqn"])
@pytest.mark.parametrize("memory", list(CORES))
def test_a_saved_agent_loads_with_its_core_and_acts_the_same(algo, memory, tmp_path):
    agent = _make(algo, memory)
    agent.learn(256, progress_bar=False)
    agent.save(tmp_path / "agent.pt")
    loaded = type(agent).load(tmp_path / "agent.pt", device="cpu")
    assert loaded.config.memory_options == agent.config.memory_options
    obs = np.eye(agent.observation_space.shape[0], dtype=np.float32)[[0, 1, 2]]
    first = agent.predict(obs, episode_start=np.ones(3, bool), deterministic=True)
    again = loaded.predict(obs, episode_start=np.ones(3, bool), deterministic=True)
    assert (first[0] == again[0]).all()
    for a, b in zip(first[1], again[1], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("algo", ["ppo", "pqn"])
@pytest.mark.parametrize("memory", list(CORES))
def test_predict_with_its_carried_state_reproduces_evaluate(algo, memory):
    agent, n = _make(algo, memory, seed=4), 8
    agent.learn(256, progress_bar=False)
    expected = agent.evaluate(n, seed=123)["mean_return"]
    env = rlmem.make_vec_env("rlmem/PassiveTMazeEasy-v0", n, seed=123)
    obs, _ = env.reset(seed=123)
    state, starts = None, np.ones(n, dtype=bool)
    for _ in range(env.max_episode_steps):  # every env finishes its first (11-step) episode together
        actions, state = agent.predict(obs.numpy(), state=state, episode_start=starts, deterministic=True)
        obs, _, term, trunc, info = env.step(actions)
        starts = (term | trunc).numpy()
    assert starts.all()
    assert info["episode"]["r"].numpy().mean() == pytest.approx(expected, abs=1e-6)
