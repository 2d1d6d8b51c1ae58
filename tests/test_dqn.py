"""RecurrentDQN: its API, the sequence replay's invariants, the pieces of its loss, and bad input."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlmem import DQNConfig, RecurrentDQN
from rlmem.agents.buffers import SequenceReplay
from rlmem.agents.dqn_targets import (
    burn_in_unroll,
    inverse_value_rescale,
    n_step_targets,
    sequence_priorities,
    value_rescale,
)


TINY = {"n_envs": 8, "seq_len": 8, "overlap": 4, "burn_in": 2, "hidden_size": 16, "encoder_sizes": (16,),
        "batch_size": 8, "learning_starts": 64, "buffer_size": 2_000}


# ---------------------------------------------------------------------- API
def test_learn_logs_every_tag_and_continues(tmp_path, capsys):
    agent = RecurrentDQN("rlmem/PassiveTMazeEasy-v0", device="cpu", tensorboard_log=tmp_path, **TINY)
    agent.learn(256, progress_bar=False)
    assert agent.num_timesteps == 256 and agent.num_updates > 0
    agent.learn(256, progress_bar=False)  # continues where it stopped
    assert agent.num_timesteps == 512
    out = capsys.readouterr().out
    assert "replay: 248 sequences of 8 steps (2,000 transitions)" in out and "MiB on cpu" in out
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/epsilon",
                "losses/loss", "losses/q_values", "losses/td_error"):
        assert tag in tags, tag
    assert events.Scalars("charts/episodic_length")[-1].value == 11.0


def test_learning_waits_for_a_first_whole_sequence():
    """seq_len 16 with overlap 12: each iteration is 4 steps per env, so learning_starts (8) is
    passed after 2 iterations but the first sequence is stored only after 4: no update before."""
    agent = RecurrentDQN("rlmem/PassiveTMazeEasy-v0", device="cpu", verbose=0,
                         **{**TINY, "n_envs": 2, "seq_len": 16, "overlap": 12, "learning_starts": 8})
    updates = []
    agent.learn(40, progress_bar=False, callback=lambda a: updates.append((a.replay.size, a.num_updates)))
    assert updates[:4] == [(0, 0), (0, 0), (0, 0), (2, TINY.get("updates_per_iteration", DQNConfig().updates_per_iteration))]


def test_predict_has_sb3_contrib_semantics():
    agent = RecurrentDQN("rlmem/RepeatPreviousEasy-v0", device="cpu", **TINY)
    obs = np.eye(4, dtype=np.float32)[[0, 1, 2]]
    actions, state = agent.predict(obs, deterministic=True)
    assert actions.shape == (3,) and len(state) == 2 and state[0].shape == (1, 3, 16)
    again, _ = agent.predict(obs, state=state, episode_start=np.ones(3, bool), deterministic=True)
    np.testing.assert_array_equal(actions, again)  # a start zeroes memory, like no state at all
    _, state2 = agent.predict(obs, state=state, deterministic=True)
    assert not np.allclose(state2[0], state[0])  # memory moves when carried
    single, _ = agent.predict(obs[0], deterministic=True)
    assert np.ndim(single) == 0
    with pytest.raises(ValueError, match=r"observation has shape \(3, 5\); expected \(4,\)"):
        agent.predict(np.zeros((3, 5), np.float32))


def test_save_and_load_round_trip(tmp_path):
    agent = RecurrentDQN("rlmem/RepeatPreviousEasy-v0", device="cpu", memory="gru", dueling=True, **TINY)
    agent.learn(128, progress_bar=False)
    agent.save(tmp_path / "agent.pt")
    loaded = RecurrentDQN.load(tmp_path / "agent.pt", device="cpu")
    assert loaded.num_timesteps == 128 and loaded.num_updates == agent.num_updates
    assert loaded.config == agent.config
    obs = np.eye(4, dtype=np.float32)[[0, 3]]
    a1, s1 = agent.predict(obs, deterministic=True)
    a2, s2 = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(s1[0], s2[0])
    with pytest.raises(ValueError, match="holds a RecurrentDQN agent, not a RecurrentPPO"):
        from rlmem import RecurrentPPO

        RecurrentPPO.load(tmp_path / "agent.pt")


def test_apex_gives_each_env_its_own_epsilon():
    agent = RecurrentDQN("rlmem/PassiveTMazeEasy-v0", device="cpu", epsilon_schedule="apex", **TINY)
    eps = agent.epsilon()
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.4**8)
    assert torch.all(eps[1:] < eps[:-1])
    linear = RecurrentDQN("rlmem/PassiveTMazeEasy-v0", device="cpu", exploration_steps=100, **TINY)
    assert torch.all(linear.epsilon() == 1.0)
    linear.num_timesteps = 50
    assert float(linear.epsilon()[0]) == pytest.approx(1.0 + 0.5 * (0.05 - 1.0))


# ---------------------------------------------------------------------- sequence replay
def _fill(replay: SequenceReplay, n_envs: int, steps: int, done_every: int) -> None:
    """Feed steps whose obs and state encode (env, t): obs = [env, t], state = 1000 * env + t."""
    envs = torch.arange(n_envs, dtype=torch.float32)
    for t in range(steps):
        obs = torch.stack((envs, torch.full((n_envs,), float(t))), dim=1)
        state = ((1000 * envs + t).view(1, n_envs, 1).expand(1, n_envs, 3).clone(),)
        done = torch.full((n_envs,), (t + 1) % done_every == 0)
        start = torch.full((n_envs,), t % done_every == 0)
        replay.add(obs, envs.long() % 2, torch.ones(n_envs), done, start, state)


@pytest.mark.parametrize("overlap", [0, 2, 5])
def test_sequences_never_mix_envs_and_start_from_the_actors_state(overlap):
    n, seq_len = 3, 6
    replay = SequenceReplay(capacity=30, seq_len=seq_len, overlap=overlap, n_envs=n, obs_size=2,
                            state_shapes=[(1, 3)], device=torch.device("cpu"))
    _fill(replay, n, 40, done_every=7)
    assert replay.size == min(30, n * ((40 - seq_len) // (seq_len - overlap) + 1))
    obs = replay.obs[:, : replay.size]
    env_of = obs[..., 0]
    assert torch.all(env_of == env_of[0])  # one env per sequence
    assert torch.all(env_of[0].long() == replay.env_ids[: replay.size])
    times = obs[..., 1]
    assert torch.all(times[1:] - times[:-1] == 1)  # consecutive steps of that env
    assert torch.all((times[0] % (seq_len - overlap)) == 0)  # a new sequence every seq_len - overlap steps
    # The stored state is the state the actor had at the sequence's first step.
    expected = 1000 * env_of[0] + times[0]
    assert torch.all(replay.states[0][0, : replay.size] == expected.unsqueeze(-1))
    # Episode ends and starts are kept where they happened.
    assert torch.all(replay.dones[:, : replay.size] == ((times + 1) % 7 == 0))
    assert torch.all(replay.episode_starts[:, : replay.size] == (times % 7 == 0))


@pytest.mark.parametrize(("seq_len", "overlap"), [(6, 0), (6, 2), (6, 5), (7, 3), (20, 10)])
def test_stored_steps_then_advanced_counters_equal_adding_step_by_step(seq_len, overlap):
    """The split a CUDA graph needs: the device work of k steps at window_rows(k) (no host counter touched),
    then advance(k), leaves the same replay as k adds; the device's write slot follows the host's."""
    n, steps = 3, 5 * seq_len + 3
    stepwise = SequenceReplay(24, seq_len, overlap, n, 2, [(1, 3)], torch.device("cpu"))
    _fill(stepwise, n, steps, done_every=7)
    batched = SequenceReplay(24, seq_len, overlap, n, 2, [(1, 3)], torch.device("cpu"))
    envs = torch.arange(n, dtype=torch.float32)
    done_so_far = 0
    for chunk in (1, seq_len - overlap, seq_len + 2, steps):  # uneven chunks, crossing window ends
        chunk = min(chunk, steps - done_so_far)
        counters = (batched.position, batched.next_slot, batched.size)
        for row, t in zip(batched.window_rows(chunk), range(done_so_far, done_so_far + chunk), strict=True):
            obs = torch.stack((envs, torch.full((n,), float(t))), dim=1)
            state = ((1000 * envs + t).view(1, n, 1).expand(1, n, 3).clone(),)
            batched.store(row, obs, envs.long() % 2, torch.ones(n), torch.full((n,), (t + 1) % 7 == 0),
                          torch.full((n,), t % 7 == 0), state)
        assert (batched.position, batched.next_slot, batched.size) == counters  # store moved no host number
        batched.advance(chunk)
        done_so_far += chunk
    assert (batched.position, batched.next_slot, batched.size) == (
        stepwise.position, stepwise.next_slot, stepwise.size)
    assert int(batched.slot_base) == batched.next_slot == int(stepwise.slot_base)
    for name in ("obs", "actions", "rewards", "dones", "episode_starts", "env_ids", "w_obs", "w_dones"):
        assert torch.equal(getattr(batched, name), getattr(stepwise, name)), name
    assert torch.equal(batched.states[0], stepwise.states[0])


def test_a_loaded_replay_writes_where_the_saved_one_would_have():
    """The device's write slot is restored from the saved host counter (not left at zero)."""
    replay = SequenceReplay(24, 6, 2, 3, 2, [(1, 3)], torch.device("cpu"))
    _fill(replay, 3, 17, done_every=7)
    copy = SequenceReplay(24, 6, 2, 3, 2, [(1, 3)], torch.device("cpu"))
    copy.load_state_dict(replay.state_dict())
    assert replay.next_slot > 0 and int(copy.slot_base) == replay.next_slot


def test_zero_state_ablation_stores_zeros():
    replay = SequenceReplay(30, 6, 2, 3, 2, [(1, 3)], torch.device("cpu"), store_state=False)
    _fill(replay, 3, 20, done_every=7)
    assert replay.size > 0 and torch.all(replay.states[0] == 0)


def test_agent_replay_holds_the_state_its_actor_had():
    """Replaying a stored sequence from its stored state reproduces the actor's Q-values (greedy actions)."""
    agent = RecurrentDQN("rlmem/RepeatPreviousEasy-v0", device="cpu", epsilon_start=0.0, epsilon_end=0.0,
                         learning_starts=10**6, **{k: v for k, v in TINY.items() if k != "learning_starts"})
    agent.learn(200, progress_bar=False)
    replay = agent.replay
    assert replay.size >= 8
    slots = torch.arange(replay.size)
    q, _ = agent.q_net(replay.obs[:, slots], tuple(s[:, slots] for s in replay.states),
                       replay.episode_starts[:, slots])
    # With epsilon 0 the actor took the greedy action: the replayed Q-values must agree with it
    # (up to float differences between the fused sequence unroll and the actor's single steps).
    taken = q.gather(-1, replay.actions[:, slots].unsqueeze(-1)).squeeze(-1)
    assert torch.all(taken >= q.max(-1).values - 1e-5)
    # Later sequences do not start at zero: the carried memory is really stored.
    assert torch.all(replay.states[0][:, :8] == 0)  # the first 8 sequences (one per env) start at zeros
    assert not torch.all(replay.states[0][:, 8 : replay.size] == 0)


def test_prioritized_sampling_follows_priorities():
    replay = SequenceReplay(30, 6, 2, 3, 2, [(1, 3)], torch.device("cpu"))
    _fill(replay, 3, 20, done_every=7)
    replay.priorities[: replay.size] = 0.0
    replay.priorities[4] = 1.0
    batch = replay.sample(16, torch.Generator().manual_seed(0), alpha=0.9, beta=0.6)
    assert torch.all(batch["slots"] == 4) and torch.allclose(batch["weights"], torch.ones(16))
    replay.update_priorities(torch.tensor([0, 1]), torch.tensor([3.0, 0.5]))
    assert replay.priorities[0] == 3.0 and replay.max_priority == 3.0


# ---------------------------------------------------------------------- the loss
def test_burn_in_steps_take_no_loss():
    agent = RecurrentDQN("rlmem/RepeatPreviousEasy-v0", device="cpu", **TINY)
    obs = torch.randn(8, 5, 4, requires_grad=True)
    starts = torch.zeros(8, 5, dtype=torch.bool)
    q = burn_in_unroll(agent.q_net, obs, agent.q_net.initial_state(5), starts, burn_in=3)
    assert q.shape == (5, 5, 4)  # only the steps after the burn-in
    q.sum().backward()
    assert torch.all(obs.grad[:3] == 0) and torch.any(obs.grad[3:] != 0)
    # The burn-in still warms the state up: the first trained step sees the burnt-in memory.
    cold = burn_in_unroll(agent.q_net, obs[3:].detach(), agent.q_net.initial_state(5), starts[3:], burn_in=0)
    assert not torch.allclose(q[0], cold[0])


def test_n_step_double_q_target_on_a_hand_made_sequence():
    gamma = 0.5
    # One sequence of 6 steps; the episode ends at step 2 (a new one starts at step 3).
    rewards = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]).unsqueeze(1)
    dones = torch.tensor([False, False, True, False, False, False]).unsqueeze(1)
    boot = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]).unsqueeze(1)
    target, mask = n_step_targets(rewards, dones, boot, gamma, n_step=2)
    expected = [
        1 + 0.5 * 2 + 0.25 * 30,  # t=0: r0 + g r1 + g^2 Q(s2)
        2 + 0.5 * 4,  # t=1: the episode ends at step 2: no bootstrap
        4,  # t=2: last step of its episode
        8 + 0.5 * 16 + 0.25 * 60,  # t=3: r3 + g r4 + g^2 Q(s5)
        16 + 0.5 * 60,  # t=4: only one step left in the sequence: r4 + g Q(s5)
        0,  # t=5: the last step, its episode goes on: no target
    ]
    np.testing.assert_allclose(target.squeeze(1).numpy()[:5], expected[:5])
    assert mask.squeeze(1).tolist() == [True, True, True, True, True, False]
    # The last step has a target where its episode ends there: its reward alone.
    dones[5] = True
    target, mask = n_step_targets(rewards, dones, boot, gamma, n_step=2)
    assert mask[5].item() and target[5].item() == 32.0


def test_value_rescaling_and_its_inverse():
    x = torch.linspace(-1000, 1000, 2001, dtype=torch.float64)
    np.testing.assert_allclose(inverse_value_rescale(value_rescale(x)).numpy(), x.numpy(), rtol=1e-9, atol=1e-7)
    assert value_rescale(torch.tensor(3.0)).item() == pytest.approx(1.0 + 3e-3)
    assert value_rescale(torch.tensor(0.0)).item() == 0.0
    target, _ = n_step_targets(torch.ones(3, 1), torch.zeros(3, 1, dtype=torch.bool),
                               value_rescale(torch.full((3, 1), 8.0)), 1.0, 1, rescale=True)
    assert target[0].item() == pytest.approx(value_rescale(torch.tensor(9.0)).item(), rel=1e-4)


def test_priority_is_r2d2s_mix_of_max_and_mean():
    td = torch.tensor([[1.0, -2.0], [-3.0, 0.5], [100.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])  # the last step takes no loss
    np.testing.assert_allclose(sequence_priorities(td, mask).numpy(), [0.9 * 3 + 0.1 * 2, 0.9 * 2 + 0.1 * 1.25])


# ---------------------------------------------------------------------- bad input
def test_continuous_actions_are_refused():
    with pytest.raises(ValueError, match=r"needs a Discrete action space; this env's is continuous"):
        RecurrentDQN("Pendulum-v1", device="cpu", **TINY)


class TwoSwitches(gym.Env):
    observation_space = gym.spaces.Box(0, 1, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


def test_multidiscrete_actions_are_refused_not_flattened():
    with pytest.raises(ValueError, match="MultiDiscrete is refused, not flattened"):
        RecurrentDQN(TwoSwitches, device="cpu", **TINY)


def test_the_replay_size_computed_before_allocation_is_what_it_allocates():
    from rlmem.agents.buffers import tensor_nbytes

    agent = RecurrentDQN("rlmem/PassiveTMazeEasy-v0", device="cpu", verbose=0, **TINY)
    replay = agent._make_replay()
    assert agent.replay_nbytes() == tensor_nbytes(replay) > replay.obs.numel() * 4


def test_a_replay_larger_than_the_device_fails_before_allocation():
    with pytest.raises(ValueError, match=r"replay of buffer_size 1,000,000,000,000 transitions needs [\d,]+ bytes"):
        RecurrentDQN("rlmem/PassiveTMazeEasy-v0", device="cpu", **{**TINY, "buffer_size": 10**12})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"burn_in": 8}, r"burn_in \(8\) must be shorter than seq_len \(8\)"),
    ({"burn_in": 12}, r"burn_in \(12\) must be shorter than seq_len \(8\)"),
    ({"overlap": 8}, r"overlap \(8\) must be shorter than seq_len \(8\)"),
    ({"buffer_size": 10}, r"buffer_size \(10\) must hold at least one sequence per env"),
    ({"epsilon_schedule": "cosine"}, "epsilon_schedule must be 'linear' or 'apex'"),
    ({"tau": 0.0}, "tau must be in"),
    ({"adam_eps": 0.0}, r"adam_eps must be > 0, got 0.0"),
    ({"adam_eps": "1e-4"}, r"adam_eps must be a number, got str '1e-4'"),
    ({"seq_len": 8.0}, r"seq_len must be an integer, got float 8.0"),
    ({"dueling": 1}, r"dueling must be true or false, got int 1"),
    ({"n_stpe": 3}, "unknown hyperparameter 'n_stpe' for DQNConfig; did you mean 'n_step'?"),
])
def test_bad_hyperparameters_fail_naming_them(overrides, message):
    with pytest.raises(ValueError, match=message):
        RecurrentDQN("rlmem/PassiveTMazeEasy-v0", device="cpu", **{**TINY, **overrides})


def test_config_defaults_validate():
    DQNConfig().validate()


@pytest.mark.parametrize("options", [
    {"prioritized": True, "value_rescaling": True},
    {"dueling": True, "tau": 0.01, "memory": "gru", "epsilon_schedule": "apex"},
])
def test_the_options_train_and_do_what_they_say(options):
    agent = RecurrentDQN("rlmem/MemoryChainEasy-v0", device="cpu", **{**TINY, **options})
    before = [p.clone() for p in agent.target_net.parameters()]
    agent.learn(256, progress_bar=False)
    assert all(np.isfinite(v) for k, v in agent.last_log.items() if k.startswith("losses/"))
    moved = any(not torch.equal(a, b) for a, b in zip(before, agent.target_net.parameters(), strict=True))
    assert moved == (options.get("tau", 1.0) < 1.0 or agent.num_updates >= agent.config.target_update_interval)
    if options.get("prioritized"):
        priorities = agent.replay.priorities[: agent.replay.size]
        assert len(set(priorities.tolist())) > 2  # sampled sequences got their own priorities


def test_on_the_cpu_both_calls_run_eagerly_with_the_chunked_unroll():
    """CUDA graphs are a GPU matter: on the CPU ``unroll: auto`` is the core's sequence path and every
    acting and learner call runs the eager reference (what the CUDA tests compare replays with)."""
    agent = RecurrentDQN("rlmem/PassiveTMazeEasy-v0", device="cpu", verbose=0, **TINY)
    assert agent.config.unroll == "auto" and agent.unroll == "chunked" and not agent.uses_cuda_graphs
    agent.learn(256, progress_bar=False)
    acting, learner = agent.graph_calls["acting"], agent.graph_calls["learner"]
    assert acting.eager_calls == 256 // agent.steps_per_iteration and acting.replays == acting.captures == 0
    assert learner.eager_calls == agent.num_updates > 0 and learner.replays == learner.captures == 0
