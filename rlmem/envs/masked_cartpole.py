"""MaskedCartPole: CartPole-v1 with the velocities hidden and noisy positions (batched in torch)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from rlmem.checks import check_positive_int
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.levels import make_levels


class MaskedCartPole(TorchVecEnv):
    """Balance a pole on a cart while seeing only the (noisy) cart position and pole angle.

    Gymnasium's CartPole-v1 dynamics, batched in torch, with the two velocities removed from
    the observation (like rl-zoo's CartPoleNoVel and POPGym's PositionOnlyCartPole): the agent
    must integrate at least two observations to recover the velocities, and with observation
    noise it must filter them over a longer history.

    Dynamics: gravity 9.8, cart mass 1.0, pole mass 0.1, pole half-length 0.5, force 10.0,
    time step 0.02 s, explicit Euler integration; the initial state ``[x, x_dot, theta,
    theta_dot]`` is uniform in ``[-0.05, 0.05]^4``. The state is kept in float32 in
    ``self.state`` (``[N, 4]``).

    ## Action space
    ``Discrete(2)``: 0 = push the cart left, 1 = push it right (force 10.0).

    ## Observation space
    ``Box(-inf, inf, (2,), float32)`` = ``[x, theta] + noise``, the cart position and the pole
    angle (radians) plus independent Gaussian noise of standard deviation ``noise_std``, drawn
    afresh at every step. The noise is unbounded, hence the infinite bounds.

    ## Rewards
    ``+1/max_steps`` for every step, the step on which the pole falls included (as in
    CartPole-v1). Balancing for the whole episode returns 1.0; a uniformly random policy
    lasts about 22 steps (returns about ``22/max_steps``).

    ## Episode end
    Terminated when the pole falls: ``|x| > 2.4`` or ``|theta| > 12`` degrees after the step.
    Truncated after ``max_steps`` steps (like gymnasium's ``TimeLimit``, a step that both
    drops the pole and reaches ``max_steps`` is both terminated and truncated).

    ## Levels
    Easy ``noise_std=0.0``; Medium ``noise_std=0.05``; Hard ``noise_std=0.1``
    (all with ``max_steps=500``; the ``LEVELS`` table, from which the classes
    ``MaskedCartPoleEasy`` etc. are made).
    """

    LEVELS = {"Easy": {"noise_std": 0.0}, "Medium": {"noise_std": 0.05}, "Hard": {"noise_std": 0.1}}
    #: State feedback gains on ``[x, x_dot, theta, theta_dot]`` of :meth:`oracle_actions` (push right when positive).
    oracle_gains = (1.0, 1.5, 18.0, 3.0)

    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masscart + masspole
    length = 0.5  # half the pole's length
    polemass_length = masspole * length
    force_mag = 10.0
    tau = 0.02
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        check_actions: bool = False,
        *,
        noise_std: float = 0.0,
        max_steps: int = 500,
    ) -> None:
        max_steps = check_positive_int("max_steps", max_steps)
        if (
            isinstance(noise_std, bool)
            or not isinstance(noise_std, (int, float, np.integer, np.floating))
            or not math.isfinite(noise_std)
            or noise_std < 0
        ):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        super().__init__(num_envs, device, seed, check_actions)
        self.noise_std = float(noise_std)
        self.max_steps = max_steps
        self.max_episode_steps = max_steps
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        #: The physical state ``[x, x_dot, theta, theta_dot]`` of every env, ``[N, 4]`` float32.
        self.state = torch.zeros(self.num_envs, 4, dtype=torch.float32, device=self.device)
        # Observation noise of the current step, drawn when the state changes so that
        # observing twice (final_obs, then obs) sees the same observation.
        self.obs_noise = torch.zeros(self.num_envs, 2, dtype=torch.float32, device=self.device)

    def chance_return(self) -> float:
        """A uniformly random policy keeps the pole up for about 22 steps (22.3 measured): ``22/max_steps``."""
        return 22 / self.max_steps

    def oracle_actions(self) -> torch.Tensor:
        """Bang-bang linear feedback on the full hidden state (velocities included), which keeps the
        pole up until the ``max_steps`` cap from the initial states the task draws."""
        return (self.state @ self.state.new_tensor(self.oracle_gains) > 0).to(torch.int64)

    def _draw_noise(self) -> torch.Tensor:
        noise = torch.randn(
            self.num_envs, 2, generator=self.generator, device=self.device, dtype=torch.float32
        )
        return noise * self.noise_std

    def _reset_where(self, mask: torch.Tensor) -> None:
        fresh = torch.rand(
            self.num_envs, 4, generator=self.generator, device=self.device, dtype=torch.float32
        )
        fresh = fresh * 0.1 - 0.05
        rows = mask.unsqueeze(1)
        self.state = torch.where(rows, fresh, self.state)
        self.obs_noise = torch.where(rows, self._draw_noise(), self.obs_noise)

    def _observe(self) -> torch.Tensor:
        return self.state[:, 0::2] + self.obs_noise

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, x_dot, theta, theta_dot = self.state.unbind(1)
        force = torch.where(actions == 1, self.force_mag, -self.force_mag).to(torch.float32)
        costheta = torch.cos(theta)
        sintheta = torch.sin(theta)
        temp = (force + self.polemass_length * theta_dot.square() * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta.square() / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        self.state = torch.stack((x, x_dot, theta, theta_dot), dim=1)
        self.obs_noise = self._draw_noise()
        terminated = (x.abs() > self.x_threshold) | (theta.abs() > self.theta_threshold_radians)
        truncated = self.elapsed_steps + 1 >= self.max_steps
        reward = torch.full(
            (self.num_envs,), 1.0 / self.max_steps, dtype=torch.float32, device=self.device
        )
        return reward, terminated, truncated


MaskedCartPoleEasy, MaskedCartPoleMedium, MaskedCartPoleHard = make_levels(MaskedCartPole)
