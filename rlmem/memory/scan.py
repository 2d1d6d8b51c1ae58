"""A resettable parallel scan of the diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t``.

Lu et al. 2023, "Structured State Space Models for In-Context Reinforcement Learning": an
episode start is a reset of the recurrence, which keeps it associative; here the reset is
folded into the coefficients (``a_t = 0`` where an episode starts, so ``h_t = b_t`` there,
exactly "the state zeroed before the step"). Smith et al. 2023 (S5) and Orvieto et al. 2023
(LRU) train their diagonal recurrences with the same scan.

The scan is the work-efficient odd/even (Blelloch-style) recursion: pair up neighbours and
combine them (``(a_i, b_i), (a_j, b_j) -> (a_j a_i, a_j b_i + b_j)``), scan the half-length
sequence of pairs, then fill in the remaining positions from their left neighbours. That is
``2 floor(log2 T)`` dependent rounds of whole-tensor ops and ``O(T)`` work (a doubling scan
would do ``O(T log T)``), with no Python loop over time and no host reads (shapes only), so a
CUDA graph can record it. The backward is the same scan run backwards in time (the adjoint of
a linear recurrence is a linear recurrence), inside one autograd node: the gradient does not
have to walk a graph of strided slices.

:func:`sequential_scan` is the plain loop the parallel scan is tested against.
"""

from __future__ import annotations

import torch


def _scan_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, h0: torch.Tensor | None = None) -> int:
    """Write ``h`` of ``h_t = a_t h_{t-1} + b_t`` (``h_{-1} = h0`` or 0) into ``out``; no autograd.

    ``a``, ``b`` and ``out`` are ``[T, ...]`` of one shape (any strides; ``out`` may be a strided
    view). Returns the number of dependent combine rounds it ran (for the depth test).
    """
    length = a.shape[0]
    if h0 is None:
        out[0].copy_(b[0])
    else:
        torch.addcmul(b[0], a[0], h0, out=out[0])
    if length == 1:
        return 0
    half = length // 2
    a_even, a_odd = a[0 : 2 * half : 2], a[1 : 2 * half : 2]
    b_even, b_odd = b[0 : 2 * half : 2], b[1 : 2 * half : 2]
    # Up: pair (2j, 2j+1) -> one element; its h is h_{2j+1}.
    a_pair = a_odd * a_even
    b_pair = torch.addcmul(b_odd, a_odd, b_even)
    if h0 is not None:
        b_pair[0].addcmul_(a_pair[0], h0)
    rounds = 1 + _scan_into(a_pair, b_pair, out[1 : 2 * half : 2])
    # Down: the even positions 2, 4, ... from the odd ones just left of them.
    rest = (length - 1) // 2
    if rest:
        torch.addcmul(b[2::2], a[2::2], out[1 : 2 * rest : 2], out=out[2::2])
        rounds += 1
    return rounds


def _reverse_scan_into(e: torch.Tensor, g: torch.Tensor, out: torch.Tensor) -> int:
    """Write ``lam`` of ``lam_t = e_t lam_{t+1} + g_t`` (right to left, ``lam_{T-1} = g_{T-1}``) into ``out``.

    The mirror image of :func:`_scan_into`, pairing neighbours from the right end, so the
    backward needs no flipped copies. ``e`` is one step shorter than ``g`` (the last element
    has no successor): in the backward it is a view of ``conj(a[1:])``.
    """
    length = g.shape[0]
    out[length - 1].copy_(g[length - 1])
    if length == 1:
        return 0
    half, odd = length // 2, length % 2
    # Pair (v, u) = (odd + 2k, odd + 2k + 1): in reverse time u comes first, v stands for the pair.
    e_v, e_u = e[odd : odd + 2 * half : 2], e[odd + 1 : odd + 2 * half : 2]
    g_v, g_u = g[odd : odd + 2 * half : 2], g[odd + 1 : odd + 2 * half : 2]
    e_pair = e_v[: half - 1] * e_u
    g_pair = torch.addcmul(g_v, e_v, g_u)
    rounds = 1 + _reverse_scan_into(e_pair, g_pair, out[odd : odd + 2 * half : 2])
    # Down: the u positions (but the last element) from the v just right of them; element 0 if unpaired.
    if half > 1:
        right = out[odd + 2 : odd + 2 * half : 2]
        torch.addcmul(g_u[: half - 1], e_u, right, out=out[odd + 1 : odd + 2 * half - 1 : 2])
    if odd:
        torch.addcmul(g[0], e[0], out[1], out=out[0])
    return rounds + int(half > 1 or odd > 0)


class _LinearScan(torch.autograd.Function):
    """The parallel scan as one autograd node; the backward is the reverse-time scan of the adjoint.

    Once differentiable: nothing in rlmem takes a gradient of a gradient.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:  # type: ignore
        out = torch.empty_like(b, memory_format=torch.contiguous_format)
        _scan_into(a, b, out, h0)
        ctx.save_for_backward(a, out, h0)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        # With lam_t = dL/dh_t in full: lam_t = grad_t + conj(a_{t+1}) lam_{t+1}; then
        # dL/db_t = lam_t, dL/da_t = lam_t conj(h_{t-1}), dL/dh0 = lam_0 conj(a_0) (torch's
        # convention for complex gradients: the conjugate Wirtinger derivative).
        a, h, h0 = ctx.saved_tensors
        lam = torch.empty_like(h)
        _reverse_scan_into(a[1:].conj(), grad, lam)
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(lam)
            torch.mul(lam[1:], h[:-1].conj(), out=grad_a[1:])
            if h0 is None:
                grad_a[0].zero_()
            else:
                torch.mul(lam[0], h0.conj(), out=grad_a[0])
        if h0 is not None and ctx.needs_input_grad[2]:
            grad_h0 = lam[0] * a[0].conj()
        return grad_a, lam if ctx.needs_input_grad[1] else None, grad_h0


def _prepare(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, starts: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``a``, ``b``, ``h0`` in one dtype and ``a`` at the shape of ``b``, zeroed where ``starts`` ``[T, N]``."""
    if b.dim() < 1 or b.shape[0] == 0:
        raise ValueError(f"the scan needs at least one step on dim 0, got b of shape {tuple(b.shape)}")
    if h0 is not None and h0.shape != b.shape[1:]:
        raise ValueError(f"h0 must have shape {tuple(b.shape[1:])} (b without its time dim), got {tuple(h0.shape)}")
    dtype = torch.promote_types(a.dtype, b.dtype) if h0 is None else torch.promote_types(
        torch.promote_types(a.dtype, b.dtype), h0.dtype)
    if starts is not None:
        keep = (~starts).to(a.real.dtype if a.is_complex() else a.dtype)
        a = a * keep.view(*keep.shape, *([1] * (b.dim() - keep.dim())))
    return a.to(dtype).expand_as(b), b.to(dtype), None if h0 is None else h0.to(dtype)


def linear_scan(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, starts: torch.Tensor | None = None,
) -> torch.Tensor:
    """``h_t = a_t * h_{t-1} + b_t`` over dim 0 by the parallel scan, ``h_{-1} = h0`` (None: zeros).

    ``b`` is ``[T, ...]`` (real or complex), ``a`` broadcasts to it; where ``starts`` (``[T, N]``,
    N on dim 1) is True the recurrence restarts: ``h_t = b_t``. Differentiable in ``a``, ``b``
    and ``h0``.
    """
    return _LinearScan.apply(*_prepare(a, b, h0, starts))


def sequential_scan(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, starts: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same recurrence as :func:`linear_scan`, one step at a time: the reference it is tested against."""
    a, b, h0 = _prepare(a, b, h0, starts)
    h = torch.zeros_like(b[0]) if h0 is None else h0
    outputs = []
    for a_t, b_t in zip(a.unbind(0), b.unbind(0), strict=True):
        h = a_t * h + b_t
        outputs.append(h)
    return torch.stack(outputs)
