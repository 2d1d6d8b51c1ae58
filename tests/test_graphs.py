"""GraphedCall where no CUDA graph can be recorded: a warning, then the eager call, with no state lost."""

from __future__ import annotations

import warnings

import pytest
import torch

from rlmem.agents.graphs import GraphedCall


class _Counter:
    def __init__(self) -> None:
        self.value = torch.zeros(3)


def test_a_failed_recording_warns_once_and_stays_eager_without_losing_state():
    counter = _Counter()

    def step():
        counter.value = counter.value + 1  # reassigned, as an env batch does with its state
        return counter.value.sum()

    call = GraphedCall(step, lambda: [counter.value], holders=[counter], warmup=1, name="counter")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [float(call()) for _ in range(4)]
    assert results == [3.0, 6.0, 9.0, 12.0]  # the failed recording ran nothing and dropped no step
    assert counter.value.tolist() == [4.0, 4.0, 4.0]
    if not torch.cuda.is_available():
        assert call.failed is not None and call.replays == 0 and call.eager_calls == 4
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1 and messages[0].startswith("CUDA graph of the counter could not be recorded")


@pytest.mark.parametrize("warmup", [float("inf"), 3])
def test_eager_calls_until_the_warmup_is_spent(warmup):
    calls = []
    call = GraphedCall(lambda: calls.append(1), lambda: [], warmup=warmup)
    for _ in range(3):
        call()
    assert len(calls) == 3 and call.eager_calls == 3 and not call.active
