"""A training run's record: TensorBoard events and a progress display (a bar on a terminal, plain lines otherwise).

A write of the events that the machine refuses (disk full, read-only), or an events file that
vanished while the run wrote it, is a :class:`~rlmem.agents.stops.StorageError` naming the file.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rlmem.agents.stops import StorageError
from rlmem.files import storage_error


class TrainingLog:
    """TensorBoard events plus a progress display: a bar on a terminal, plain lines otherwise."""

    def __init__(self, log_dir: str | Path | None, total: int, progress_bar: bool | None, verbose: int,
                 purge_step: int | None = None) -> None:
        self.writer = None
        self._events_fd: int | None = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard drops what an earlier writer logged at steps >= it (a run
            # resumed from a checkpoint replaces the steps after the checkpoint, in the same run).
            if purge_step is not None:
                _wait_for_a_later_second(Path(log_dir))
            _quiet_writer_threads()
            try:
                self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
            except OSError as error:
                raise storage_error(f"could not write TensorBoard events in {str(log_dir)!r}", error) from None
            # Held open so the file's inode stays ours: TensorBoard reopens the file by name for every
            # write, so a deleted one would silently be created again, holding only the later events.
            self._events_fd = os.open(self.events_file, os.O_RDONLY)
        interactive = sys.stderr.isatty() if progress_bar is None else progress_bar
        self.bar = None
        if interactive and verbose > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", unit_scale=True, dynamic_ncols=True)
        self.verbose, self.total = verbose, total
        self._last_print = -math.inf
        self._start = time.perf_counter()

    @property
    def events_file(self) -> Path | None:
        """The events file this log writes (None without TensorBoard)."""
        if self.writer is None:
            return None
        return Path(self.writer.file_writer.event_writer._file_name)

    def _refused(self, error: OSError) -> StorageError:
        events = self.events_file
        self._close_quietly()
        return storage_error(f"could not write the TensorBoard events file {str(events)!r}", error)

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            try:
                self.writer.add_text(tag, text)
            except OSError as error:
                raise self._refused(error) from None

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            try:
                for tag, value in values.items():
                    if value is not None and math.isfinite(value):
                        self.writer.add_scalar(tag, value, step)
            except OSError as error:
                raise self._refused(error) from None

    def progress(self, done: int, step: int, sps: float, recent_return: float | None) -> None:
        """Advance the display to ``done`` of ``total`` steps (this learn call); ``step`` is global."""
        ret = "n/a" if recent_return is None else f"{recent_return:.3f}"
        if self.bar is not None:
            self.bar.n = min(done, self.total)
            self.bar.set_postfix_str(f"SPS {sps:,.0f} return {ret}", refresh=True)
        elif self.verbose > 0 and (time.perf_counter() - self._last_print > 10 or done >= self.total):
            self._last_print = now = time.perf_counter()
            elapsed = now - self._start
            left = elapsed / done * (self.total - done) if 0 < done < self.total else 0.0
            print(f"step {step:>10,}  ({100 * min(done, self.total) / self.total:5.1f}%)  "
                  f"SPS {sps:>10,.0f}  return {ret}  elapsed {_clock(elapsed)}  ETA {_clock(left)}", flush=True)

    def flush(self) -> None:
        """Write the events logged so far to disk (before a checkpoint, so a kill loses none up to it);
        an events file that is no longer there (deleted or moved mid-run) is a StorageError."""
        if self.writer is not None:
            events = self.events_file
            try:
                self.writer.flush()
            except OSError as error:
                raise self._refused(error) from None
            if not self._still_there(events):
                self._close_quietly()
                raise StorageError(f"the TensorBoard events file {str(events)!r} vanished while the run wrote "
                                   "it (deleted or moved)")

    def _still_there(self, events: Path) -> bool:
        """Whether ``events`` is still the file this log created (not gone, not created anew)."""
        if self._events_fd is None:
            return True
        try:
            return os.stat(events).st_ino == os.fstat(self._events_fd).st_ino
        except FileNotFoundError:
            return False

    def close(self, quiet: bool = False) -> None:
        """Flush and close the events file; ``quiet``: on the way out of an error, raise nothing more."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is None:
            return
        if quiet:
            self._close_quietly()
            return
        events = self.events_file
        try:
            self.writer.flush()
            self.writer.close()
        except OSError as error:
            self._close_quietly()
            raise storage_error(f"could not write the TensorBoard events file {str(events)!r}", error) from None
        self.writer = None
        self._close_events_fd()

    def _close_events_fd(self) -> None:
        if self._events_fd is not None:
            os.close(self._events_fd)
            self._events_fd = None

    def _close_quietly(self) -> None:
        """Stop the writer after a failed write: its thread and file go, its error is not raised again."""
        writer, self.writer = self.writer, None
        self._close_events_fd()
        if writer is None:
            return
        try:
            writer.close()
        except Exception:
            with_file = getattr(getattr(writer.file_writer, "event_writer", None), "_general_file_writer", None)
            try:
                if with_file is not None:
                    with_file.close()
            except Exception:
                pass


_QUIET = False


def _quiet_writer_threads() -> None:
    """Keep TensorBoard's writer thread from printing a traceback when a write fails: the writer raises
    the same error again in the training thread, where it becomes one line (installed once)."""
    global _QUIET
    if _QUIET:
        return
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook

    def hook(args: Any) -> None:
        if isinstance(args.thread, _AsyncWriterThread) and isinstance(args.exc_value, OSError):
            return
        previous(args)

    threading.excepthook = hook
    _QUIET = True


def _clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03`` (hours only when there are any)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _wait_for_a_later_second(log_dir: Path) -> None:
    """Sleep (under a second) until a new events file will sort after every one in ``log_dir``.

    TensorBoard reads a directory's events files in name order, and the name starts with the
    second it was created in: a file of the same second as an earlier writer's might be read first.
    """
    stamps = []
    for path in log_dir.glob("events.out.tfevents.*"):
        parts = path.name.split(".")
        if len(parts) > 3 and parts[3].isdigit():
            stamps.append(int(parts[3]))
    while stamps and int(time.time()) <= max(stamps) < time.time() + 2:
        time.sleep(0.05)


def markdown_table(values: dict[str, Any]) -> str:
    """A two-column markdown table (hyperparameters as TensorBoard text)."""
    rows = "\n".join(f"|{key}|{value}|" for key, value in values.items())
    return f"|param|value|\n|-|-|\n{rows}"
