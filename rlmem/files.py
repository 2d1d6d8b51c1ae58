"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every file rlmem means to keep (checkpoints, run configs, eval and bench results, summaries)
goes through :func:`atomic_write`: written to a temporary name in the same directory, flushed,
fsynced, renamed over the target, and the directory fsynced so the rename itself survives a crash.
A write the machine refuses (disk full, read-only file system, permission denied) leaves no
temporary file and raises :class:`~rlmem.agents.stops.StorageError` naming the file and the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rlmem.agents.stops import StorageError


def os_error(error: BaseException) -> OSError | None:
    """The OSError behind ``error``: itself, or one in its cause / context chain (torch's writer wraps the
    file's ENOSPC in a RuntimeError); None when the failure did not come from the operating system."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def reason(error: OSError) -> str:
    """``No space left on device``: the operating system's words for an OSError."""
    return error.strerror or str(error) or type(error).__name__


def storage_error(what: str, error: BaseException) -> StorageError | None:
    """``what: <reason>`` as a StorageError when ``error`` came from the operating system (else None)."""
    cause = os_error(error) if isinstance(error, Exception) else None
    return StorageError(f"{what}: {reason(cause)}") if cause is not None else None


def atomic_write(path: str | Path, write: Callable[[IO[Any]], Any], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file, then make it ``path`` atomically (the temp file goes on failure)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # e.g. the directory itself is gone: there is no temporary file left either
        fault = storage_error(f"could not write {str(path)!r}", error)
        if fault is not None:
            raise fault from None
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
