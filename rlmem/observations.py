"""Observations as tensors, in the structure of their space: one rule for the envs, the buffers and the agents.

A batch of observations from a space is:

* a ``Box`` (any shape): one tensor ``[*lead, *shape]`` in the space's dtype (an image stays uint8;
  float64 becomes float32, other integers int64);
* a ``Discrete``: int64 ``[*lead]``, the index from 0 (the space's ``start`` taken off);
  ``MultiDiscrete``: int64 ``[*lead, *nvec.shape]``; ``MultiBinary``: uint8 ``[*lead, *shape]``;
* a ``Dict``: a dict of these by key; a ``Tuple``: a tuple of them;
* a ``Text`` entry of a Dict / Tuple, or any other space of strings (minigrid's ``MissionSpace``:
  :func:`is_text`), is left out (a dict without its key, None in a tuple): no encoder reads text, and
  :func:`text_note` says so once.

``lead`` is ``[N]`` for a batch, ``[T, N]`` in a rollout buffer. A 1-D float32 Box (every rlmem task but
the pixel ones) is one plain tensor, so its path is exactly the flat one. Graph, Sequence and OneOf
spaces have no tensor form: :func:`check_observation_space` refuses them in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

Obs = Any
"""A tensor, or a dict / tuple of them (None for a left-out Text entry of a tuple)."""
Layout = Any
"""The same structure with ``(shape, dtype)`` leaves."""

LEAVES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
SUPPORTED = ("Box, Discrete, MultiDiscrete, MultiBinary and Dict / Tuple of those (a 3-D Box is an image; "
             "a Text entry of a Dict / Tuple, or another space of strings, is left out)")
_noted: set[str] = set()


def is_text(space: gym.Space) -> bool:
    """A space of strings: gymnasium's ``Text``, or another ``Space`` declared with ``dtype=str`` (minigrid's
    ``MissionSpace``, its mission). rlmem reads no text: such an entry of a Dict / Tuple is left out."""
    if isinstance(space, gym.spaces.Text):
        return True
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple, *LEAVES)):
        return False
    dtype = getattr(space, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind == "U"


def unsupported_part(space: gym.Space, top: bool = True) -> gym.Space | None:
    """The first part of ``space`` that has no tensor form (None: all of it has one)."""
    if isinstance(space, gym.spaces.Dict):
        parts = list(space.spaces.values())
    elif isinstance(space, gym.spaces.Tuple):
        parts = list(space.spaces)
    elif is_text(space) and not top:
        return None
    else:
        return None if isinstance(space, LEAVES) else space
    if all(is_text(p) for p in parts):
        return space  # nothing left to read
    return next((bad for p in parts if (bad := unsupported_part(p, False)) is not None), None)


def unsupported_message(space: gym.Space, who: str) -> str | None:
    """The one line refusing ``space`` (None: it is supported); ``who`` names the env or the agent."""
    bad = unsupported_part(space)
    if bad is None:
        return None
    part = "" if bad is space else f" (its part {bad})"
    return (f"{who}: observation space {space}{part} cannot be encoded as a vector; rlmem accepts {SUPPORTED}; "
            "wrap the env to turn the observation into one of these")


def check_observation_space(space: gym.Space, who: str = "rlmem") -> None:
    """Refuse, in one ValueError line naming the space, an observation space without a tensor form."""
    message = unsupported_message(space, who)
    if message is not None:
        raise ValueError(message)


def text_note(space: gym.Space) -> None:
    """Print once per process, per space, that its Text entries are left out."""
    names = [f"{str(k)!r} ({type(s).__name__})" for k, s in _items(space) if is_text(s)]
    if names and str(space) not in _noted:
        _noted.add(str(space))
        print(f"rlmem: note: observation entries {', '.join(names)} are left out: "
              "no encoder reads text")


def _items(space: gym.Space) -> list[tuple[Any, gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        return list(space.spaces.items())
    if isinstance(space, gym.spaces.Tuple):
        return list(enumerate(space.spaces))
    return []


def torch_dtype(space: gym.Space) -> torch.dtype:
    """The dtype a leaf's tensors have."""
    if isinstance(space, gym.spaces.Box):
        dtype = np.dtype(space.dtype)
        if dtype == np.uint8:
            return torch.uint8
        if dtype.kind == "f":
            return torch.float32
        return torch.bool if dtype == np.bool_ else torch.int64
    return torch.uint8 if isinstance(space, gym.spaces.MultiBinary) else torch.int64


def layout(space: gym.Space) -> Layout:
    """``space``'s structure with ``(shape, dtype)`` leaves (Text entries: dropped from a dict, None in a tuple)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: layout(s) for k, s in space.spaces.items() if not is_text(s)}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(None if is_text(s) else layout(s) for s in space.spaces)
    if isinstance(space, gym.spaces.Discrete):
        return ((), torch.int64)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return (tuple(np.asarray(space.nvec).shape), torch.int64)
    return (tuple(space.shape), torch_dtype(space))


def is_leaf_layout(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], torch.dtype)


def zeros(lay: Layout | int, lead: tuple[int, ...], device: torch.device | str) -> Obs:
    """Zeroed storage ``[*lead, ...]`` of a layout (an int ``D``: a float32 vector of D, as buffers took before)."""
    if isinstance(lay, int):
        return torch.zeros((*lead, lay), dtype=torch.float32, device=device)
    if lay is None:
        return None
    if is_leaf_layout(lay):
        return torch.zeros((*lead, *lay[0]), dtype=lay[1], device=device)
    if isinstance(lay, dict):
        return {k: zeros(v, lead, device) for k, v in lay.items()}
    return tuple(zeros(v, lead, device) for v in lay)


def tree_map(fn: Callable[..., Any], obs: Obs, *others: Obs) -> Obs:
    """``fn`` on each tensor of ``obs`` (with the matching tensors of ``others``), in the same structure."""
    if obs is None:
        return None
    if isinstance(obs, torch.Tensor):
        return fn(obs, *others)
    if isinstance(obs, Mapping):
        return {k: tree_map(fn, v, *(o[k] for o in others)) for k, v in obs.items()}
    return tuple(tree_map(fn, v, *(o[i] for o in others)) for i, v in enumerate(obs))


def leaves(obs: Obs) -> list[torch.Tensor]:
    """The tensors of ``obs``, in a fixed order."""
    out: list[torch.Tensor] = []
    tree_map(out.append, obs)
    return out


def assign(storage: Obs, index: Any, obs: Obs) -> None:
    """``storage[index] = obs`` for every tensor (in place)."""
    tree_map(lambda s, o: s.__setitem__(index, o), storage, obs)


def take(obs: Obs, index: Any) -> Obs:
    """``obs[index]`` of every tensor."""
    return tree_map(lambda t: t[index], obs)


def to(obs: Obs, device: torch.device | str) -> Obs:
    """Every tensor on ``device`` (no copy where it is there)."""
    return obs.to(device) if isinstance(obs, torch.Tensor) else tree_map(lambda t: t.to(device), obs)


def clone(obs: Obs) -> Obs:
    return obs.clone() if isinstance(obs, torch.Tensor) else tree_map(torch.Tensor.clone, obs)


def from_numpy(space: gym.Space, batch: Any, device: torch.device | str) -> Obs:
    """A gymnasium batch of ``space`` (as ``batch_space`` lays it out) as tensors on ``device``."""
    if isinstance(space, gym.spaces.Dict):
        return {k: from_numpy(s, batch[k], device) for k, s in space.spaces.items()
                if not is_text(s)}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(None if is_text(s) else from_numpy(s, batch[i], device)
                     for i, s in enumerate(space.spaces))
    array = np.asarray(batch)
    if isinstance(space, gym.spaces.Discrete):
        array = array.astype(np.int64) - int(space.start)
    elif isinstance(space, gym.spaces.MultiDiscrete):
        array = array.astype(np.int64) - np.asarray(space.start, dtype=np.int64)
    dtype = torch_dtype(space)
    return torch.as_tensor(np.ascontiguousarray(array), device=device).to(dtype)


def as_batch(space: gym.Space, value: Any) -> tuple[Any, int, bool]:
    """A user's observation (one env's, or a batch of them, in the env's own structure) as a numpy batch of
    ``space``, with the batch size and whether it was one env's; a ValueError names the expected and received
    structure (Text entries may be given or not: they are left out)."""
    found: list[tuple[int | None, str]] = []  # (batch size, or None for one env's) per entry

    def walk(sub: gym.Space, item: Any, where: str) -> Any:
        if isinstance(sub, gym.spaces.Dict):
            keys = [k for k, s in sub.spaces.items() if not is_text(s)]
            if not isinstance(item, Mapping) or not set(keys) <= set(item) or not set(item) <= set(sub.spaces):
                raise _structure_error(space, value, where)
            return {k: walk(sub.spaces[k], item[k], f"{where}[{k!r}]") for k in keys}
        if isinstance(sub, gym.spaces.Tuple):
            if not isinstance(item, (tuple, list)) or len(item) != len(sub.spaces):
                raise _structure_error(space, value, where)
            return tuple(None if is_text(s) else walk(s, item[i], f"{where}[{i}]")
                         for i, s in enumerate(sub.spaces))
        if is_text(sub):
            return None
        shape = () if isinstance(sub, gym.spaces.Discrete) else tuple(layout(sub)[0])
        array = np.asarray(item)
        if array.dtype == object:
            raise _structure_error(space, value, where)
        if array.shape == shape:
            found.append((None, where))
            return array[None]
        if array.ndim == len(shape) + 1 and array.shape[1:] == shape:
            found.append((array.shape[0], where))
            return array
        raise ValueError(f"observation{where} has shape {array.shape}; expected {shape} (one env) or "
                         f"(n_envs, {', '.join(map(str, shape))}) for {describe(sub)}")

    batch = walk(space, value, "")
    sizes = {n for n, _ in found}
    if len(sizes) != 1:
        parts = ", ".join(f"observation{w or ''}: {'one env' if n is None else f'{n} envs'}" for n, w in found)
        raise ValueError(f"the observation's entries disagree on the number of envs ({parts})")
    n = sizes.pop()
    return batch, 1 if n is None else n, n is None


def _structure_error(space: gym.Space, value: Any, where: str) -> ValueError:
    if isinstance(value, Mapping):
        got = f"a dict with keys {sorted(map(str, value))}"
    elif isinstance(value, (tuple, list)):
        got = f"a {type(value).__name__} of {len(value)}"
    else:
        got = f"{type(value).__name__} of shape {np.shape(value)}"
    at = f" (at observation{where})" if where else ""
    return ValueError(f"observation has the wrong structure{at}: expected {describe(space)}, got {got}")


def describe(space: gym.Space) -> str:
    """A short name of a space's structure, for errors: ``Box(2,) float32``, ``Dict(image: Box(7, 7, 3) uint8, ...)``."""
    if isinstance(space, gym.spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {describe(s)}" for k, s in space.spaces.items()) + ")"
    if isinstance(space, gym.spaces.Tuple):
        return "Tuple(" + ", ".join(describe(s) for s in space.spaces) + ")"
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    if is_text(space):
        return f"{type(space).__name__} (left out)"
    return str(space)


__all__ = ["LEAVES", "SUPPORTED", "Layout", "Obs", "as_batch", "assign", "check_observation_space", "clone",
           "describe", "from_numpy", "is_text", "layout", "leaves", "take", "text_note", "to", "torch_dtype",
           "tree_map", "unsupported_message", "zeros"]
