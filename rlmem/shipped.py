"""The YAML that ships with rlmem: agent presets (``agents/``) and bench suites (``envs/``), found by name.

In the repository they are the top-level folders ``agents/`` and ``envs/``; a built wheel carries
copies of them as package data (``rlmem/_data/agents``, ``rlmem/_data/envs``; see setup.py), so
``rlmem train --preset ppo-gru`` and ``rlmem bench --suite smoke`` work after a plain
``pip install`` from any directory. A path to a user's own file always works too.
"""

from __future__ import annotations

import re

from pathlib import Path

from rlmem.checks import did_you_mean

KINDS = {"agents": "preset", "envs": "suite"}
"""The shipped folders and what each file in them is."""

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(kind: str) -> Path:
    """The folder the shipped ``kind`` ('agents' or 'envs') files are read from: the installed package data
    if present (a wheel), else the source checkout's top-level folder (an editable install)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    installed = _PACKAGE / "_data" / kind
    return installed if installed.is_dir() else _PACKAGE.parent / kind


def shipped_files(kind: str) -> dict[str, Path]:
    """The shipped ``kind`` files by name (the file name without ``.yaml``), sorted."""
    folder = shipped_dir(kind)
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    return {path.stem: path for path in files}


def find_yaml(name: str | Path, kind: str) -> Path:
    """``name`` as a path to a file, else the shipped file of that name (``ppo-gru``, ``ppo-gru.yaml`` or
    ``agents/ppo-gru.yaml``); else a ValueError naming what ships."""
    what = KINDS.get(kind, kind)
    path = Path(name)
    if path.is_file():
        return path
    if path.is_dir():
        raise ValueError(f"{what} {str(name)!r} is a directory, not a YAML file")
    shipped = shipped_files(kind)
    stem = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if path.parent in (Path("."), Path(kind)) and stem in shipped:
        return shipped[stem]
    listing = f"; shipped {what}s: {', '.join(shipped)}" if shipped else ""
    raise ValueError(f"{what} {str(name)!r} not found{listing}{did_you_mean(stem, shipped, 2)}")


def read_text(path: Path, source: str) -> str:
    """A YAML file's text; one that is not UTF-8 text, or cannot be read, is a ValueError naming ``source``."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{source}: not a YAML text file (byte {error.object[error.start]:#04x} at offset "
                         f"{error.start} is not UTF-8)") from None
    except OSError as error:
        raise ValueError(f"{source}: cannot be read: {error.strerror or error}") from None


def description(path: Path) -> str:
    """What a shipped YAML file is: the first sentence of its leading comment (without the usage example)."""
    lines = []
    for line in path.read_text().splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or not text:
            break
        lines.append(text)
    summary = " ".join(lines)
    summary = summary.split(": `", 1)[0]
    summary = re.split(r"(?<!\bal)\. ", summary, maxsplit=1)[0]  # "Morad et al. 2023" ends no sentence
    return summary.rstrip(".:")


__all__ = ["KINDS", "description", "find_yaml", "read_text", "shipped_dir", "shipped_files"]
