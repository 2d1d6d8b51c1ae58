"""CUDA graphs for the training loop: record a call's kernels once, replay them every iteration.

A rollout of 64 steps launches thousands of small kernels, and on a GPU their launch cost (in
Python and in the driver) can exceed the work itself. :class:`GraphedCall` runs a function
eagerly first (the warm-up: lazy allocations, library handles, optimizer state), then records
it in a ``torch.cuda.CUDAGraph`` and from then on replays it with one launch.

A replay reads and writes the tensors the recording touched, at the same addresses. So:

* everything the call reads must stay where it was: :class:`GraphedCall` checks the addresses
  of its ``inputs()`` before each replay and records again if any moved (a checkpoint loaded,
  an optimizer state replaced);
* state the call *replaces* instead of updating in place (an env batch's
  ``self.elapsed_steps = self.elapsed_steps + 1``) is copied back, at the end of the recording,
  into the tensors that were there when it began (``holders``), so the next replay starts from
  this one's end;
* random draws from a ``torch.Generator`` of the caller's are registered with the graph, so
  each replay draws new numbers, as the eager call would;
* a call whose Python path depends on a host number (RecurrentDQN's acting steps: which step
  fills the replay's window) names it in ``key()``; a replay runs only under the key it was
  recorded with, and a new key records again.

The eager function is the reference: the same code runs uncaptured on the CPU (and on a GPU
with ``cuda_graphs`` off), and tests compare the replays with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from rlmem import distributed
from rlmem.memory import core_class


def uses_cuda_graphs(cuda_graphs: bool, device: torch.device, env: object) -> bool:
    """Whether an agent's training replays CUDA graphs: asked for (its ``cuda_graphs``), on a CUDA device,
    not data-parallel, and an env batch whose step is pure device work (``capturable``)."""
    return (cuda_graphs and device.type == "cuda" and not distributed.active()
            and getattr(env, "capturable", False))


def resolve_unroll(unroll: str, memory: str, graphed: bool) -> str:
    """The update's memory unroll, ``'auto'`` resolved: the core's own sequence path ('chunked'), unless
    that reads the host and the update is to be recorded in a CUDA graph ('per_step')."""
    if unroll != "auto":
        return unroll
    return "per_step" if graphed and core_class(memory).chunked_reads_host else "chunked"


def tensor_attributes(obj: object) -> dict[str, torch.Tensor]:
    """The tensor attributes of ``obj`` (its state, for an env batch), by name."""
    return {name: value for name, value in vars(obj).items() if isinstance(value, torch.Tensor)}


class GraphedCall:
    """``fn()`` run eagerly ``warmup`` times (``inf``: always eager), then recorded in a CUDA graph and replayed.

    ``inputs()`` lists the tensors the call reads (their addresses are checked before each
    replay); ``holders`` are objects whose tensor attributes the call reassigns (written back
    in place); ``generators`` are the non-default generators it draws from; ``key()`` (optional) the
    host numbers the call's Python path depends on. If recording fails, a warning says why and the
    call stays eager from then on.
    """

    def __init__(self, fn: Callable[[], Any], inputs: Callable[[], Sequence[torch.Tensor]],
                 holders: Sequence[object] = (), generators: Sequence[torch.Generator] = (),
                 warmup: float = 1, name: str = "call", key: Callable[[], Hashable] | None = None) -> None:
        self.fn, self.inputs, self.holders, self.generators = fn, inputs, list(holders), list(generators)
        self.key = key if key is not None else (lambda: None)
        self.warmup, self.name = warmup, name
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Any = None
        self.eager_calls = 0
        self.replays = 0
        self.captures = 0
        self.failed: str | None = None
        self._addresses: tuple[Hashable, ...] = ()  # the key, then the inputs' addresses

    @property
    def active(self) -> bool:
        """Whether the last call was (or the next one will be) a replay."""
        return self.graph is not None

    def _current_addresses(self) -> tuple[Hashable, ...]:
        return (self.key(), *(t.data_ptr() for t in self.inputs()))

    def __call__(self) -> Any:
        if self.failed is not None or self.eager_calls < self.warmup:
            self.eager_calls += 1
            return self.fn()
        if self.graph is None or self._current_addresses() != self._addresses:
            self._record()
            if self.graph is None:  # recording failed: eager from now on
                self.eager_calls += 1
                return self.fn()
        self.graph.replay()
        self.replays += 1
        return self.output

    def _record(self) -> None:
        self.graph = self.output = None
        key = self.key()  # before the call: the host numbers its Python path was taken with
        before = [tensor_attributes(holder) for holder in self.holders]
        try:
            graph = torch.cuda.CUDAGraph()
            for generator in self.generators:
                graph.register_generator_state(generator)
            # thread_local: only this thread's CUDA calls matter; a logging thread may go on meanwhile.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                output = self.fn()
                for holder, saved in zip(self.holders, before, strict=True):
                    for name, tensor in saved.items():
                        current = getattr(holder, name)
                        if current is not tensor:
                            tensor.copy_(current)
        except Exception as exc:  # noqa: BLE001 - any failure to record means: stay eager
            self.failed = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"CUDA graph of the {self.name} could not be recorded, so it runs eagerly: {self.failed}",
                          RuntimeWarning, stacklevel=3)
            return
        finally:
            # The recording ran no kernels; the holders point at their tensors from before it again.
            for holder, saved in zip(self.holders, before, strict=True):
                for name, tensor in saved.items():
                    setattr(holder, name, tensor)
        self.graph, self.output = graph, output
        self._addresses = (key, *(t.data_ptr() for t in self.inputs()))
        self.captures += 1
