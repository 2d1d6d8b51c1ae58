"""PixelRepeatPrevious: RepeatPrevious seen through pixels, rendered in tensors on the env's device.

What the agent must remember is RepeatPrevious's; what it sees is a noisy ``size x size`` uint8 image of a
glyph per symbol, so a CNN has to read the symbol before a memory can hold it: the CNN + memory path at the
env batch's speed (no numpy, no host read in ``step``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem.checks import check_int, is_int
from rlmem.envs.levels import make_levels
from rlmem.envs.repeat_previous import RepeatPrevious

#: 4x4 bitmaps of the glyphs (one per symbol, up to 8), scaled up to the image by whole pixels.
GLYPHS = (
    "1111 1001 1001 1111",  # a ring
    "0110 0110 0110 0110",  # a vertical bar
    "0000 1111 1111 0000",  # a horizontal bar
    "1001 0110 0110 1001",  # a cross
    "1000 1100 1110 1111",  # a triangle
    "1010 0101 1010 0101",  # a checker
    "1100 1100 0011 0011",  # two squares
    "0001 0011 0111 1111",  # the other triangle
)


class PixelRepeatPrevious(RepeatPrevious):
    """Name the symbol that was shown ``k`` steps earlier, each symbol shown as a noisy glyph image.

    ## Action space
    ``Discrete(num_symbols)``: the symbol the agent names.

    ## Observation space
    ``Box(0, 255, (1, size, size), uint8)`` (channels first): the glyph of this step's symbol (drawn
    uniformly at random each step; :data:`GLYPHS`, 4x4 bitmaps scaled up ``size / 4`` times) at
    ``255 - u``, the background at ``u``, ``u`` uniform in ``0..noise`` per pixel and step (an episode's
    last image and the next episode's first, shown in the same step, share the step's ``u``).

    ## Rewards
    As RepeatPrevious: at step ``t >= k``, ``+1/(length - k)`` if the action is the symbol shown at
    ``t - k``, ``-1/(length - k)`` otherwise; steps before ``k`` give 0. A perfect episode returns 1.0; a
    uniformly random policy returns ``2/num_symbols - 1`` in expectation (-0.5 with 4 symbols).

    ## Episode end
    Terminated after ``length`` steps. Never truncated.

    ## Levels
    Easy ``k=2, length=52``; Medium ``k=16, length=104``; Hard ``k=64, length=156`` (16x16 images,
    noise 64 at every level).
    """

    LEVELS = {"Easy": {"k": 2, "length": 52}, "Medium": {"k": 16, "length": 104}, "Hard": {"k": 64, "length": 156}}

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        *,
        k: int = 2,
        length: int = 52,
        num_symbols: int = 4,
        size: int = 16,
        noise: int = 64,
    ) -> None:
        if not is_int(num_symbols) or not 2 <= num_symbols <= len(GLYPHS):
            raise ValueError(f"num_symbols must be an integer in 2..{len(GLYPHS)} (one glyph each), "
                             f"got {num_symbols!r}")
        size = check_int("size", size, 4)
        if size % 4:
            raise ValueError(f"size must be a multiple of 4 (the glyphs are 4x4, scaled by whole pixels), got {size!r}")
        if not is_int(noise) or not 0 <= noise <= 127:
            raise ValueError(f"noise must be an integer in 0..127 (a glyph pixel stays brighter than the "
                             f"background), got {noise!r}")
        super().__init__(num_envs, device, seed, check_actions, k=k, length=length, num_symbols=num_symbols)
        self.size, self.noise = size, int(noise)
        self.single_observation_space = gym.spaces.Box(0, 255, (1, size, size), np.uint8)
        bitmaps = torch.tensor([[int(c) for c in glyph.replace(" ", "")] for glyph in GLYPHS[:num_symbols]],
                               dtype=torch.bool).reshape(-1, 4, 4)
        scale = size // 4
        #: The glyph masks ``[num_symbols, size, size]`` (constant; on the device).
        self.glyphs = bitmaps.repeat_interleave(scale, 1).repeat_interleave(scale, 2).to(self.device)
        #: This step's pixel noise ``[N, size, size]``, drawn once per step (the ended episode's last image and
        #: the next one's first share it): one draw where rendering twice would take two.
        self.pixel_noise = torch.zeros((self.num_envs, size, size), dtype=torch.uint8, device=self.device)

    def _draw_noise(self) -> None:
        self.pixel_noise = torch.randint(0, self.noise + 1, self.pixel_noise.shape, generator=self.generator,
                                         device=self.device, dtype=torch.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict]:
        if seed is not None:
            self._seed(seed)
        self._draw_noise()
        return super().reset(options=options)

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = super()._transition(actions)
        self._draw_noise()
        return out

    def _observe(self) -> torch.Tensor:
        mask = self.glyphs.index_select(0, self._symbols(self._column()))  # [N, size, size]
        return torch.where(mask, 255 - self.pixel_noise, self.pixel_noise).unsqueeze(1)

    def lag_kwargs(self, lag: int) -> dict[str, Any]:
        """``k=lag`` with this env's ``length - k``, symbols, image size and noise."""
        return {**super().lag_kwargs(lag), "size": self.size, "noise": self.noise}

    def probe_labels(self, obs: torch.Tensor, episode_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The symbol each image shows (the glyph its bright pixels match; exact for noise <= 127)."""
        bright = obs.reshape(-1, self.size * self.size).to(self.glyphs.device) > 127.5
        matches = (bright.unsqueeze(1) == self.glyphs.reshape(1, -1, self.size * self.size)).sum(-1)
        labels = matches.argmax(-1).reshape(episode_step.shape).to(episode_step.device)
        return labels, torch.ones_like(episode_step == 0), "the symbol the glyph shows"


PixelRepeatPreviousEasy, PixelRepeatPreviousMedium, PixelRepeatPreviousHard = make_levels(PixelRepeatPrevious)
