"""Every memory core keeps the one contract: its sequence path equals stepping, an episode start
forgets everything before it, states are real tensors with the env batch on dim 1. Parametrized
over ``CORES``: registering a core gets it tested. Plus the options, and the LSTM / GRU still
bitwise what they were before the package split."""

import importlib.util
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
    reset_state,
)

T, N, D, H = 12, 5, 3, 8

#: Option sets each core is tested with (a core not named here: its defaults). Windows shorter
#: than T, so they slide and drop steps inside the test sequence.
VARIANTS = {
    "framestack": [{}, {"context_length": 1}],
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
    torch.manual_seed(2)
    core = make_core(name, D, H, 2, "chunked", opts)
    start_at = 6
    first = torch.randn(T, N, D)
    second = torch.cat((torch.randn(start_at, N, D), first[start_at:]))  # another history, same future
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
        torch.testing.assert_close(out[-(T - start_at):], out_a[start_at:], rtol=0, atol=1e-6)
    for s, r in zip(final_a, final_b, strict=True):
        torch.testing.assert_close(s, r, rtol=0, atol=1e-6)


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
    x = torch.randn(T, N, D, device="meta", requires_grad=True)
    starts = torch.zeros(T, N, dtype=torch.bool, device="meta")
    for unroll in UNROLL_MODES:
        core.unroll = unroll
        if core.sequence_reads_host:
            with pytest.raises(Exception):
                core(x, core.initial_state(N), starts)
            continue
        out, _ = core(x, core.initial_state(N), starts)
        out.sum().backward()
        assert out.shape == (T, N, H)


# ---------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "memory, options, rule",
    [
        ("framestack", {"context_length": -2}, "context_length must be >= 1, got -2"),
        ("framestack", {"context_length": "4"}, "context_length must be an integer, got str '4'"),
        ("framestack", {"context_length": True}, "context_length must be an integer, got bool True"),
    ],
)
def test_a_bad_option_value_names_the_core_the_option_and_the_rule(memory, options, rule):
    message = f"^memory core '{memory}': option {rule}$"
    with pytest.raises(ValueError, match=message):
        make_core(memory, D, H, options=options)
    with pytest.raises(ValueError, match=message):
        check_memory_options(memory, options)


@pytest.mark.parametrize(
    "memory, options, message",
    [
        ("lstm", {"num_heads": 2}, r"memory core 'lstm' has no option 'num_heads' \(its options: none\)"),
        ("framestack", {"context_len": 2}, r"memory core 'framestack' has no option 'context_len' \(its options: "
                                           r"context_length\); did you mean 'context_length'\?"),
        ("framestak", {}, r"memory must be one of \['elman', .*'mlp'\], got 'framestak'; "
                          r"did you mean 'framestack'\?"),
    ],
)
def test_an_option_or_core_that_does_not_exist_lists_what_does(memory, options, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        make_core(memory, D, H, options=options)
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_memory_options(memory, options)


def test_check_memory_options_fills_in_the_defaults():
    assert check_memory_options("framestack", {"context_length": np.int64(3)}, hidden_size=8) == {"context_length": 3}
    assert type(check_memory_options("framestack", {"context_length": np.int64(3)})["context_length"]) is int
    assert check_memory_options("lstm", None) == {} == core_options("gru")
    assert core_options("framestack") == {"context_length": 4}
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
def test_lstm_and_gru_are_bitwise_the_old_cores(memory, num_layers):
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
