"""predict names its bad arguments (state of another structure or batch, episode_start of the wrong length
or type) for every agent and memory core, and a checkpoint whose weights do not fit its config, or hold
nan / inf, is refused at load in one line."""

import re

import numpy as np
import pytest
import torch

from rlmem import RecurrentDQN, RecurrentPPO
from rlmem.agents.checkpoints import atomic_save, read_file

RP = "rlmem/RepeatPreviousEasy-v0"  # observations: one-hots of 4 symbols
AGENTS = {"ppo": RecurrentPPO, "dqn": RecurrentDQN}


@pytest.fixture(params=[("ppo", "lstm"), ("ppo", "transformer"), ("dqn", "gru"), ("dqn", "lru")],
                ids=lambda p: "-".join(p))
def agent(request):
    algo, memory = request.param
    return AGENTS[algo](RP, memory=memory, n_envs=4, device="cpu", verbose=0, hidden_size=8, encoder_sizes=[8])


def test_a_state_for_another_batch_or_structure_names_both_shapes(agent):
    obs = np.eye(4, dtype=np.float32)[[0, 1, 2]]
    _, state = agent.predict(obs, episode_start=np.ones(3, bool))
    expected = [s.shape for s in state]
    with pytest.raises(ValueError, match=rf"^state\[0\] has shape {re.escape(str(state[0][:, :2].shape))}; expected "
                                         rf"{re.escape(str(expected[0]))} \(this agent's \w+ memory for 3 env\(s\)\)$"):
        agent.predict(obs, state=(state[0][:, :2], *state[1:]))
    with pytest.raises(ValueError, match=rf"^state must be a tuple of {len(expected)} array\(s\) of shapes "):
        agent.predict(obs, state=(*state, state[0]))
    with pytest.raises(ValueError, match="^state must be a tuple of .* got a ndarray$"):
        agent.predict(obs, state=state[0])
    actions, _ = agent.predict(obs, state=state)  # the state it returned fits
    assert actions.shape == (3,)


def test_episode_start_of_the_wrong_length_or_type(agent):
    obs = np.eye(4, dtype=np.float32)[[0, 1]]
    with pytest.raises(ValueError, match=r"^episode_start has shape \(3,\); expected \(2,\), one flag per env"):
        agent.predict(obs, episode_start=np.ones(3, bool))
    with pytest.raises(ValueError, match=r"^episode_start must be booleans \(or 0 / 1\), one per env, got <U3"):
        agent.predict(obs, episode_start=np.array(["yes", "no"]))
    with pytest.raises(ValueError, match=r"^episode_start must be booleans .* got float64 \[0.5, 1.0\]"):
        agent.predict(obs, episode_start=np.array([0.5, 1.0]))
    a, _ = agent.predict(obs, episode_start=np.array([1.0, 0.0]), deterministic=True)  # sb3 passes floats: 0 / 1 fit
    b, _ = agent.predict(obs, episode_start=np.array([True, False]), deterministic=True)
    assert (a == b).all()


def _tamper(path, change):
    data = read_file(path)
    change(data)
    atomic_save(data, path)  # sealed with a fresh digest: only the new consistency check can refuse it


def test_a_checkpoint_whose_config_does_not_fit_its_weights_is_refused(tmp_path):
    agent = RecurrentPPO(RP, n_envs=4, n_steps=8, device="cpu", verbose=0, hidden_size=8, encoder_sizes=[8])
    path = tmp_path / "agent.pt"
    agent.save(path)
    _tamper(path, lambda data: data["config"].update(hidden_size=16))
    with pytest.raises(ValueError, match=r"its weight policy\.actor_core\.rnn\.weight_ih_l0 is \[32, 8\], but its "
                                         r"config builds \[64, 8\]: the config and the weights do not belong"):
        RecurrentPPO.load(path)


def test_a_checkpoint_with_nan_weights_is_refused_at_load(tmp_path):
    agent = RecurrentDQN(RP, n_envs=4, device="cpu", verbose=0, hidden_size=8, encoder_sizes=[8])
    path = tmp_path / "agent.pt"
    agent.save(path)
    _tamper(path, lambda data: data["q_net"]["q_head.bias"].fill_(float("nan")))
    with pytest.raises(ValueError, match=r"^'.*agent\.pt': its weight q_net\.q_head\.bias holds nan or inf; refused$"):
        RecurrentDQN.load(path)
    assert torch.isnan(read_file(path)["q_net"]["q_head.bias"]).all()  # the file is left as it was
