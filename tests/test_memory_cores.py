"""Every memory core keeps the one contract: its sequence path equals stepping, an episode start
forgets everything before it, states are real tensors with the env batch on dim 1. Parametrized
over ``CORES``: registering a core gets it tested. Plus the parallel scan, the options, and the
LSTM / GRU still bitwise what they were before the package split."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rlmem.memory import (
    CORES,
    UNROLL_MODES,
    check_memory_options,
    core_options,
    make_core,
    recurrent,
    reset_state,
)
from rlmem.memory.scan import (
    _reverse_scan_into,
    _scan_into,
    linear_scan,
    sequential_scan,
)

T, N, D, H = 12, 5, 3, 8

#: Option sets each core is tested with (a core not named here: its defaults). Windows shorter
#: than T, so they slide and drop steps inside the test sequence.
VARIANTS = {
    "framestack": [{}, {"context_length": 1}],
    "transformer": [{"context_length": 4}, {"context_length": 5, "gated": True, "num_heads": 4}, {"context_length": 1}],
    "lru": [{}, {"state_size": 3, "r_min": 0.5, "r_max": 0.9}],
    "ffm": [{}, {"memory_size": 3, "context_size": 2, "max_period": 16}],
}
CASES = [pytest.param(name, opts, id=f"{name}-{i}")
         for name in CORES for i, opts in enumerate(VARIANTS.get(name, [{}]))]


def _pair(name, opts, num_layers, unroll="chunked", dtype=torch.float64):
    core = make_core(name, D, H, num_layers, unroll, opts).to(dtype)
    return core


def _warm_state(core, n=N, steps=4, seed=0):
    """A state the core reaches by stepping random inputs (with a start in the middle): a real one."""
    gen = torch.Generator().manual_seed(seed)
    dtype = next(core.parameters()).dtype
    state = core.initial_state(n)
    with torch.no_grad():
        for t in range(steps):
            x = torch.randn(n, core.input_size, generator=gen, dtype=dtype)
            _, state = core.step(x, state, torch.rand(n, generator=gen) < (0.3 if t == 2 else 0.0))
    return state


def _stepped(core, x, state, starts):
    outputs = []
    for x_t, s_t in zip(x.unbind(0), starts.unbind(0), strict=True):
        out, state = core.step(x_t, state, s_t)
        outputs.append(out)
    return torch.stack(outputs), state


def _starts(seed=1, steps=T, n=N):
    starts = torch.rand(steps, n, generator=torch.Generator().manual_seed(seed)) < 0.15
    starts[5, :2] = True
    starts[0, 3] = True
    return starts


@pytest.mark.parametrize("unroll", UNROLL_MODES)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("name, opts", CASES)
def test_forward_equals_stepping(name, opts, num_layers, unroll):
    torch.manual_seed(0)
    core = _pair(name, opts, num_layers, unroll)
    state = _warm_state(core)
    x = torch.randn(T, N, D, dtype=torch.float64, requires_grad=True)
    starts = _starts()
    out, final = core(x, state, starts)
    ref, ref_final = _stepped(core, x, state, starts)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
    assert len(final) == len(ref_final) == core.state_size
    for s, r in zip(final, ref_final, strict=True):
        assert s.shape == r.shape
        torch.testing.assert_close(s, r, rtol=1e-9, atol=1e-10)
    weights = torch.randn_like(out)
    params = [x, *core.parameters()]
    grads = torch.autograd.grad((out * weights).sum(), params, allow_unused=True)
    ref_grads = torch.autograd.grad((ref * weights).sum(), params, allow_unused=True)
    for (pname, _), g, r in zip([("x", x), *core.named_parameters()], grads, ref_grads, strict=True):
        assert (g is None) == (r is None), pname
        if g is not None:
            torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10, msg=lambda m, p=pname: f"{p}: {m}")


@pytest.mark.parametrize("name, opts", CASES)
def test_an_episode_start_forgets_everything_before_it(name, opts):
    # In float64: "forgets" means equal up to rounding, and float32's rounding of a scan that runs
    # from another step (FFM's time-dependent phases) reaches 1e-6 on some CPUs.
    torch.manual_seed(2)
    core = _pair(name, opts, 2)
    start_at = 6
    first = torch.randn(T, N, D, dtype=torch.float64)
    second = torch.cat((torch.randn(start_at, N, D, dtype=torch.float64), first[start_at:]))  # another history, same future
    starts = torch.zeros(T, N, dtype=torch.bool)
    starts[start_at] = True
    state_a, state_b = _warm_state(core, seed=3), _warm_state(core, seed=4, steps=7)
    with torch.no_grad():
        out_a, final_a = core(first, state_a, starts)
        out_b, final_b = core(second, state_b, starts)
        step_a, _ = _stepped(core, first, state_a, starts)
        step_b, _ = _stepped(core, second, state_b, starts)
        fresh, _ = core(first[start_at:], core.initial_state(N), torch.zeros(T - start_at, N, dtype=torch.bool))
    assert not torch.allclose(out_a[:start_at], out_b[:start_at])
    for out in (out_b, step_a, step_b, fresh):
        torch.testing.assert_close(out[-(T - start_at):], out_a[start_at:], rtol=0, atol=1e-10)
    for s, r in zip(final_a, final_b, strict=True):
        torch.testing.assert_close(s, r, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name, opts", CASES)
def test_states_are_real_tensors_with_the_env_batch_on_dim_1(name, opts):
    core = make_core(name, D, H, 2, options=opts)
    state = core.initial_state(7)
    assert isinstance(state, tuple) and len(state) == core.state_size >= 1
    for s in state:
        assert s.dtype == torch.float32 and s.dim() >= 2 and s.shape[1] == 7 and not s.any()
    assert [tuple(s.shape) for s in state] == core.state_shapes(7)
    assert core.state_nbytes(7) == sum(s.numel() * s.element_size() for s in state)
    assert core.output_size == H
    out, stepped = core.step(torch.randn(7, D), state, torch.zeros(7, dtype=torch.bool))
    assert out.shape == (7, H) and [s.shape for s in stepped] == [s.shape for s in state]
    assert all(s.dtype == torch.float32 for s in stepped)


@pytest.mark.parametrize("name, opts", CASES)
def test_reset_state_zeroes_only_the_envs_that_start(name, opts):
    core = make_core(name, D, H, 2, options=opts)
    state = tuple(s + torch.rand_like(s) + 0.5 for s in _warm_state(core))
    starts = torch.tensor([True, False, False, True, False])
    for before, after in zip(state, reset_state(state, starts), strict=True):
        assert not after[:, starts].any()
        assert torch.equal(after[:, ~starts], before[:, ~starts])


@pytest.mark.parametrize("name", list(CORES))
def test_sequence_reads_host_only_for_the_chunked_cudnn_rnns(name):
    for unroll in UNROLL_MODES:
        core = make_core(name, D, H, unroll=unroll)
        assert core.sequence_reads_host == (name in ("lstm", "gru", "elman") and unroll == "chunked")


@pytest.mark.parametrize("name, opts", CASES)
def test_paths_without_host_reads_run_on_the_meta_device(name, opts):
    """Meta tensors hold no data: a host read (item, nonzero, tolist) fails there. What runs
    on meta, forward and backward, is free of data-dependent syncs, as a CUDA graph needs."""
    core = make_core(name, D, H, 2, options=opts).to("meta")
    steps = 4  # ops on meta tensors can be slow to dispatch
    x = torch.randn(steps, N, D, device="meta", requires_grad=True)
    starts = torch.zeros(steps, N, dtype=torch.bool, device="meta")
    for unroll in UNROLL_MODES:
        core.unroll = unroll
        if core.sequence_reads_host:
            with pytest.raises(Exception):
                core(x, core.initial_state(N), starts)
            continue
        out, _ = core(x, core.initial_state(N), starts)
        out.sum().backward()
        assert out.shape == (steps, N, H)


@pytest.mark.parametrize("context_length, block_size, steps", [(3, 5, 23), (7, 4, 40), (2, 16, 1)])
def test_transformer_blocks_of_queries_equal_stepping(context_length, block_size, steps):
    torch.manual_seed(5)
    core = make_core("transformer", D, H, 2, options={"context_length": context_length}).double()
    core.block_size = block_size
    state = _warm_state(core)
    x = torch.randn(steps, N, D, dtype=torch.float64, requires_grad=True)
    starts = _starts(steps=steps) if steps > 5 else torch.zeros(steps, N, dtype=torch.bool)
    out, final = core(x, state, starts)
    ref, ref_final = _stepped(core, x, state, starts)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
    for s, r in zip(final, ref_final, strict=True):
        torch.testing.assert_close(s, r, rtol=1e-9, atol=1e-10)
    grad, = torch.autograd.grad(out.sum(), x)
    ref_grad, = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name, opts", CASES)
def test_an_agents_blanket_linear_init_fits_every_core(name, opts):
    """The agents re-initialise every nn.Linear (orthogonal weight, zero bias): each core's
    Linears have a bias, and what a core initialises otherwise (GTrXL's gate bias) is not one."""
    core = make_core(name, D, H, 2, options=opts)
    for module in core.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.orthogonal_(module.weight, math.sqrt(2))
            torch.nn.init.zeros_(module.bias)
    out, _ = core(torch.randn(T, N, D), core.initial_state(N), _starts())
    assert torch.isfinite(out).all()
    for gate in (m for m in core.modules() if type(m).__name__ == "GRUGate"):
        assert torch.equal(gate.gate_bias, torch.full((H,), 2.0))


def test_gtrxl_gates_start_near_the_identity():
    core = make_core("transformer", D, H, options={"gated": True})
    gate = core.blocks[0].attn_gate
    assert torch.equal(gate.gate_bias, torch.full((H,), 2.0))
    x, y = torch.randn(64, H), torch.randn(64, H)
    # z = sigmoid(. - 2): the gate moves x only a little toward the candidate.
    assert (gate(x, y) - x).abs().mean() < 0.5 * (y - x).abs().mean()


def test_ffm_traces_start_forgotten_between_min_and_max_period():
    core = make_core("ffm", D, H, options={"memory_size": 5, "context_size": 3, "min_period": 2, "max_period": 50})
    gamma = core.layers[0].decay().detach()
    assert gamma.shape == (5, 3)
    kept = gamma.abs()[:, 0]  # per step; after its period a trace keeps forgotten_at = 1%
    torch.testing.assert_close(kept[[0, -1]] ** torch.tensor([2.0, 50.0]), torch.full((2,), 0.01))
    assert core.initial_state(4)[0].shape == (1, 4, 5, 3, 2)


def test_lru_starts_on_its_ring_and_keeps_a_real_state():
    torch.manual_seed(0)
    core = make_core("lru", D, H, options={"state_size": 50, "r_min": 0.4, "r_max": 0.8, "max_phase": 1.0})
    lam = core.layers[0].decay().detach()
    assert lam.shape == (50,) and ((lam.abs() >= 0.4 - 1e-6) & (lam.abs() <= 0.8 + 1e-6)).all()
    assert ((lam.angle() >= 0) & (lam.angle() <= 1.0 + 1e-6)).all()
    assert core.initial_state(3)[0].shape == (1, 3, 50, 2)


# ---------------------------------------------------------------------- the parallel scan
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 16, 29])
@pytest.mark.parametrize("with_h0", [False, True])
def test_parallel_scan_equals_the_sequential_loop(dtype, steps, with_h0):
    gen = torch.Generator().manual_seed(steps)
    real = torch.float64
    a = torch.rand(steps, 4, 3, generator=gen, dtype=real)
    if dtype.is_complex:
        a = torch.polar(a, torch.rand(steps, 4, 3, generator=gen, dtype=real) * 6)
    a.requires_grad_()
    b = torch.randn(steps, 4, 3, generator=gen, dtype=dtype, requires_grad=True)
    h0 = torch.randn(4, 3, generator=gen, dtype=dtype, requires_grad=True) if with_h0 else None
    starts = torch.rand(steps, 4, generator=gen) < 0.25
    h = linear_scan(a, b, h0, starts)
    ref = sequential_scan(a, b, h0, starts)
    torch.testing.assert_close(h, ref, rtol=1e-12, atol=1e-12)
    weights = torch.randn(h.shape, generator=gen, dtype=dtype)
    inputs = [a, b] + ([h0] if with_h0 else [])
    grads = torch.autograd.grad((h * weights).real.sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weights).real.sum(), inputs)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_parallel_scan_broadcasts_a_shared_coefficient():
    a = torch.tensor([0.5, 0.9], dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, 3, 2, dtype=torch.float64)
    starts = torch.zeros(9, 3, dtype=torch.bool)
    starts[4, 1] = True
    grad, = torch.autograd.grad(linear_scan(a, b, starts=starts).sum(), a)
    ref, = torch.autograd.grad(sequential_scan(a, b, starts=starts).sum(), a)
    torch.testing.assert_close(grad, ref)


def test_parallel_scan_depth_is_logarithmic():
    for steps in range(1, 301):
        a, b = torch.rand(steps, 2), torch.rand(steps, 2)
        forward = _scan_into(a, b, torch.empty(steps, 2))
        backward = _reverse_scan_into(a[1:], b, torch.empty(steps, 2))
        bound = 2 * math.ceil(math.log2(steps)) if steps > 1 else 0
        assert forward <= bound and backward <= bound, steps
        if steps & (steps - 1) == 0 and steps > 1:  # powers of two: exactly 2 log2 T - 1
            assert forward == backward == 2 * int(math.log2(steps)) - 1


# ---------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "memory, options, rule",
    [
        ("transformer", {"context_length": 0}, "context_length must be >= 1, got 0"),
        ("transformer", {"num_heads": 0}, "num_heads must be >= 1, got 0"),
        ("transformer", {"ff_size": -1}, r"ff_size must be >= 0 \(0: 4 x hidden_size\), got -1"),
        ("transformer", {"context_length": "4"}, "context_length must be an integer, got str '4'"),
        ("transformer", {"gated": 1}, "gated must be true or false, got int 1"),
        ("framestack", {"context_length": -2}, "context_length must be >= 1, got -2"),
        ("framestack", {"context_length": True}, "context_length must be an integer, got bool True"),
        ("lru", {"r_min": 1.0}, r"r_min must be in \[0, 1\), got 1.0"),
        ("lru", {"r_min": 0.6, "r_max": 0.5}, r"r_max must be in \(r_min = 0.6, 1\), got 0.5"),
        ("lru", {"r_max": True}, "r_max must be a number, got bool True"),
        ("lru", {"state_size": -1}, r"state_size must be >= 0 \(0: hidden_size // 2\), got -1"),
        ("lru", {"max_phase": 0.0}, "max_phase must be > 0, got 0.0"),
        ("ffm", {"memory_size": 0}, "memory_size must be >= 1, got 0"),
        ("ffm", {"context_size": 0}, "context_size must be >= 1, got 0"),
        ("ffm", {"min_period": 0}, "min_period must be >= 1, got 0"),
        ("ffm", {"min_period": 8, "max_period": 4}, r"max_period must be >= min_period \(8\), got 4"),
        ("ffm", {"forgotten_at": 1.5}, r"forgotten_at must be in \(0, 1\), got 1.5"),
    ],
)
def test_a_bad_option_value_names_the_core_the_option_and_the_rule(memory, options, rule):
    message = f"^memory core '{memory}': option {rule}$"
    with pytest.raises(ValueError, match=message):
        make_core(memory, D, H, options=options)
    with pytest.raises(ValueError, match=message):
        check_memory_options(memory, options)


def test_width_rules_are_checked_where_the_width_is_known():
    message = "^memory core 'transformer': option num_heads must be a divisor of hidden_size 8, got 3$"
    with pytest.raises(ValueError, match=message):
        make_core("transformer", D, H, options={"num_heads": 3})
    with pytest.raises(ValueError, match=message):
        check_memory_options("transformer", {"num_heads": 3}, hidden_size=8)
    assert check_memory_options("transformer", {"num_heads": 3})["num_heads"] == 3


@pytest.mark.parametrize(
    "memory, options, message",
    [
        ("lstm", {"num_heads": 2}, r"memory core 'lstm' has no option 'num_heads' \(its options: none\)"),
        ("transformer", {"heads": 2}, r"memory core 'transformer' has no option 'heads' \(its options: "
                                      r"context_length, num_heads, gated, ff_size\); did you mean 'num_heads'\?"),
        ("lru", {"rmax": 0.9}, r"memory core 'lru' has no option 'rmax' \(its options: "
                               r"state_size, r_min, r_max, max_phase\); did you mean 'r_max'\?"),
        ("mingru", {"r_max": 0.9}, r"memory core 'mingru' has no option 'r_max' \(its options: none\)"),
        ("transfomer", {}, r"memory must be one of \['elman', .*'transformer'\], got 'transfomer'; "
                           r"did you mean 'transformer'\?"),
    ],
)
def test_an_option_or_core_that_does_not_exist_lists_what_does(memory, options, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        make_core(memory, D, H, options=options)
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_memory_options(memory, options)


def test_check_memory_options_fills_in_the_defaults():
    assert check_memory_options("transformer", {"gated": True, "num_heads": np.int64(4)}, hidden_size=8) == {
        "context_length": 16, "num_heads": 4, "gated": True, "ff_size": 0}
    assert type(check_memory_options("transformer", {"num_heads": np.int64(4)})["num_heads"]) is int
    assert check_memory_options("lru", {"r_max": 0.9}) == {"state_size": 0, "r_min": 0.0, "r_max": 0.9,
                                                           "max_phase": 2 * math.pi}
    assert check_memory_options("lstm", None) == {} == core_options("gru")
    assert core_options("framestack") == {"context_length": 4}
    assert set(core_options("lru")) == {"state_size", "r_min", "r_max", "max_phase"}
    assert make_core("framestack", D, H, options={"context_length": 2}).options.context_length == 2


# ---------------------------------------------------------------------- LSTM / GRU unchanged
def _old_module():
    path = Path(__file__).with_name("memory_before_split.py")
    spec = importlib.util.spec_from_file_location("memory_before_split", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("memory", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_and_gru_are_bitwise_the_old_cores(memory, num_layers, monkeypatch):
    # The old cores' chunked unroll is the cut layout; the new one may also step or pack where
    # its cost model says so (tests/test_memory.py checks those against stepping).
    real = recurrent.layout_costs
    monkeypatch.setattr(recurrent, "layout_costs", lambda *a: {k: int(k != "cut") for k in real(*a)})
    old = _old_module()
    torch.manual_seed(7)
    before = old.make_core(memory, 5, 6, num_layers)
    torch.manual_seed(7)
    after = make_core(memory, 5, 6, num_layers)
    assert list(after.state_dict()) == list(before.state_dict())
    assert list(after.state_dict())[:4] == [f"rnn.{w}_l0" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    for key, value in before.state_dict().items():
        assert torch.equal(after.state_dict()[key], value), key
    x, starts = torch.randn(15, 4, 5), torch.rand(15, 4) < 0.2
    state = tuple(torch.randn(num_layers, 4, 6) for _ in range(before.state_size))
    for unroll in UNROLL_MODES:
        before.unroll = after.unroll = unroll
        (out_b, fin_b), (out_a, fin_a) = before(x, state, starts), after(x, state, starts)
        assert torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(fin_a, fin_b, strict=True))
    y_b, s_b = before.step(x[0], state, starts[0])
    y_a, s_a = after.step(x[0], state, starts[0])
    assert torch.equal(y_a, y_b) and all(torch.equal(a, b) for a, b in zip(s_a, s_b, strict=True))


def test_single_layer_lstm_step_returns_its_state_as_a_view():
    core = make_core("lstm", 3, 4)
    out, (h, c) = core.step(torch.randn(2, 3), core.initial_state(2), torch.zeros(2, dtype=torch.bool))
    assert h._base is not None and h.data_ptr() == out.data_ptr()
