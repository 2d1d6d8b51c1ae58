"""Encoders chosen from the observation space: what turns an observation into the features a memory core reads.

* a 1-D float Box: nothing here (:func:`make_obs_encoder` returns None); the agent's MLP reads it as it is,
  exactly as before encoders existed;
* an image Box (3-D, (H, W, C) or (C, H, W), uint8 or float): a CNN, uint8 scaled to [0, 1] on the device;
  Nature-DQN's stack (Mnih et al. 2015, as SB3's ``NatureCNN``) where both sides are at least 36 pixels,
  a smaller 3x3 stack otherwise (16, 32, 32 channels, strides 2 from 12 pixels up, 128 features: MiniGrid's
  7x7, rlmem's 16x16 pixel tasks; a CPU trains it about 3x faster than with 32, 64, 64 channels).
  Channel order is detected as SB3's ``is_image_space_channels_first`` does (the smallest dimension is the
  channels), or given by ``image_channels_first``; where the smallest dimension is not unique or is the
  middle one, it must be given;
* Discrete / MultiDiscrete: one-hot; MultiBinary and other Boxes: flattened to float;
* Dict / Tuple: one of the above per entry, outputs concatenated (SB3's ``CombinedExtractor`` idea); Text
  entries, and other spaces of strings (minigrid's ``MissionSpace``), are left out (one printed note).

The agent's MLP (``encoder_sizes``) runs on top of these features; memory cores read its output.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlmem import observations

NATURE_MIN_SIDE = 36
"""The smallest image side Nature-DQN's 8/4, 4/2, 3/1 convolutions fit."""


def is_image_space(space: gym.Space) -> bool:
    """A 3-D Box: uint8 within [0, 255] (SB3's rule), or any float Box (taken as an image already scaled)."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
        return False
    if space.dtype == np.uint8:
        return bool(np.all(space.low >= 0) and np.all(space.high <= 255))
    return np.dtype(space.dtype).kind == "f"


def channels_first(space: gym.spaces.Box, override: bool | None = None, where: str = "observation") -> bool:
    """Whether an image space is (C, H, W): ``override`` if given, else the smallest dimension, as SB3 detects it."""
    if override is not None:
        return bool(override)
    shape = tuple(space.shape)
    smallest = min(shape)
    if shape.count(smallest) == 1 and shape.index(smallest) in (0, 2):
        return shape.index(smallest) == 0
    raise ValueError(f"{where} image shape {shape} is ambiguous: its channels could be the first or the last "
                     "dimension; set image_channels_first: true (C, H, W) or false (H, W, C)")


class ImageEncoder(nn.Module):
    """A CNN over one image entry: ``[*lead, ...image]`` -> ``[*lead, features]``."""

    def __init__(self, space: gym.spaces.Box, first: bool, features: int | None = None) -> None:
        super().__init__()
        self.first, self.scale = first, space.dtype == np.uint8
        c, h, w = space.shape if first else (space.shape[2], space.shape[0], space.shape[1])
        self.image_shape = (c, h, w)
        if min(h, w) >= NATURE_MIN_SIDE:
            layers = [nn.Conv2d(c, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                      nn.Conv2d(64, 64, 3, 1), nn.ReLU()]
            features = features or 512
        else:
            stride = 2 if min(h, w) >= 12 else 1
            layers = [nn.Conv2d(c, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride, 1), nn.ReLU(),
                      nn.Conv2d(32, 32, 3, stride, 1), nn.ReLU()]
            features = features or 128
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.cnn(torch.zeros(1, c, h, w)).shape[1]  # on the default device (meta when sizing)
        self.linear = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.output_size = features
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(module.weight, math.sqrt(2))
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        x = x.float() / 255.0 if self.scale else x.float()
        if not self.first:
            x = x.permute(0, 3, 1, 2)
        return self.linear(self.cnn(x)).reshape(*lead, -1)


class OneHot(nn.Module):
    """Discrete / MultiDiscrete indices (from 0) -> concatenated one-hots."""

    def __init__(self, nvec: list[int], event_dims: int) -> None:
        super().__init__()
        self.nvec, self.event_dims = nvec, event_dims
        self.output_size = int(sum(nvec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[: x.dim() - self.event_dims]
        x = x.reshape(*lead, -1).long()
        parts = [nn.functional.one_hot(part, n) for part, n in zip(x.unbind(-1), self.nvec, strict=True)]
        return torch.cat(parts, dim=-1).to(torch.float32)


class Flatten(nn.Module):
    """Any other Box (or MultiBinary) -> its values as one float vector."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_dims, self.output_size = len(shape), int(np.prod(shape, dtype=np.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[: x.dim() - self.event_dims], -1).to(torch.float32)


def _leaf_encoder(space: gym.Space, image_channels_first: bool | None, where: str) -> nn.Module:
    if is_image_space(space):
        return ImageEncoder(space, channels_first(space, image_channels_first, where))
    if isinstance(space, gym.spaces.Discrete):
        return OneHot([int(space.n)], 0)
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec)
        return OneHot([int(n) for n in nvec.reshape(-1)], nvec.ndim)
    return Flatten(tuple(space.shape))


class CombinedEncoder(nn.Module):
    """One encoder per entry of a Dict / Tuple (Text left out), their outputs concatenated."""

    def __init__(self, space: gym.Space, image_channels_first: bool | None) -> None:
        super().__init__()
        observations.text_note(space)
        items = space.spaces.items() if isinstance(space, gym.spaces.Dict) else enumerate(space.spaces)
        self.keys: list[str | int] = []
        self.parts = nn.ModuleList()
        for key, sub in items:
            if observations.is_text(sub):
                continue
            self.keys.append(key)
            self.parts.append(make_leaf_or_combined(sub, image_channels_first, f"observation entry {key!r}"))
        self.output_size = sum(p.output_size for p in self.parts)

    def forward(self, obs: observations.Obs) -> torch.Tensor:
        return torch.cat([part(obs[key]) for key, part in zip(self.keys, self.parts, strict=True)], dim=-1)


def make_leaf_or_combined(space: gym.Space, image_channels_first: bool | None, where: str) -> nn.Module:
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        return CombinedEncoder(space, image_channels_first)
    return _leaf_encoder(space, image_channels_first, where)


def is_flat(space: gym.Space) -> bool:
    """A 1-D float32 Box: the fast path, read by the agent's MLP as it is."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and space.dtype == np.float32


def make_obs_encoder(space: gym.Space, image_channels_first: bool | None = None) -> nn.Module | None:
    """The encoder ``space`` needs before the agent's MLP (None for a 1-D float32 Box); refuses, in one line,
    a space without one (Graph, Sequence, OneOf, a Text alone)."""
    observations.check_observation_space(space)
    if is_flat(space):
        return None
    return make_leaf_or_combined(space, image_channels_first, "observation")


def obs_features(space: gym.Space, encoder: nn.Module | None) -> int:
    """The width of what the agent's MLP reads."""
    return int(space.shape[0]) if encoder is None else int(encoder.output_size)


__all__ = ["CombinedEncoder", "Flatten", "ImageEncoder", "OneHot", "channels_first", "is_flat", "is_image_space",
           "make_obs_encoder", "obs_features"]
