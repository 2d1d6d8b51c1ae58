"""TorchVecEnv.state_dict: a batch's whole state as tensors, so a run resumed from a checkpoint continues
every task exactly (and SequenceReplay's, for RecurrentDQN's replay)."""

import pytest
import torch

from rlmem.agents.buffers import SequenceReplay
from rlmem.envs.registry import TASKS, make_vec_env


@pytest.mark.parametrize("env_id", [env_id for env_id in TASKS if env_id.endswith("Easy-v0")])
def test_every_task_continues_exactly_from_its_state_dict(env_id, tmp_path):
    """The saved state (through a weights-only file) makes a differently seeded batch continue identically."""
    env = make_vec_env(env_id, 6, seed=1)
    gen = torch.Generator().manual_seed(0)
    n_actions = env.single_action_space.n
    env.reset()
    for _ in range(23):
        env.step(torch.randint(n_actions, (6,), generator=gen))
    torch.save(env.state_dict(), tmp_path / "env.pt")
    actions = [torch.randint(n_actions, (6,), generator=gen) for _ in range(70)]

    def play(batch):
        out = []
        for action in actions:
            obs, reward, terminated, truncated, info = batch.step(action)
            out.append((obs, reward, terminated, truncated, info["episode"]["r"], info["episode"]["l"]))
        return out

    expected = play(env)
    other = make_vec_env(env_id, 6, seed=99)
    other.reset()
    other.load_state_dict(torch.load(tmp_path / "env.pt", weights_only=True))
    got = play(other)
    assert any(bool(step[2].any() | step[3].any()) for step in expected) or "Bandit" in env_id
    for a, b in zip(expected, got, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


def test_a_state_dict_of_another_batch_is_refused():
    state = make_vec_env("rlmem/RepeatFirstEasy-v0", 4).state_dict()
    with pytest.raises(ValueError, match="the saved env state is of 4 RepeatFirstEasy envs, not of 4 RepeatPrevious"):
        make_vec_env("rlmem/RepeatPreviousEasy-v0", 4).load_state_dict(state)


def test_the_replay_state_dict_restores_contents_and_positions(tmp_path):
    def filled(steps: int) -> SequenceReplay:
        replay = SequenceReplay(30, 6, 2, 3, 2, [(1, 3)], torch.device("cpu"))
        gen = torch.Generator().manual_seed(0)
        for t in range(steps):
            replay.add(torch.rand(3, 2, generator=gen), torch.randint(2, (3,), generator=gen), torch.rand(3, generator=gen),
                       torch.rand(3, generator=gen) < 0.2, torch.rand(3, generator=gen) < 0.2,
                       (torch.rand(1, 3, 3, generator=gen),))
        return replay

    source = filled(23)
    source.update_priorities(torch.tensor([0, 4]), torch.tensor([2.5, 0.1]))
    torch.save(source.state_dict(), tmp_path / "replay.pt")
    copy = SequenceReplay(30, 6, 2, 3, 2, [(1, 3)], torch.device("cpu"))
    copy.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=True))
    assert (copy.position, copy.next_slot, copy.size, copy.max_priority) == (
        source.position, source.next_slot, source.size, 2.5)
    for name in ("obs", "actions", "rewards", "dones", "episode_starts", "env_ids", "priorities", "w_obs", "w_starts"):
        assert torch.equal(getattr(copy, name), getattr(source, name)), name
    assert torch.equal(copy.states[0], source.states[0]) and torch.equal(copy.w_states[0], source.w_states[0])
    a = copy.sample(8, torch.Generator().manual_seed(1), alpha=0.9, beta=0.6)
    b = source.sample(8, torch.Generator().manual_seed(1), alpha=0.9, beta=0.6)
    assert torch.equal(a["obs"], b["obs"]) and torch.equal(a["weights"], b["weights"])
    with pytest.raises(ValueError, match=r"the saved replay has capacity, seq_len, overlap, n_envs \[30, 6, 2, 3\], "
                                         r"this one \[60, 6, 2, 3\]"):
        SequenceReplay(60, 6, 2, 3, 2, [(1, 3)], torch.device("cpu")).load_state_dict(source.state_dict())
