"""The pieces of RecurrentDQN's loss: R2D2's value rescaling, n-step double-Q targets over replayed
sequences, R2D2's priority mix, and the burn-in unroll (Kapturowski et al. 2019, "Recurrent Experience
Replay in Distributed Reinforcement Learning"). Pure device work: a CUDA graph records them as they are."""

from __future__ import annotations

import torch
from torch import nn

from rlmem import observations
from rlmem.memory import State

RESCALE_EPS = 1e-3


def value_rescale(x: torch.Tensor, eps: float = RESCALE_EPS) -> torch.Tensor:
    """R2D2's h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + eps * x


def inverse_value_rescale(x: torch.Tensor, eps: float = RESCALE_EPS) -> torch.Tensor:
    """The inverse of :func:`value_rescale`."""
    return torch.sign(x) * (((torch.sqrt(1 + 4 * eps * (x.abs() + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)


def n_step_targets(rewards: torch.Tensor, dones: torch.Tensor, bootstrap_q: torch.Tensor, gamma: float,
                   n_step: int, rescale: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """n-step targets for every step of ``[T, B]`` sequences, and the mask of steps that have one.

    ``bootstrap_q[t]`` is the (double-Q) value of the observation at step ``t``. Step ``t`` sums
    the rewards of steps ``t .. t + k - 1`` with ``k = min(n_step, T - 1 - t)``, stopping after an
    episode's last step, and adds ``gamma^k bootstrap_q[t + k]`` unless the episode ended first.
    The last step has no next observation in the sequence: it has a target (its reward) only
    where its episode ends there.
    """
    t_len = rewards.shape[0]
    device = rewards.device
    t = torch.arange(t_len, device=device)
    k = (t_len - 1 - t).clamp(max=n_step)  # [T] steps before the bootstrap
    m = k.clamp(min=1)  # rewards summed (the last step: its own)
    total = torch.zeros_like(rewards)
    alive = torch.ones_like(rewards)
    for j in range(n_step):
        use = (j < m).to(rewards.dtype).unsqueeze(1)  # [T, 1]
        idx = (t + j).clamp(max=t_len - 1)
        total = total + use * alive * gamma**j * rewards[idx]
        alive = alive * (1 - use * dones[idx].to(rewards.dtype))
    boot = bootstrap_q[t + k]
    if rescale:
        boot = inverse_value_rescale(boot)
    has_next = (k > 0).unsqueeze(1)
    target = total + alive * has_next * (gamma ** k.to(rewards.dtype)).unsqueeze(1) * boot
    if rescale:
        target = value_rescale(target)
    mask = has_next | (alive == 0)
    return target, mask


def sequence_priorities(td_error: torch.Tensor, mask: torch.Tensor, eta: float = 0.9) -> torch.Tensor:
    """R2D2's priority of each sequence: ``eta * max |td| + (1 - eta) * mean |td|`` over its loss steps."""
    abs_td = td_error.abs() * mask
    count = mask.sum(0).clamp_min(1)
    return eta * abs_td.max(0).values + (1 - eta) * abs_td.sum(0) / count


def burn_in_unroll(network: nn.Module, obs: torch.Tensor, state: State, episode_starts: torch.Tensor,
                   burn_in: int) -> torch.Tensor:
    """Q-values of the steps after the burn-in; the burn-in only warms the state (no gradient flows back)."""
    if burn_in > 0:
        with torch.no_grad():
            _, state = network(observations.take(obs, slice(None, burn_in)), state, episode_starts[:burn_in])
        state = tuple(s.detach() for s in state)
    return network.q_values(observations.take(obs, slice(burn_in, None)), state, episode_starts[burn_in:])


__all__ = ["RESCALE_EPS", "burn_in_unroll", "inverse_value_rescale", "n_step_targets", "sequence_priorities",
           "value_rescale"]
