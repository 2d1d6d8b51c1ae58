"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every file rlmem means to keep (checkpoints, run configs, eval and bench results, summaries)
goes through :func:`atomic_write`: written to a temporary name in the same directory, flushed,
fsynced, renamed over the target, and the directory fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[Any]], Any], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file, then make it ``path`` atomically (the temp file goes on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda file: file.write(text))


def write_json(path: str | Path, values: Any) -> None:
    """Write ``values`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(values, indent=2) + "\n")
