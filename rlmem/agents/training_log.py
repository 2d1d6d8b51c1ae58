"""A training run's record: TensorBoard events and a progress display (a bar on a terminal, plain lines otherwise)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any


class TrainingLog:
    """TensorBoard events plus a progress display: a bar on a terminal, plain lines otherwise."""

    def __init__(self, log_dir: str | Path | None, total: int, progress_bar: bool | None, verbose: int,
                 purge_step: int | None = None) -> None:
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard drops what an earlier writer logged at steps >= it (a run
            # resumed from a checkpoint replaces the steps after the checkpoint, in the same run).
            if purge_step is not None:
                _wait_for_a_later_second(Path(log_dir))
            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        interactive = sys.stderr.isatty() if progress_bar is None else progress_bar
        self.bar = None
        if interactive and verbose > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", unit_scale=True, dynamic_ncols=True)
        self.verbose, self.total = verbose, total
        self._last_print = -math.inf
        self._start = time.perf_counter()

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(tag, value, step)

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
        """Write the events logged so far to disk (before a checkpoint, so a kill loses none up to it)."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


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
