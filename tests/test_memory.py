"""Memory cores: resets zero the state exactly where an episode starts; the chunked unroll
(one fused RNN call between starts) and the outputs-only path (episode segments packed into
rows) equal the per-step reference."""

import itertools

import pytest
import torch

from rlmem.memory import CORES, UNROLL_MODES, make_core, recurrent
from rlmem.memory.recurrent import segment_rows


@pytest.mark.parametrize("memory", ["lstm", "gru"])
def test_chunked_unroll_matches_per_step_reference(memory):
    torch.manual_seed(0)
    core = make_core(memory, 5, 8, num_layers=2, unroll="chunked")
    reference = make_core(memory, 5, 8, num_layers=2, unroll="per_step")
    reference.load_state_dict(core.state_dict())
    x = torch.randn(20, 6, 5, requires_grad=True)
    starts = torch.rand(20, 6) < 0.1
    starts[7] = True  # all envs start together at step 7, some also elsewhere
    state = tuple(torch.randn(2, 6, 8) for _ in range(core.state_size))
    out, final = core(x, state, starts)
    ref_out, ref_final = reference(x, state, starts)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for s, r in zip(final, ref_final, strict=True):
        torch.testing.assert_close(s, r, rtol=1e-5, atol=1e-6)
    grad, = torch.autograd.grad(out.sum(), x)
    ref_grad, = torch.autograd.grad(ref_out.sum(), x)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("memory", ["lstm", "gru"])
def test_episode_start_zeroes_the_state_of_that_env_only(memory):
    torch.manual_seed(1)
    core = make_core(memory, 3, 4)
    x = torch.randn(5, 2, 3)
    warm = tuple(torch.randn(1, 2, 4) for _ in range(core.state_size))
    starts = torch.zeros(5, 2, dtype=torch.bool)
    starts[2, 0] = True
    out, _ = core(x, warm, starts)
    # Env 0 from step 2 on behaves exactly as a fresh episode started at step 2.
    fresh, _ = core(x[2:, :1], core.initial_state(1), torch.zeros(3, 1, dtype=torch.bool))
    torch.testing.assert_close(out[2:, :1], fresh)
    # Env 1 never restarts: it matches an unroll without any start.
    cont, _ = core(x[:, 1:], tuple(s[:, 1:] for s in warm), torch.zeros(5, 1, dtype=torch.bool))
    torch.testing.assert_close(out[:, 1:], cont)
    # step() agrees with the unroll.
    state = warm
    for t in range(5):
        y, state = core.step(x[t], state, starts[t])
        torch.testing.assert_close(y, out[t])


def test_unknown_memory_core_is_named():
    with pytest.raises(ValueError, match="memory must be one of \\[.*'gru'.*'lstm'.*\\], got 'lstn'; did you mean 'lstm'\\?"):
        make_core("lstn", 3, 4)


def _starts_unsynced(steps, n, seed):
    """Starts at different steps in different envs (replayed sequences): the cut layout would cut often."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.rand(steps, n, generator=gen) < 0.08
    starts[0, 1] = True
    return starts


@pytest.mark.parametrize("memory", sorted(CORES))
@pytest.mark.parametrize("unroll", UNROLL_MODES)
def test_outputs_equal_forwards_outputs_and_gradients(memory, unroll):
    torch.manual_seed(0)
    core = make_core(memory, 5, 8, num_layers=2, unroll=unroll).double()
    x = torch.randn(20, 24, 5, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn_like(s) for s in core.initial_state(24))
    starts = _starts_unsynced(20, 24, seed=3)
    out = core.outputs(x, state, starts)
    ref, _ = core(x, state, starts)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
    weights = torch.randn_like(out)
    params = [x, *core.parameters()]
    grads = torch.autograd.grad((out * weights).sum(), params, allow_unused=True)
    ref_grads = torch.autograd.grad((ref * weights).sum(), params, allow_unused=True)
    for g, r in zip(grads, ref_grads, strict=True):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)


def test_segment_rows_gives_every_episode_segment_a_row_from_its_step_zero():
    starts = torch.tensor([[True, False, False],
                           [False, True, False],
                           [False, False, False],
                           [True, False, True]])
    rows, offsets, first_rows = segment_rows(starts)
    # env 0: steps 0-2 (from its state, reset at step 0), step 3 a new episode; env 1: step 0, then
    # steps 1-3; env 2: steps 0-2, then step 3. Five rows, in env order.
    assert first_rows.tolist() == [0, 2, 4]
    assert rows.T.tolist() == [[0, 0, 0, 1], [2, 3, 3, 3], [4, 4, 4, 5]]
    assert offsets.T.tolist() == [[0, 1, 2, 0], [0, 0, 1, 2], [0, 1, 2, 0]]


def _forced(monkeypatch, layout):
    """Make ``layout`` the cheapest by the model, whatever the starts."""
    real = recurrent.layout_costs
    monkeypatch.setattr(recurrent, "layout_costs",
                        lambda *a: {k: (0 if k == layout else 1) for k in real(*a)})


@pytest.mark.parametrize("memory", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("layout", ["cut", "stepped", "packed"])
def test_every_rnn_layout_equals_the_per_step_reference(memory, layout, monkeypatch):
    torch.manual_seed(1)
    core = make_core(memory, 5, 8, num_layers=2, unroll="chunked")
    reference = make_core(memory, 5, 8, num_layers=2, unroll="per_step")
    reference.load_state_dict(core.state_dict())
    _forced(monkeypatch, layout)
    x = torch.randn(15, 32, 5, requires_grad=True)
    state = tuple(torch.randn_like(s) for s in core.initial_state(32))
    starts = _starts_unsynced(15, 32, seed=4)
    starts[6] = True  # all envs start together at step 6, some also elsewhere
    ref, ref_final = reference(x, state, starts)
    out = core.outputs(x, state, starts)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    grad, = torch.autograd.grad(out.square().sum(), x)
    ref_grad, = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    if layout != "packed":  # forward keeps the final state: it never packs
        out, final = core(x, state, starts)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        for s, r in zip(final, ref_final, strict=True):
            torch.testing.assert_close(s, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("memory", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("case", ["synced", "scattered", "replay"])
def test_rnn_unroll_takes_the_layout_the_cost_model_says(memory, case, monkeypatch):
    """Starts shared by every env (fixed-length episodes) keep the cut layout; a short sequence with
    starts at most steps (a burn-in) is stepped; a replay's batch (starts at different steps in
    different sequences) is packed for outputs, one call with a row per episode segment."""
    torch.manual_seed(1)
    core = make_core(memory, 5, 8, num_layers=1, unroll="chunked")
    calls = []
    run, step = type(core)._run, type(core)._step
    monkeypatch.setattr(type(core), "_run", lambda self, x, s: (calls.append(("run", x.shape)), run(self, x, s))[1])
    monkeypatch.setattr(type(core), "_step", lambda self, x, s: (calls.append(("step", x.shape)), step(self, x, s))[1])
    steps = 5 if case == "scattered" else 15
    starts = torch.zeros(steps, 32, dtype=torch.bool)
    if case == "synced":
        starts[3] = True
    elif case == "scattered":
        starts[1, 0] = starts[2, 1] = starts[3, 2] = True
    else:
        starts = _starts_unsynced(steps, 32, seed=4)
    x = torch.randn(steps, 32, 5)
    state = core.initial_state(32)
    with torch.no_grad():
        if case == "replay":
            core.outputs(x, state, starts)
        else:  # forward: the final state is wanted, so no packing
            core(x, state, starts)
    if case == "synced":
        assert [c[0] for c in calls] == ["run", "run"]
    elif case == "scattered":
        assert [c[0] for c in calls] == ["step"] * 5
    else:  # one row per segment: the 32 sequences plus one for every start after step 0
        assert calls == [("run", torch.Size([int(_longest_segment(starts)), 32 + int(starts[1:].sum()), 5]))]


def _longest_segment(starts):
    longest = 0
    for n in range(starts.shape[1]):
        begins = [0, *[t for t in range(1, starts.shape[0]) if starts[t, n]], starts.shape[0]]
        longest = max(longest, *[b - a for a, b in itertools.pairwise(begins)])
    return longest
