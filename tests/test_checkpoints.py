"""Checkpoints: atomic files, safe loading, an exact resume for both agents, env state, and the nan guard.

Runs are tiny (8 envs, 16-unit memories) and take a second or two each."""

import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rlmem import RecurrentDQN, RecurrentPPO
from rlmem.agents.stops import TrainingDiverged
from rlmem.agents.checkpoints import CheckpointManager, read_file

TMAZE = "rlmem/PassiveTMazeEasy-v0"
PPO_TINY = {"n_envs": 8, "n_steps": 16, "n_minibatches": 2, "hidden_size": 16, "encoder_sizes": (16,)}
DQN_TINY = {"n_envs": 8, "seq_len": 8, "overlap": 4, "burn_in": 2, "hidden_size": 16, "encoder_sizes": (16,),
            "batch_size": 8, "learning_starts": 64, "buffer_size": 2_000}
AGENTS = {"ppo": (RecurrentPPO, PPO_TINY, TMAZE),
          "dqn": (RecurrentDQN, DQN_TINY, "rlmem/MemoryChainEasy-v0")}


def _make(algo: str, **overrides):
    cls, tiny, env = AGENTS[algo]
    return cls(env, device="cpu", verbose=0, seed=7, **{**tiny, **overrides})


def _returns_log(log: list):
    return lambda agent: log.append((agent.num_timesteps, agent.last_log.get("charts/episodic_return")))


def _state(agent) -> dict:
    """Every tensor of the agent's saved state (weights and optimizer), flattened by name."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}/{key}", item)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(f"{prefix}/{i}", item)

    walk("", agent._modules_state())
    return flat


def _assert_same_state(a, b) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys() and len(sa) > 4
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ---------------------------------------------------------------------- determinism
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_the_same_seed_gives_the_same_run_also_across_a_resume(algo, tmp_path):
    log: list = []
    whole = _make(algo, lr_schedule="linear") if algo == "ppo" else _make(algo)
    whole.learn(768, callback=_returns_log(log), checkpoint_dir=tmp_path, checkpoint_every=256, keep_checkpoints=10)
    assert sorted(p.name for p in tmp_path.glob("step-*[0-9].pt")) == ["step-000000256.pt", "step-000000512.pt"]
    assert (tmp_path / "final.pt").is_file()
    assert sum(r is not None for _, r in log) >= 5

    again_log: list = []
    again = _make(algo, lr_schedule="linear") if algo == "ppo" else _make(algo)
    again.learn(768, callback=_returns_log(again_log))  # the same seed, no checkpoints
    assert again_log == log
    _assert_same_state(whole, again)

    cls = AGENTS[algo][0]
    resumed = cls.restore(tmp_path / "step-000000256.pt", device="cpu", verbose=0)
    assert resumed.num_timesteps == 256
    resumed_log: list = []
    resumed.resume(callback=_returns_log(resumed_log))
    assert resumed.num_timesteps == 768
    assert resumed_log == [entry for entry in log if entry[0] > 256]  # the same episodes, step by step
    _assert_same_state(whole, resumed)  # the same weights and optimizer, bit for bit
    if algo == "ppo":
        assert resumed.last_log["charts/learning_rate"] == whole.last_log["charts/learning_rate"]  # same schedule
    else:
        assert resumed.num_updates == whole.num_updates
        for name in ("obs", "actions", "rewards", "priorities", "w_obs"):
            assert torch.equal(getattr(resumed.replay, name), getattr(whole.replay, name)), name


def test_the_dqn_replay_goes_to_a_file_of_its_own_beside_the_checkpoint(tmp_path):
    agent = _make("dqn")
    agent.learn(512, checkpoint_dir=tmp_path, checkpoint_every=256)
    main, replay = tmp_path / "step-000000256.pt", tmp_path / "step-000000256.replay.pt"
    assert main.is_file() and replay.is_file()
    # The replay file is the replay's size (its ring of sequences, and the windows being filled);
    # the checkpoint itself holds only the networks, the optimizer and the counters.
    assert agent.replay_nbytes() < replay.stat().st_size < 2 * agent.replay_nbytes()
    assert main.stat().st_size < replay.stat().st_size
    assert read_file(main)["training"]["parts"] == {"replay": "step-000000256.replay.pt"}
    # A saved agent (save) holds no replay and no training state.
    agent.save(tmp_path / "agent.pt")
    assert "training" not in read_file(tmp_path / "agent.pt")
    with pytest.raises(ValueError, match="holds a saved agent, not a training checkpoint"):
        RecurrentDQN.restore(tmp_path / "agent.pt", device="cpu")


def test_checkpoints_hold_the_counters_generators_config_and_version(tmp_path):
    from rlmem import __version__

    agent = _make("ppo")
    agent.learn(256, checkpoint_dir=tmp_path, checkpoint_every=128)
    data = read_file(tmp_path / "final.pt")
    assert data["rlmem_version"] == __version__ and data["algo"] == "RecurrentPPO"
    assert data["num_timesteps"] == 256 and data["config"]["hidden_size"] == 16 and data["seed"] == 7
    assert {"policy", "optimizer"} <= data.keys()
    training = data["training"]
    assert training["plan"] == {"start": 0, "end": 256}
    assert {"torch", "numpy", "python", "agent"} <= training["rng"].keys()
    assert training["env"]["type"] == "PassiveTMazeEasy" and "generator" in training["env"]
    assert {"obs", "state", "episode_start", "prev_action", "prev_reward"} == training["last"].keys()


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    agent = _make("dqn")
    agent.learn(8 * 32, checkpoint_dir=tmp_path, checkpoint_every=32, keep_checkpoints=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["final.pt", "final.replay.pt", "step-000000192.pt", "step-000000192.replay.pt",
                     "step-000000224.pt", "step-000000224.replay.pt"]


# ---------------------------------------------------------------------- files: atomic, safe, checked
def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    agent = _make("ppo")
    path = tmp_path / "agent.pt"
    agent.save(path)
    before = path.read_bytes()
    agent.learn(128)

    def disk_full(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        agent.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["agent.pt"]
    monkeypatch.undo()
    assert RecurrentPPO.load(path, device="cpu").num_timesteps == 0


class _RunsCode:
    """Unpickling this writes a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code from the checkpoint ran"))


def test_loading_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pt"
    agent = _make("ppo")
    agent.save(evil)
    data = torch.load(evil, weights_only=True)
    data["config"] = _RunsCode(marker)
    torch.save(data, evil)
    pickle.loads(pickle.dumps(_RunsCode(marker)))  # the object does run code when unpickled
    assert marker.read_text() == "code from the checkpoint ran"
    marker.unlink()
    for load in (RecurrentPPO.load, RecurrentPPO.restore, RecurrentDQN.load):
        with pytest.raises(ValueError) as error:
            load(evil, device="cpu")
        assert re.fullmatch(
            rf"'{re.escape(str(evil))}' is refused: it holds a Python object \(\S+\) that only running code "
            "from the file could rebuild, and rlmem loads only tensors and plain values; nothing from it was run",
            str(error.value)), error.value
        assert not marker.exists()


def test_a_damaged_file_is_refused(tmp_path):
    agent = _make("ppo")
    path = tmp_path / "agent.pt"
    agent.save(path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"is truncated or corrupted: it could not be read \(\w+\)$"):
        RecurrentPPO.load(path, device="cpu")
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # inside the weights: torch itself would load this silently
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="is corrupted: its contents do not match the checksum stored in it"):
        RecurrentPPO.load(path, device="cpu")
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is truncated or corrupted: it could not be read \(\w+\)$"):
        RecurrentPPO.load(path, device="cpu")


# ---------------------------------------------------------------------- the nan guard
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_nan_weights_stop_training_and_the_last_checkpoint_stays_as_it_was(algo, tmp_path):
    agent = _make(algo)
    batch = agent.steps_per_iteration
    snapshot: dict = {}
    iteration = agent._iteration
    poison_at = 6 * batch

    def poisoned_iteration():  # an iteration whose update leaves a nan weight (its loss was finite)
        result = iteration()
        if agent.num_timesteps == poison_at:
            snapshot.update({p.name: p.read_bytes() for p in tmp_path.iterdir()})
            with torch.no_grad():
                next(iter(agent._modules().values())).encoder[0].weight[0, 0] = math.nan
        return result

    agent._iteration = poisoned_iteration
    with pytest.raises(TrainingDiverged) as error:
        agent.learn(20 * batch, checkpoint_dir=tmp_path, checkpoint_every=2 * batch)
    module = next(iter(agent._modules()))
    last = tmp_path / f"step-{4 * batch:09d}.pt"
    assert str(error.value) == (
        f"training stopped at step {poison_at:,}: weight {module}.encoder.0.weight holds nan or inf; nothing was "
        f"saved from these weights; the last good checkpoint is {last} (left as it was)")
    assert snapshot and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot  # no file written after
    restored = AGENTS[algo][0].restore(last, device="cpu", verbose=0)
    assert all(bool(torch.isfinite(t).all()) for t in _state(restored).values())


def test_a_nan_loss_stops_training_at_that_iteration(tmp_path):
    agent = _make("ppo")
    collect = agent.collect

    def nan_advantage():
        episodes = collect()
        if agent.num_timesteps == 4 * 128:  # the 4th rollout (collect counts its steps)
            agent._buffer.advantages[5, 2] = math.nan  # e.g. from a nan reward
        return episodes

    agent.collect = nan_advantage
    with pytest.raises(TrainingDiverged, match="^training stopped at step 512: the loss is nan; nothing was saved "
                                               "from these weights; no checkpoint had been written yet$"):
        agent.learn(10 * 128, checkpoint_dir=tmp_path, checkpoint_every=1024)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_manager_never_writes_nan_weights(tmp_path):
    agent = _make("ppo")
    with torch.no_grad():
        agent.policy.encoder[0].bias[0] = math.inf
    with pytest.raises(TrainingDiverged, match=r"weight policy\.encoder\.0\.bias holds nan or inf"):
        CheckpointManager(tmp_path, 100, 3).write(agent)
    assert list(tmp_path.iterdir()) == []
    assert np.isinf(agent.policy.encoder[0].bias[0].item())
