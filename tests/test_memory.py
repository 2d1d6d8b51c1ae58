"""Memory cores: resets zero the state exactly where an episode starts; the chunked unroll
(one fused RNN call between starts) equals the per-step reference."""

import pytest
import torch

from rlmem.memory import make_core


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
