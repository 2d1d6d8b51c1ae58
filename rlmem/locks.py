"""One writer per run directory: an OS lock on ``RUN_DIR/.lock``, held while a process writes the run.

``rlmem train`` (new, ``--overwrite`` and ``--resume``) and each bench run, all through
:mod:`rlmem.runs`, take it before anything in the directory is written or cleared; a second writer
is refused with one line naming the owner (pid, host, since when, its command). The lock is
``fcntl.flock`` on the lock file: the kernel drops it when the owner exits or dies, so the file a
killed process leaves behind is stale and simply taken over. Readers (``rlmem eval``, ``probe``) take no lock. A process that holds
a directory may claim it, or a directory inside it, again (a bench run, then its training): the
inner claim is free and releases nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rlmem.agents.stops import StorageError
from rlmem.files import reason

LOCK_NAME = ".lock"
"""The lock file in a claimed directory (removed again by its owner when it is done)."""

_held: dict[Path, int] = {}
"""The directories this process holds, by resolved path, and the lock file's descriptor."""


class RunDirectoryInUse(ValueError):
    """Another process is writing the directory (exit code 2 from the command line, like other refused input)."""


def _owner_of(resolved: Path) -> Path | None:
    """The directory this process holds that is ``resolved`` or one of its parents (None: none)."""
    for path in (resolved, *resolved.parents):
        if path in _held:
            return path
    return None


def _make_directory(directory: Path, what: str) -> None:
    """``mkdir -p``; a path the machine refuses is a StorageError saying why (a file in the way, read-only...)."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{what} {str(directory)!r} is a file")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocker = next((p for p in directory.parents if p.exists() and not p.is_dir()), None)
        why = f"{str(blocker)!r} is a file, not a directory" if blocker is not None else reason(error)
        raise StorageError(f"cannot create the {what} {str(directory)!r}: {why}") from None


def _describe_owner(text: str) -> str:
    """``process 123 on host vm since 2026-01-01 12:00:00 (rlmem train ...)`` from a lock file's contents."""
    try:
        owner = json.loads(text)
        return (f"process {owner['pid']} on host {owner['host']} since {owner['since']} "
                f"({owner['command']})")
    except (ValueError, KeyError, TypeError):
        return "another process (it has not written its pid yet)"


def _refuse(fd: int, directory: Path, what: str) -> RunDirectoryInUse:
    text = ""
    for _ in range(20):  # the owner writes its pid right after it takes the lock
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        if text:
            break
        time.sleep(0.01)
    return RunDirectoryInUse(f"{what} {str(directory)!r} is in use: {_describe_owner(text)} is writing it; "
                             "one process writes a run at a time: wait for it to end, or choose another directory")


def _acquire(directory: Path, what: str) -> int:
    """Take ``directory/.lock`` (descriptor), or raise RunDirectoryInUse naming the owner."""
    path = directory / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise StorageError(f"cannot create the lock file {str(path)!r}: {reason(error)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _refuse(fd, directory, what)
            os.close(fd)
            raise error from None
        except OSError as error:
            os.close(fd)
            raise StorageError(f"cannot lock {str(path)!r}: {reason(error)}") from None
        try:  # the owner before us may have removed the file after we opened it: lock the one in place
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
             "command": _command()}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
    except OSError as error:
        _release(path, fd)
        raise StorageError(f"cannot write the lock file {str(path)!r}: {reason(error)}") from None
    return fd


def _command() -> str:
    """This process's command line, as the owner of a lock reports it (``rlmem train --run-dir ...``)."""
    argv = sys.argv or ["python"]
    name = Path(argv[0]).name
    if name in ("__main__.py", "cli.py"):  # python -m rlmem / python -m rlmem.cli
        name = "rlmem"
    return " ".join([name, *argv[1:]])[:300]


def _release(path: Path, fd: int) -> None:
    """Remove the lock file (while still holding it, so nobody takes a file about to vanish) and unlock."""
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            path.unlink()
    except OSError:
        pass  # the directory went away, or is read-only now: the kernel still drops the lock below
    os.close(fd)


@contextlib.contextmanager
def claim(directory: str | Path, what: str = "run directory") -> Iterator[Path]:
    """Hold ``directory`` (made if missing) for this process while the block runs; yields the directory.

    Raises :class:`RunDirectoryInUse` (a ValueError) naming the owner when another process holds it, and :class:`~rlmem.agents.stops.StorageError` when it cannot be
    created or locked. Nothing in the directory is touched before the lock is held.
    """
    directory = Path(directory)
    resolved = directory.resolve()
    if _owner_of(resolved) is not None:  # this process holds it (or a parent) already
        yield directory
        return
    _make_directory(directory, what)
    fd = _acquire(directory, what)
    _held[resolved] = fd
    try:
        yield directory
    finally:
        del _held[resolved]
        _release(directory / LOCK_NAME, fd)


def holds(directory: str | Path) -> bool:
    """Whether this process holds ``directory`` or a directory above it."""
    return _owner_of(Path(directory).resolve()) is not None


__all__ = ["LOCK_NAME", "RunDirectoryInUse", "claim", "holds"]
