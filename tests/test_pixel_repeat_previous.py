"""PixelRepeatPrevious: RepeatPrevious seen through noisy glyph images rendered in tensors.

tests/test_tasks.py holds it to what every task does (levels, seeding, bad arguments, the oracle's 1.0 on
its hidden state, the chance return); here: what its images show, a scripted policy that reads the images
alone and returns 1.0, a policy without memory at chance, and the CNN + memory path through PPO and DQN.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmem import RecurrentDQN, RecurrentPPO, make_vec_env
from rlmem.envs.pixel_repeat_previous import GLYPHS, PixelRepeatPrevious, PixelRepeatPreviousEasy

EASY = "rlmem/PixelRepeatPreviousEasy-v0"


def read_symbol(images: torch.Tensor, env: PixelRepeatPrevious) -> torch.Tensor:
    """The symbol of each image ``[N, 1, S, S]``, from its pixels alone (the nearest glyph)."""
    bright = images.reshape(images.shape[0], 1, -1) > 127
    return (bright == env.glyphs.reshape(1, len(env.glyphs), -1)).sum(-1).argmax(-1)


def test_images_are_uint8_glyphs_with_bounded_noise():
    env = PixelRepeatPreviousEasy(num_envs=32, seed=0)
    assert env.single_observation_space == gym.spaces.Box(0, 255, (1, 16, 16), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == torch.uint8 and obs.shape == (32, 1, 16, 16)
    assert env.single_observation_space.contains(obs[0].numpy())
    shown = env._symbols(env._column())
    mask = env.glyphs[shown].unsqueeze(1)
    assert bool((obs[mask] >= 255 - 64).all()) and bool((obs[~mask] <= 64).all())
    assert torch.equal(read_symbol(obs, env), shown)
    assert len({g.replace(" ", "") for g in GLYPHS}) == len(GLYPHS)  # distinct glyphs
    clean = PixelRepeatPrevious(num_envs=4, seed=0, noise=0, size=32)
    obs, _ = clean.reset()
    assert obs.shape == (4, 1, 32, 32) and set(obs.unique().tolist()) <= {0, 255}


@pytest.mark.parametrize("value", [6, 3, 128, -1])
def test_bad_size_and_noise_name_the_field(value):
    field = "size" if value in (6, 3) else "noise"
    with pytest.raises(ValueError, match=f"^{field} must"):
        PixelRepeatPrevious(num_envs=1, **{field: value})
    with pytest.raises(ValueError, match="^num_symbols must be an integer in 2..8"):
        PixelRepeatPrevious(num_envs=1, num_symbols=9)


def test_a_scripted_policy_reading_only_pixels_returns_one():
    """Remember the last k symbols read off the images; name the oldest: every episode returns 1.0."""
    n = 64
    env = PixelRepeatPreviousEasy(num_envs=n, seed=1)
    obs, _ = env.reset(seed=1)
    history = [read_symbol(obs, env)]
    returns = []
    for _ in range(2 * env.length):
        target = history[-1 - env.k] if len(history) > env.k else torch.zeros(n, dtype=torch.int64)
        obs, _, term, _, info = env.step(target)
        if bool(term.any()):
            assert bool(term.all())
            returns.append(info["episode"]["r"])
            history = []
        history.append(read_symbol(obs, env))
    assert len(returns) == 2
    assert torch.allclose(torch.stack(returns), torch.ones(2, n, dtype=torch.float64), atol=1e-6)


def test_a_policy_without_memory_is_at_chance():
    """Naming the symbol shown now (all a memoryless policy can read) is right one time in four: -0.5."""
    n = 2048
    env = PixelRepeatPreviousEasy(num_envs=n, seed=2)
    obs, _ = env.reset(seed=2)
    for _ in range(env.length):
        obs, _, term, _, info = env.step(read_symbol(obs, env))
    assert bool(term.all())
    assert abs(info["episode"]["r"].mean().item() - env.chance_return()) < 0.02


def test_the_probe_reads_the_symbol_off_the_glyph():
    env = PixelRepeatPreviousEasy(num_envs=8, seed=0)
    obs, _ = env.reset()
    labels, valid, reads = env.probe_labels(obs.unsqueeze(0), torch.zeros(1, 8, dtype=torch.int64))
    assert torch.equal(labels[0], env._symbols(env._column())) and bool(valid.all()) and "glyph" in reads


@pytest.mark.parametrize("cls", [RecurrentPPO, RecurrentDQN])
def test_the_cnn_and_memory_path_trains_on_uint8_images(cls, tmp_path):
    options = {"n_envs": 8, "hidden_size": 16}
    options.update({"n_steps": 16} if cls is RecurrentPPO else {"seq_len": 8, "overlap": 4, "burn_in": 2,
                                                               "batch_size": 8, "learning_starts": 32})
    agent = cls(EASY, device="cpu", seed=0, verbose=0, **options)
    net = agent.policy if cls is RecurrentPPO else agent.q_net
    assert net.obs_encoder.first and net.obs_encoder.scale  # channels first (1, 16, 16), uint8 scaled
    agent.learn(256)
    stored = agent._buffer.obs if cls is RecurrentPPO else agent.replay.obs
    assert stored.dtype == torch.uint8 and stored.shape[2:] == (1, 16, 16)
    agent.save(tmp_path / "a.pt")
    loaded = cls.load(tmp_path / "a.pt", device="cpu", verbose=0)
    obs, _ = make_vec_env(EASY, 3, seed=0).reset()
    actions, _ = loaded.predict(obs.numpy(), deterministic=True)
    assert actions.shape == (3,)
