"""Checkpoint files: written atomically, read without running code, complete enough to resume exactly.

A checkpoint is a ``torch.save`` dict of tensors and plain values (numbers, strings, lists,
dicts), read back with ``torch.load(weights_only=True)``: reading one never runs code from the
file, and a file holding anything else is refused. It ends with a SHA-256 digest of its
contents, checked on reading, so a damaged file is refused rather than silently loaded.

What a checkpoint holds (:func:`save_checkpoint`):

* always: the format, rlmem version, algo, config, seed, step counter, spaces, env id and env
  kwargs, and the agent's state dicts (networks, optimizer, its own counters): what ``load`` needs;
* a training checkpoint also has ``"training"``: the learn call's plan (the schedule position),
  the random generators (torch, numpy, Python, the agent's, the env batch's), the env batch's
  state, and the agent's place in it (observation, memory, episode starts): what ``restore``
  needs to go on exactly as an uninterrupted run would. Large parts (RecurrentDQN's replay)
  are files of their own beside it, ``<name>.<part>.pt``, written first and named inside it.

Every file is written to a temporary name in its directory, flushed, fsynced and renamed over
the target: a crash at any moment leaves the old file or the new one, never a part-written one.

In a run's ``checkpoints/`` directory (:class:`CheckpointManager`): ``step-<N>.pt`` every
``checkpoint_every`` env-steps (the newest ``keep_checkpoints`` kept) and ``final.pt`` at the
end of a learn call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem.agents.stops import StorageError
from rlmem.checks import check_positive_int
from rlmem.files import atomic_write, storage_error
from rlmem.observations import is_text

CHECKPOINT_FORMAT = "rlmem-checkpoint"
PART_FORMAT = "rlmem-checkpoint-part"
STEP_PATTERN = re.compile(r"^step-(\d+)\.pt$")
FINAL_NAME = "final.pt"


# ---------------------------------------------------------------------- spaces
def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A JSON-like description of an observation or action space (for checkpoints): Box (with its dtype),
    Discrete, MultiDiscrete, MultiBinary, Text (another space of strings: by its class), and Dict / Tuple
    of those."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "keys": [str(k) for k in space.spaces],
                "spaces": [space_to_dict(s) for s in space.spaces.values()]}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_dict(s) for s in space.spaces]}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist(),
                "start": np.asarray(space.start).tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.Text):
        return {"type": "Text", "min_length": int(space.min_length), "max_length": int(space.max_length),
                "charset": "".join(sorted(space.character_set))}
    if is_text(space):  # another space of strings (minigrid's MissionSpace): left out, so its class is enough
        return {"type": "Strings", "class": _class_name(space)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(),
                "shape": list(space.shape), "dtype": str(space.dtype)}
    raise ValueError(f"unsupported space {space}; rlmem saves Box, Discrete, MultiDiscrete, MultiBinary, Text "
                     "and Dict / Tuple of those")


def space_from_dict(spec: dict[str, Any]) -> gym.Space:
    """The inverse of :func:`space_to_dict`."""
    kind = spec["type"]
    if kind == "Dict":
        return gym.spaces.Dict(dict(zip(spec["keys"], map(space_from_dict, spec["spaces"]), strict=True)))
    if kind == "Tuple":
        return gym.spaces.Tuple([space_from_dict(s) for s in spec["spaces"]])
    if kind == "Discrete":
        return gym.spaces.Discrete(spec["n"], start=spec["start"])
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(spec["nvec"], start=spec.get("start"))
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(spec["n"])
    if kind == "Text":
        return gym.spaces.Text(spec["max_length"], min_length=spec["min_length"], charset=spec["charset"])
    if kind == "Strings":
        return SavedStrings(spec["class"])
    return gym.spaces.Box(np.array(spec["low"], dtype=spec["dtype"]), np.array(spec["high"], dtype=spec["dtype"]),
                          tuple(spec["shape"]), np.dtype(spec["dtype"]))


def _class_name(space: gym.Space) -> str:
    return f"{type(space).__module__}.{type(space).__qualname__}"


class SavedStrings(gym.spaces.Space):
    """A space of strings other than gymnasium's Text (minigrid's ``MissionSpace``) as a checkpoint holds it:
    by its class. No agent reads the entry (:func:`rlmem.observations.is_text`), so it equals any space of
    strings of that class."""

    def __init__(self, class_name: str) -> None:
        super().__init__(dtype=str)
        self.class_name = class_name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, gym.Space) and is_text(other) and (
            other.class_name if isinstance(other, SavedStrings) else _class_name(other)) == self.class_name

    def __repr__(self) -> str:
        return f"{self.class_name.rsplit('.', 1)[-1]}(strings)"

    def contains(self, x: Any) -> bool:
        return isinstance(x, str)

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        return ""


# ---------------------------------------------------------------------- writing and reading files
def _digest(value: Any) -> str:
    """SHA-256 of a checkpoint's contents (tensors by dtype, shape and bytes; plain values by repr)."""
    sha = hashlib.sha256()

    def walk(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            flat = item.detach().reshape(-1).cpu().contiguous()
            sha.update(f"T{flat.dtype}{tuple(item.shape)}".encode())
            sha.update(flat.view(torch.uint8).numpy())
        elif isinstance(item, dict):
            sha.update(b"{")
            for key in sorted(item, key=repr):
                walk(key)
                walk(item[key])
            sha.update(b"}")
        elif isinstance(item, (list, tuple)):
            sha.update(b"[")
            for element in item:
                walk(element)
            sha.update(b"]")
        else:
            sha.update(f"{type(item).__name__}:{item!r};".encode())

    walk(value)
    return sha.hexdigest()


def atomic_save(data: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` ``data`` (sealed with its digest) to ``path`` atomically: temp file, fsync, rename."""
    sealed = {**data, "digest": _digest(data)}
    atomic_write(path, lambda file: torch.save(sealed, file), binary=True)


def read_file(path: str | Path, expected_format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """Read an rlmem checkpoint file safely; a ValueError in one line says what is wrong with it.

    Only tensors and plain values are unpickled (``weights_only=True``): a file that holds any
    other Python object is refused before any of it runs. The digest is checked.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{str(path)!r} is not an rlmem checkpoint (not a torch file)") from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise ValueError(f"{str(path)!r} is refused: it holds a Python object{what} that only running code from "
                         "the file could rebuild, and rlmem loads only tensors and plain values; "
                         "nothing from it was run") from None
    except Exception as error:  # torch raises several types for a truncated or damaged file
        raise ValueError(f"{str(path)!r} is truncated or corrupted: it could not be read "
                         f"({type(error).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        raise ValueError(f"{str(path)!r} is not an rlmem checkpoint")
    digest = data.pop("digest", None)
    if digest != _digest(data):
        raise ValueError(f"{str(path)!r} is corrupted: its contents do not match the checksum stored in it")
    return data


# ---------------------------------------------------------------------- what an agent's checkpoint holds
def rng_state(agent: Any) -> dict[str, Any]:
    """The random generators a run draws from: torch's (CPU, and the agent's GPU), numpy's, Python's, the agent's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "agent": agent.generator.get_state(),
    }
    if agent.device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(agent.device)
    return state


def set_rng_state(agent: Any, state: dict[str, Any]) -> None:
    """The inverse of :func:`rng_state` (sets torch's, numpy's and Python's global generators)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    agent.generator.set_state(state["agent"])
    if "torch_cuda" in state and agent.device.type == "cuda":
        torch.cuda.set_rng_state(state["torch_cuda"], agent.device)


def save_checkpoint(agent: Any, path: str | Path, training: bool = False) -> Path:
    """Write ``agent`` to ``path``: what ``load`` needs and, with ``training``, what ``restore`` needs.

    A training checkpoint's parts (RecurrentDQN's replay) are written first, beside it, as
    ``<stem>.<part>.pt``; the checkpoint names them, so it never points at a file not yet written.
    """
    from rlmem import __version__

    path = Path(path)
    data: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "rlmem_version": __version__,
        "algo": agent.algo,
        "config": dataclasses.asdict(agent.config),
        "seed": agent.seed,
        "num_timesteps": agent.num_timesteps,
        "observation_space": space_to_dict(agent.observation_space),
        "action_space": space_to_dict(agent.action_space),
        "env_source": agent.env_source,
        "env_kwargs": dict(agent.env_kwargs),
        **agent._modules_state(),
    }
    files: dict[str, str] = {}
    try:
        if training:
            for name, part in agent._checkpoint_parts().items():
                part_path = path.with_name(f"{path.stem}.{name}.pt")
                atomic_save({"format": PART_FORMAT, "algo": agent.algo, "num_timesteps": agent.num_timesteps,
                             "data": part}, part_path)
                files[name] = part_path.name
            data["training"] = {**agent._training_state(), "parts": files}
        atomic_save(data, path)
    except BaseException:
        for file_name in files.values():  # parts of a checkpoint that was never written are of no use
            try:
                path.with_name(file_name).unlink(missing_ok=True)
            except OSError:
                pass
        raise
    return path


def load_checkpoint(path: str | Path, algo: str, training: bool = False) -> dict[str, Any]:
    """Read a checkpoint of an ``algo`` agent (with ``training``: a training one, its parts read too)."""
    path = Path(path)
    data = read_file(path)
    if data.get("algo") != algo:
        raise ValueError(f"{str(path)!r} holds a {data.get('algo')} agent, not a {algo}")
    if training:
        if "training" not in data:
            raise ValueError(f"{str(path)!r} holds a saved agent, not a training checkpoint: it cannot be resumed")
        parts = {}
        for name, file_name in data["training"]["parts"].items():
            part = read_file(path.with_name(file_name), PART_FORMAT)
            if part.get("algo") != algo or part.get("num_timesteps") != data["num_timesteps"]:
                raise ValueError(f"{str(path.with_name(file_name))!r} does not belong to {str(path)!r}")
            parts[name] = part["data"]
        data["training"]["parts"] = parts
    return data


# ---------------------------------------------------------------------- a run's checkpoint directory
def checkpoint_step(path: Path) -> int | None:
    """The step in a ``step-<N>.pt`` file name (None for other names)."""
    found = STEP_PATTERN.match(path.name)
    return int(found.group(1)) if found else None


class CheckpointManager:
    """A training run's ``checkpoints/`` directory: ``step-<N>.pt`` every ``every`` env-steps
    (the newest ``keep`` kept, with their parts) and ``final.pt`` at the end of a learn call."""

    def __init__(self, directory: str | Path, every: int, keep: int) -> None:
        self.directory = Path(directory)
        self.every = check_positive_int("checkpoint_every", every)
        self.keep = check_positive_int("keep_checkpoints", keep)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise storage_error(f"cannot create the checkpoint directory {str(self.directory)!r}", error) from None
        for stale in self.directory.glob(".*.tmp"):  # left by a process killed while writing
            if not _writer_alive(stale):  # never another live process's write in progress
                stale.unlink(missing_ok=True)
        for part in self.directory.glob("*.*.pt"):  # a part whose checkpoint was never written
            if not part.with_name(part.name.split(".")[0] + ".pt").is_file():
                part.unlink(missing_ok=True)
        steps = sorted(self.step_files(), key=checkpoint_step)
        #: The newest checkpoint written (or found on disk): named when training has to stop.
        self.last_path: Path | None = steps[-1] if steps else None
        self._last_step: int | None = None

    def step_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.iterdir() if checkpoint_step(p) is not None]

    def due(self, step: int, previous: int) -> bool:
        """Whether the iteration from ``previous`` to ``step`` env-steps crossed a multiple of ``every``."""
        return step // self.every > previous // self.every

    def write(self, agent: Any, final: bool = False) -> Path:
        """A training checkpoint of ``agent`` (``final.pt``, or ``step-<N>.pt`` and prune the old ones)."""
        if not final and self._last_step == agent.num_timesteps and self.last_path is not None:
            return self.last_path  # already written at this step
        agent._check_finite()  # never a checkpoint from nan or inf weights
        if not self.directory.is_dir():  # atomic_write would make it anew, hiding that the run's files went
            raise StorageError(f"the checkpoint directory {str(self.directory)!r} vanished while the run wrote "
                               "it (deleted or moved)")
        name = FINAL_NAME if final else f"step-{agent.num_timesteps:09d}.pt"
        self.last_path = save_checkpoint(agent, self.directory / name, training=True)
        self._last_step = agent.num_timesteps
        if not final:
            self._prune()
        return self.last_path

    def kept(self) -> str:
        """Which checkpoint a stopped run can go on from, for the line that says why it stopped."""
        if self.last_path is None:
            return "no checkpoint had been written yet"
        if not self.last_path.is_file():
            return f"the last checkpoint written, {self.last_path}, has vanished too"
        return f"the last good checkpoint is {self.last_path} (left as it was)"

    def _prune(self) -> None:
        for old in sorted(self.step_files(), key=checkpoint_step)[: -self.keep]:
            old.unlink(missing_ok=True)  # first: a part left by a kill here is only an orphan (removed later)
            for part in self.directory.glob(f"{old.stem}.*.pt"):
                part.unlink(missing_ok=True)


def _writer_alive(tmp: Path) -> bool:
    """Whether the process that is writing ``tmp`` (``.<name>.<pid>.tmp``) still runs (on this host)."""
    pid = tmp.name.rsplit(".", 2)[-2] if tmp.name.count(".") >= 3 else ""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def find_resume_checkpoint(directory: str | Path, algo: str) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """The newest training checkpoint in ``directory`` that reads whole (parts and digests checked).

    Returns its path, its data and one note for every checkpoint passed over, with the reason: each
    newer one that does not load, and ``final.pt`` whenever it does not read (its step unknown, it
    could be the newest).
    """
    directory = Path(directory)
    candidates: list[tuple[int, int, Path]] = []
    notes = []
    if directory.is_dir():
        for path in directory.iterdir():
            step = checkpoint_step(path)
            if step is not None:
                candidates.append((step, 0, path))
        final = directory / FINAL_NAME
        if final.is_file():
            try:
                candidates.append((int(read_file(final)["num_timesteps"]), 1, final))
            except ValueError as error:
                notes.append(f"skipping {final.name}: {error}")
    for _, _, path in sorted(candidates, key=lambda c: (c[0], c[1]), reverse=True):
        try:
            return path, load_checkpoint(path, algo, training=True), notes
        except ValueError as error:
            notes.append(f"skipping {path.name}: {error}")
    return None, None, notes


__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointManager",
    "SavedStrings",
    "atomic_save",
    "find_resume_checkpoint",
    "load_checkpoint",
    "read_file",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "space_from_dict",
    "space_to_dict",
]
