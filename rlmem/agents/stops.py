"""How a learn loop stops early: SIGINT / SIGTERM noted until the iteration's end, and the errors it raises."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped ``learn`` at an iteration's end, after a checkpoint was written."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step:,}; "
                         f"checkpoint written to {checkpoint}")


class TrainingDiverged(RuntimeError):
    """The loss or the weights became nan or inf; nothing was saved from them."""


class TrainingOutOfMemory(RuntimeError):
    """An iteration needed more device memory than was free; nothing was saved from it."""


class StorageError(OSError, RuntimeError):
    """A file of the run could not be written, or vanished while the run wrote it (disk full, read-only,
    permission denied, deleted): a fault of the machine, not of the input; the files written before stay
    whole. An OSError too, so ``except OSError`` still catches what the file system refused."""


class StopSignals:
    """While it is active (in the main thread): the first SIGINT or SIGTERM is only noted, so the
    learn loop can write a checkpoint and stop at the iteration's end; a second acts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. SIGINT of a background job
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self._restore()
        signal.raise_signal(signum)  # the second one: what it would have done without us

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def __exit__(self, *exc: Any) -> None:
        self._restore()
