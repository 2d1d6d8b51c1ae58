"""Encoders chosen from the observation space, and structured observations carried end to end: a gymnasium
env with a Dict of a uint8 image, a Discrete direction and a Text mission (MiniGrid's layout) trains with
each agent, its checkpoint round-trips, and predict takes its observation as the env gives it."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmem import RecurrentDQN, RecurrentPPO, RecurrentPQN, make_vec_env
from rlmem.agents.checkpoints import space_from_dict, space_to_dict
from rlmem.agents.encoders import CombinedEncoder, ImageEncoder, OneHot, channels_first, make_obs_encoder
from rlmem.agents.policy import RecurrentActorCritic, RecurrentQNetwork

IMAGE = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
DICT = gym.spaces.Dict({"image": IMAGE, "direction": gym.spaces.Discrete(4),
                        "mission": gym.spaces.Text(20)})


class GridLike(gym.Env):
    """MiniGrid's observation layout: a cue colour in the image at the first step, act on it at the third."""

    observation_space = DICT
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return self._obs(), {}

    def _obs(self):
        image = np.zeros((7, 7, 3), np.uint8)
        if self.t == 0:
            image[..., self.cue] = 255
        return {"image": image, "direction": self.t % 4, "mission": "remember the colour"}

    def step(self, action):
        self.t += 1
        done = self.t == 3
        return self._obs(), float(done and int(action) == self.cue), done, False, {}


def test_image_channel_order_is_detected_and_overridable():
    assert not channels_first(IMAGE)
    assert channels_first(gym.spaces.Box(0, 255, (3, 16, 16), np.uint8))
    ambiguous = gym.spaces.Box(0, 255, (7, 7, 7), np.uint8)
    with pytest.raises(ValueError, match=r"image shape \(7, 7, 7\) is ambiguous.*image_channels_first: true"):
        make_obs_encoder(ambiguous)
    assert make_obs_encoder(ambiguous, image_channels_first=True).first


def test_small_and_nature_cnns_by_size_and_uint8_scaled():
    small, nature = make_obs_encoder(IMAGE), make_obs_encoder(gym.spaces.Box(0, 255, (84, 84, 3), np.uint8))
    assert isinstance(small, ImageEncoder) and small.output_size == 128
    assert [m.kernel_size for m in nature.cnn if isinstance(m, torch.nn.Conv2d)] == [(8, 8), (4, 4), (3, 3)]
    x = torch.full((2, 5, 7, 7, 3), 255, dtype=torch.uint8)
    assert small(x).shape == (2, 5, 128)
    float_image = ImageEncoder(gym.spaces.Box(0.0, 1.0, (7, 7, 3), np.float32), first=False)
    float_image.load_state_dict(small.state_dict())
    assert torch.allclose(small(x), float_image(torch.ones(2, 5, 7, 7, 3)))  # uint8 / 255 == the float image


def test_dict_entries_one_encoder_each_text_left_out_with_a_note(capsys):
    space = gym.spaces.Dict({"image": IMAGE, "direction": gym.spaces.Discrete(4), "pos": gym.spaces.Box(-1, 1, (2, 2)),
                             "keys": gym.spaces.MultiDiscrete([2, 3]), "mission": gym.spaces.Text(9)})
    encoder = make_obs_encoder(space)
    assert isinstance(encoder, CombinedEncoder) and encoder.keys == ["direction", "image", "keys", "pos"]  # sorted
    assert encoder.output_size == 4 + 128 + 5 + 4
    assert "'mission' (Text) are left out" in capsys.readouterr().out
    obs = {"image": torch.zeros(3, 7, 7, 3, dtype=torch.uint8), "direction": torch.tensor([0, 3, 1]),
           "pos": torch.zeros(3, 2, 2), "keys": torch.tensor([[1, 2], [0, 0], [1, 0]])}
    out = encoder(obs)
    assert out.shape == (3, 141)
    assert out[:, :4].tolist() == np.eye(4)[[0, 3, 1]].tolist()  # one-hot, not a float cast
    assert out[0, 132:137].tolist() == [0, 1, 0, 0, 1]
    tuple_encoder = make_obs_encoder(gym.spaces.Tuple([gym.spaces.Discrete(3), gym.spaces.Box(0, 1, (2,))]))
    assert tuple_encoder((torch.tensor([2]), torch.ones(1, 2))).tolist() == [[0, 0, 1, 1, 1]]
    assert isinstance(make_obs_encoder(gym.spaces.Discrete(5)), OneHot)


@pytest.mark.parametrize("space", [gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), None),
                                   gym.spaces.Sequence(gym.spaces.Discrete(2)), gym.spaces.Text(4)])
def test_spaces_without_an_encoder_are_refused_at_construction(space):
    for build in (lambda: RecurrentActorCritic(space, gym.spaces.Discrete(2)),
                  lambda: RecurrentQNetwork(space, 2)):
        with pytest.raises(ValueError, match=r"observation space .* cannot be encoded as a vector; rlmem accepts Box"):
            build()


def test_the_adapter_keeps_images_uint8_and_dicts_as_dicts():
    env = make_vec_env(GridLike, 4, seed=0)
    obs, _ = env.reset()
    assert set(obs) == {"image", "direction"}
    assert obs["image"].dtype == torch.uint8 and obs["image"].shape == (4, 7, 7, 3)
    assert obs["direction"].dtype == torch.int64 and obs["direction"].shape == (4,)
    for _ in range(3):
        obs, _, term, _, info = env.step(torch.zeros(4, dtype=torch.long))
    assert term.all() and info["final_obs"]["direction"].tolist() == [3] * 4 and obs["direction"].tolist() == [0] * 4


@pytest.mark.parametrize("cls", [RecurrentPPO, RecurrentDQN, RecurrentPQN])
def test_each_agent_trains_saves_loads_and_predicts_on_a_dict_env(cls, tmp_path):
    options = {"n_envs": 4, "hidden_size": 8, "encoder_sizes": (8,)}
    options.update({"n_steps": 8} if cls is not RecurrentDQN else {"seq_len": 6, "overlap": 2, "burn_in": 1,
                                                                    "batch_size": 4, "learning_starts": 8})
    agent = cls(GridLike, device="cpu", seed=0, verbose=0, **options)
    agent.learn(64)
    if cls is RecurrentDQN:
        assert agent.replay.obs["image"].dtype == torch.uint8 and agent.replay.obs["image"].shape[2:] == (7, 7, 3)
    else:
        assert agent._buffer.obs["image"].dtype == torch.uint8 and agent._buffer.obs["image"].shape == (8, 4, 7, 7, 3)
    agent.save(tmp_path / "a.pt")
    loaded = cls.load(tmp_path / "a.pt", env=GridLike, device="cpu", verbose=0)
    one = GridLike().reset(seed=1)[0]
    actions, state = loaded.predict(one, episode_start=np.ones(1, bool), deterministic=True)
    assert np.ndim(actions) == 0
    batch = {"image": np.stack([one["image"]] * 2), "direction": np.array([0, 1])}  # the mission may be left out
    actions, _ = loaded.predict(batch, deterministic=True)
    assert actions.shape == (2,)
    with pytest.raises(ValueError, match=r"wrong structure: expected Dict\(direction: Discrete\(4\), image: "
                                         r"Box\(7, 7, 3\) uint8, mission: Text \(left out\)\), got a dict with keys "
                                         r"\['image'\]$"):
        loaded.predict({"image": one["image"]})
    with pytest.raises(ValueError, match=r"observation\['image'\] has shape \(6, 7, 3\); expected \(7, 7, 3\)"):
        loaded.predict({**one, "image": one["image"][:6]})
    assert 0.0 <= loaded.evaluate(4)["mean_return"] <= 1.0


def test_spaces_round_trip_through_checkpoints():
    for space in (DICT, gym.spaces.Tuple([IMAGE, gym.spaces.MultiBinary(3)]), gym.spaces.Box(0.0, 1.0, (2,), np.float64),
                  gym.spaces.MultiDiscrete([2, 5])):
        assert space_from_dict(space_to_dict(space)) == space


def test_the_probe_refuses_a_dict_observation_in_one_line():
    from rlmem.probes import rollout

    agent = RecurrentPPO(GridLike, device="cpu", seed=0, verbose=0, n_envs=4, n_steps=4, hidden_size=8)
    with pytest.raises(ValueError, match=r"^the probe reads observations that are one array; GridLike.s are Dict"):
        rollout(agent, make_vec_env(GridLike, 2), 3)


@pytest.mark.parametrize("cls", [RecurrentPPO, RecurrentDQN, RecurrentPQN])
def test_a_training_checkpoint_of_a_dict_env_restores_and_resumes(cls, tmp_path):
    options = {"n_envs": 4, "hidden_size": 8, "encoder_sizes": (8,)}
    options.update({"n_steps": 8} if cls is not RecurrentDQN else {"seq_len": 6, "overlap": 2, "burn_in": 1,
                                                                    "batch_size": 4, "learning_starts": 8})
    agent = cls(GridLike, device="cpu", seed=0, verbose=0, **options)
    agent.learn(64, checkpoint_dir=tmp_path)
    restored = cls.restore(tmp_path / "final.pt", env=GridLike, device="cpu", verbose=0)
    if cls is RecurrentDQN:  # the replay, observation dicts included, comes back as it was
        assert torch.equal(restored.replay.obs["image"], agent.replay.obs["image"])
    restored.learn(32)
    assert restored.num_timesteps >= 96


def test_the_sb3_baseline_refuses_a_dict_observation_in_one_line():
    from rlmem.agents.sb3_baseline import SB3Baseline

    with pytest.raises(ValueError, match=r"^sb3-ppo-lstm runs sb3-contrib's MlpLstmPolicy on one observation array; "
                                         r".*observation space is Dict .*use --algo ppo"):
        SB3Baseline(GridLike, device="cpu", n_envs=2)
