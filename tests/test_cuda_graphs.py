"""The CUDA path: graph replays equal the eager reference, GPU env semantics equal the CPU's, the GPU learns.

Every test here needs a CUDA GPU and is skipped without one; the CPU suite covers the eager code
these compare against (the same functions, run uncaptured).
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from learning import learned_by_some_seed
from rlmem.agents.dqn import RecurrentDQN
from rlmem.agents.graphs import GraphedCall
from rlmem.agents.ppo import RecurrentPPO
from rlmem.agents.pqn import RecurrentPQN
from rlmem.envs.registry import make_vec_env
from rlmem.memory import CORES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

TASKS = ["rlmem/RepeatPreviousEasy-v0", "rlmem/RepeatFirstEasy-v0", "rlmem/CountRecallEasy-v0",
         "rlmem/PassiveTMazeEasy-v0", "rlmem/MemoryChainEasy-v0", "rlmem/MultiarmedBanditEasy-v0",
         "rlmem/MaskedCartPoleEasy-v0"]


def _agent(cuda_graphs: bool, **kwargs) -> RecurrentPPO:
    settings = {"n_envs": 32, "n_steps": 16, "unroll": "per_step", "seed": 5, **kwargs}
    return RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cuda", verbose=0, cuda_graphs=cuda_graphs, **settings)


def _weights(agent: RecurrentPPO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.policy.parameters()]


@pytest.mark.parametrize("lr_schedule", ["constant", "linear"])
def test_graph_replays_equal_the_eager_training(lr_schedule):
    """Same seed, graphs on and off: the same rollouts, losses and weights after several iterations."""
    _assert_same_training(_agent(True, lr_schedule=lr_schedule), _agent(False, lr_schedule=lr_schedule))


@pytest.mark.parametrize("memory", [core for core in CORES if core not in ("lstm", "gru")])
def test_graph_replays_equal_the_eager_training_for_every_core(memory):
    """Every other core, with the unroll 'auto' picks: its own sequence path recorded in the update's graph
    (the scan, the attention), or per_step where that path reads the host (elman)."""
    graphed = _agent(True, memory=memory, unroll="auto")
    assert graphed.unroll == ("per_step" if CORES[memory].chunked_reads_host else "chunked")
    _assert_same_training(graphed, _agent(False, memory=memory, unroll=graphed.unroll))


def _assert_same_training(graphed: RecurrentPPO, eager: RecurrentPPO) -> None:
    assert graphed.uses_cuda_graphs and not eager.uses_cuda_graphs
    steps = 32 * 16 * 5
    for agent in (graphed, eager):  # actions are drawn from torch's global generator: the same start for both
        torch.manual_seed(5)
        agent.learn(steps)
    assert graphed._rollout_call.failed is None and graphed._minibatch_call.failed is None
    assert graphed._rollout_call.replays >= 3 and graphed._minibatch_call.replays >= 10
    assert eager._rollout_call.replays == 0 and eager._minibatch_call.replays == 0
    for name in ("obs", "actions", "rewards", "advantages", "returns", "log_probs"):
        torch.testing.assert_close(getattr(graphed._buffer, name), getattr(eager._buffer, name),
                                   rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(_weights(graphed), _weights(eager), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for key in ("losses/loss", "losses/approx_kl", "losses/explained_variance", "charts/learning_rate"):
        assert graphed.last_log[key] == pytest.approx(eager.last_log[key], rel=1e-3, abs=1e-5), key


@pytest.mark.parametrize("memory", list(CORES))
def test_pqn_graph_replays_equal_the_eager_training(memory):
    """RecurrentPQN, graphs on and off, every core: the same rollouts, targets, losses and weights."""
    def make(cuda_graphs: bool, **kwargs) -> RecurrentPQN:
        return RecurrentPQN("rlmem/RepeatPreviousEasy-v0", device="cuda", verbose=0, cuda_graphs=cuda_graphs,
                            memory=memory, n_envs=32, n_steps=16, seed=5, exploration_steps=2_000, **kwargs)

    graphed = make(True)
    eager = make(False, unroll=graphed.unroll)
    assert graphed.uses_cuda_graphs and not eager.uses_cuda_graphs
    for agent in (graphed, eager):  # epsilon-greedy draws from torch's global generator: the same start for both
        torch.manual_seed(5)
        agent.learn(32 * 16 * 5)
    rollout, update = graphed.graph_calls["rollout"], graphed.graph_calls["update"]
    assert rollout.failed is None and update.failed is None
    assert rollout.replays >= 3 and update.replays >= 10
    assert eager.graph_calls["rollout"].replays == 0 and eager.graph_calls["update"].replays == 0
    for name in ("obs", "actions", "rewards", "values", "returns"):
        torch.testing.assert_close(getattr(graphed._buffer, name), getattr(eager._buffer, name),
                                   rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(graphed.q_net.parameters(), eager.q_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for key in ("losses/loss", "losses/q_values", "losses/td_error", "charts/epsilon"):
        assert graphed.last_log[key] == pytest.approx(eager.last_log[key], rel=1e-3, abs=1e-5), key


def _dqn(cuda_graphs: bool, **kwargs) -> RecurrentDQN:
    # buffer_size 2,400: 192 slots, so the ring's write slot wraps inside the recorded acting steps.
    settings = {"n_envs": 32, "seq_len": 12, "overlap": 4, "burn_in": 2, "batch_size": 16, "learning_starts": 256,
                "buffer_size": 2_400, "exploration_steps": 2_000, "target_update_interval": 4, "seed": 5, **kwargs}
    return RecurrentDQN("rlmem/RepeatPreviousEasy-v0", device="cuda", verbose=0, cuda_graphs=cuda_graphs, **settings)


def _assert_same_dqn_training(graphed: RecurrentDQN, eager: RecurrentDQN) -> None:
    assert graphed.uses_cuda_graphs and not eager.uses_cuda_graphs
    for agent in (graphed, eager):  # epsilon-greedy draws from torch's global generator: the same start for both
        torch.manual_seed(5)
        agent.learn(32 * 8 * 8)  # 8 iterations of 8 steps per env
        agent._load_modules_state(agent._modules_state())  # as a restore does: a new optimizer state,
        agent._load_checkpoint_parts(agent._checkpoint_parts())  # a new replay (its counters loaded)
        agent._last = agent._start()  # and a reset: the window position (the acting call's key) back to 0
        agent.learn(32 * 8 * 4)
    acting, learner = graphed.graph_calls["acting"], graphed.graph_calls["learner"]
    assert acting.failed is None and learner.failed is None
    # Acting: 2 eager (keys 0, 8), recorded at iteration 3 (key 8) and replayed to 8; after the restore
    # recorded at 9 (key 0, new addresses) and 10 (key 8). The learner: no update in iteration 1 (no whole
    # sequence yet), then 8 an iteration: 2 eager, recorded once, and once more after the restore.
    assert (acting.eager_calls, acting.captures, acting.replays) == (2, 3, 10)
    assert (learner.eager_calls, learner.captures, learner.replays) == (2, 2, 86)
    assert eager.graph_calls["acting"].replays == 0 and eager.graph_calls["learner"].replays == 0
    assert (graphed.replay.position, graphed.replay.next_slot, graphed.replay.size, graphed.num_updates) == (
        eager.replay.position, eager.replay.next_slot, eager.replay.size, eager.num_updates)
    assert int(graphed.replay.slot_base) == graphed.replay.next_slot
    for name in ("obs", "actions", "rewards", "dones", "episode_starts", "priorities", "w_obs", "w_rewards"):
        torch.testing.assert_close(getattr(graphed.replay, name), getattr(eager.replay, name),
                                   rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(graphed.replay.states, eager.replay.states, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for net in ("q_net", "target_net"):
        for a, b in zip(getattr(graphed, net).parameters(), getattr(eager, net).parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=net)
    for key in ("losses/loss", "losses/q_values", "losses/td_error", "charts/epsilon"):
        assert graphed.last_log[key] == pytest.approx(eager.last_log[key], rel=1e-3, abs=1e-5), key


@pytest.mark.parametrize("memory", list(CORES))
def test_dqn_graph_replays_equal_the_eager_training(memory):
    """RecurrentDQN, graphs on and off, every core: the same replay, target network, losses and weights,
    through a reset that moves the replay's window position (the acting call is recorded again)."""
    graphed = _dqn(True, memory=memory)
    _assert_same_dqn_training(graphed, _dqn(False, memory=memory, unroll=graphed.unroll))


def test_dqn_graph_replays_equal_the_eager_training_with_priorities_and_polyak():
    """Prioritized sampling (drawn on the host, the priorities written inside the graph) and a soft target."""
    graphed = _dqn(True, prioritized=True, tau=0.1)
    _assert_same_dqn_training(graphed, _dqn(False, prioritized=True, tau=0.1, unroll=graphed.unroll))


def test_dqn_acting_and_learner_step_read_nothing_to_the_host():
    """The eager twins of RecurrentDQN's recorded calls: acting steps and a learner step without one sync."""
    agent = _dqn(False, unroll="per_step")
    agent.learn(32 * 8 * 4)  # replay, optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        agent._act(8)
        agent._learn_on_slots()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_graphed_call_records_again_for_a_new_key():
    """A call whose Python path depends on a host number replays only under the key it was recorded with."""
    total = torch.zeros(3, device="cuda")
    mode = {"add": 1.0}

    def step():
        total.add_(mode["add"])
        return total

    call = GraphedCall(step, lambda: [total], warmup=1, key=lambda: mode["add"])
    for _ in range(3):  # eager, recorded (and replayed), replayed
        call()
    mode["add"] = 10.0
    call()
    assert call.captures == 2 and call.replays == 3
    assert float(total[0]) == 13.0


def test_a_moved_input_is_recorded_again():
    """Loading weights and an optimizer state mid-run (as a checkpoint restore does) re-records, not replays stale."""
    agent = _agent(True)
    agent.learn(32 * 16 * 3)
    captures = agent._rollout_call.captures, agent._minibatch_call.captures
    agent._load_modules_state(agent._modules_state())  # new optimizer state tensors
    agent._last = {k: (tuple(s.clone() for s in v) if isinstance(v, tuple) else v.clone())
                   for k, v in agent._last.items()}
    agent.learn(32 * 16 * 2)
    assert agent._rollout_call.captures == captures[0] + 1
    assert agent._minibatch_call.captures == captures[1] + 1


def test_graphed_call_writes_reassigned_state_back():
    """A holder's attribute replaced inside the call continues from the last replay's value."""
    class Counter:
        def __init__(self):
            self.value = torch.zeros(3, device="cuda")

    counter = Counter()

    def step():
        counter.value = counter.value + 1
        return counter.value * 2

    call = GraphedCall(step, lambda: [counter.value], holders=[counter], warmup=1)
    outputs = [call().clone() for _ in range(5)]
    assert call.replays == 4
    assert [float(o[0]) for o in outputs] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert float(counter.value[0]) == 5.0


@pytest.mark.parametrize("env_id", TASKS)
def test_gpu_steps_match_cpu_steps(env_id):
    """From the same state and actions, a CUDA batch gives the CPU batch's rewards and episode ends."""
    cpu = make_vec_env(env_id, num_envs=64, device="cpu", seed=1)
    gpu = make_vec_env(env_id, num_envs=64, device="cuda", seed=1)
    cpu.reset(seed=1)
    gpu.reset(seed=1)
    space = cpu.single_action_space
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        for name, tensor in cpu.state_dict()["tensors"].items():
            setattr(gpu, name, tensor.to("cuda"))
        for name, value in cpu.state_dict()["attributes"].items():
            setattr(gpu, name, value)
        if isinstance(space, gym.spaces.Discrete):
            actions = torch.randint(int(space.n), (64,), generator=gen)
        else:
            actions = torch.rand((64, *space.shape), generator=gen) * 2 - 1
        _, r_cpu, term_cpu, trunc_cpu, _ = cpu.step(actions)
        _, r_gpu, term_gpu, trunc_gpu, _ = gpu.step(actions.to("cuda"))
        torch.testing.assert_close(r_gpu.cpu(), r_cpu, rtol=1e-5, atol=1e-6)
        assert torch.equal(term_gpu.cpu(), term_cpu) and torch.equal(trunc_gpu.cpu(), trunc_cpu)


def test_gpu_learns_repeat_previous_easy():
    """The default GPU path (graphs, per_step update) learns the README's task as the CPU does."""
    def train(seed):
        agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", device="cuda", seed=seed, verbose=0)
        assert agent.uses_cuda_graphs and agent.unroll == "per_step"
        agent.learn(400_000)
        assert agent._minibatch_call.replays > 0 and agent._rollout_call.failed is None
        return agent

    learned_by_some_seed(train, lambda agent: agent.evaluate(n_episodes=200)["mean_return"], 0.9)


@pytest.mark.parametrize("env_id", TASKS)
def test_every_task_steps_without_a_host_sync(env_id):
    env = make_vec_env(env_id, num_envs=64, device="cuda", seed=0)
    env.reset(seed=0)
    space = env.single_action_space
    actions = (torch.zeros(64, dtype=torch.int64, device="cuda") if isinstance(space, gym.spaces.Discrete)
               else torch.zeros((64, *space.shape), device="cuda"))
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(30):
            env.step(actions)
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_rollout_and_minibatch_step_read_nothing_to_the_host():
    """The eager twins of the recorded calls: a whole rollout and a gradient step without one sync."""
    agent = _agent(False)
    agent.learn(32 * 16)  # buffers, optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        agent._rollout(agent._buffer)
        agent._minibatch_envs.copy_(torch.arange(8, device="cuda"))
        agent._minibatch_step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
