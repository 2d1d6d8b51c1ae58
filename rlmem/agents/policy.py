"""The recurrent actor-critic: encoder -> memory core -> heads. It knows nothing about PPO.

Inputs per step: the observation, and optionally the previous action and reward (zeroed at an
episode start), so the memory can also integrate what the agent did and got. The critic can
share the actor's memory (default) or keep one of its own.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from rlmem.agents.encoders import make_obs_encoder, obs_features
from rlmem.memory import MemoryCore, State, make_core
from rlmem.observations import Obs


def action_input_size(space: gym.Space) -> int:
    """Width of the encoded previous action: one-hots for discrete spaces, the vector for Box."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise ValueError(f"unsupported action space {space}; rlmem supports Discrete, MultiDiscrete and Box")


class MultiCategorical(Distribution):
    """Independent categoricals, one per MultiDiscrete dimension (log-probs and entropies add)."""

    arg_constraints: dict = {}

    def __init__(self, logits: torch.Tensor, nvec: list[int]) -> None:
        self.dists = [Categorical(logits=part, validate_args=False) for part in torch.split(logits, nvec, dim=-1)]
        super().__init__(batch_shape=logits.shape[:-1], validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return torch.stack([d.sample(sample_shape) for d in self.dists], dim=-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return sum(d.log_prob(v) for d, v in zip(self.dists, value.unbind(-1), strict=True))

    def entropy(self) -> torch.Tensor:
        return sum(d.entropy() for d in self.dists)

    @property
    def mode(self) -> torch.Tensor:
        return torch.stack([d.probs.argmax(-1) for d in self.dists], dim=-1)


def _mlp(sizes: list[int], layer_norm: bool = False) -> nn.Sequential:
    """Linear -> (LayerNorm) -> tanh per width in ``sizes[1:]``."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), *([nn.LayerNorm(fan_out)] if layer_norm else []), nn.Tanh()]
    return nn.Sequential(*layers)


class RecurrentActorCritic(nn.Module):
    """Observation encoder (:mod:`rlmem.agents.encoders`: none for a vector, a CNN for an image, one per entry
    of a Dict) -> encoder MLP -> memory core (any of rlmem.memory.CORES) -> actor head and critic head."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        memory: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        encoder_sizes: tuple[int, ...] = (128,),
        separate_critic_memory: bool = False,
        prev_action_reward: bool = False,
        unroll: str = "chunked",
        memory_options: dict[str, Any] | None = None,
        image_channels_first: bool | None = None,
    ) -> None:
        super().__init__()
        self.obs_encoder = make_obs_encoder(observation_space, image_channels_first)
        self.action_space = action_space
        self.prev_action_reward = prev_action_reward
        self.action_size = action_input_size(action_space)
        obs_size = obs_features(observation_space, self.obs_encoder)
        in_size = obs_size + (self.action_size + 1 if prev_action_reward else 0)
        self.encoder = _mlp([in_size, *encoder_sizes])
        feat = encoder_sizes[-1] if encoder_sizes else in_size
        self.actor_core: MemoryCore = make_core(memory, feat, hidden_size, num_layers, unroll, memory_options)
        self.critic_core: MemoryCore | None = (
            make_core(memory, feat, hidden_size, num_layers, unroll, memory_options) if separate_critic_memory else None
        )
        if isinstance(action_space, gym.spaces.Discrete):
            n_out = int(action_space.n)
        elif isinstance(action_space, gym.spaces.MultiDiscrete):
            self.nvec = [int(n) for n in np.asarray(action_space.nvec).reshape(-1)]
            n_out = sum(self.nvec)
        else:
            n_out = self.action_size
            self.log_std = nn.Parameter(torch.zeros(n_out))
        self.actor_head = nn.Linear(self.actor_core.output_size, n_out)
        self.critic_head = nn.Linear(self.actor_core.output_size, 1)
        # The encoder and the heads; a memory core keeps its own initialisation (an LRU's ring, attention's scale).
        for module in [*self.encoder.modules(), self.actor_head, self.critic_head]:
            if isinstance(module, nn.Linear):
                nn.init.orthogonal_(module.weight, np.sqrt(2))
                nn.init.zeros_(module.bias)
        nn.init.orthogonal_(self.actor_head.weight, 0.01)
        nn.init.orthogonal_(self.critic_head.weight, 1.0)

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero memory for ``batch_size`` envs: the actor's tensors, then the critic's (if separate)."""
        state = self.actor_core.initial_state(batch_size, device)
        if self.critic_core is not None:
            state = state + self.critic_core.initial_state(batch_size, device)
        return state

    def _split(self, state: State) -> tuple[State, State]:
        n = self.actor_core.state_size
        return state[:n], state[n:]

    # ------------------------------------------------------------------ pieces
    def encode_inputs(
        self, obs: Obs, prev_action: torch.Tensor | None, prev_reward: torch.Tensor | None,
        episode_start: torch.Tensor,
    ) -> torch.Tensor:
        """Encoder input features ``[..., F]``; previous action and reward are zeroed at a start."""
        x = obs if self.obs_encoder is None else self.obs_encoder(obs)
        if self.prev_action_reward:
            keep = (~episode_start).to(x.dtype).unsqueeze(-1)
            x = torch.cat((x, self._encode_action(prev_action) * keep, prev_reward.unsqueeze(-1) * keep), dim=-1)
        return self.encoder(x)

    def _encode_action(self, action: torch.Tensor) -> torch.Tensor:
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return torch.nn.functional.one_hot(action.long(), int(space.n)).to(torch.float32)
        if isinstance(space, gym.spaces.MultiDiscrete):
            parts = [torch.nn.functional.one_hot(a.long(), n) for a, n in zip(action.unbind(-1), self.nvec, strict=True)]
            return torch.cat(parts, dim=-1).to(torch.float32)
        return action.to(torch.float32).reshape(*action.shape[: action.dim() - len(space.shape)], -1)

    def distribution(self, features: torch.Tensor) -> Distribution:
        """The action distribution for memory outputs ``features`` ``[..., H]``."""
        out = self.actor_head(features)
        if isinstance(self.action_space, gym.spaces.Discrete):
            return Categorical(logits=out, validate_args=False)
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            return MultiCategorical(out, self.nvec)
        return Independent(Normal(out, self.log_std.exp().expand_as(out), validate_args=False), 1, validate_args=False)

    # ------------------------------------------------------------------ forward passes
    def act(
        self, obs: torch.Tensor, state: State, episode_start: torch.Tensor,
        prev_action: torch.Tensor | None = None, prev_reward: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, State]:
        """One step for a batch of envs ``obs`` ``[N, D]`` -> (action, its log-prob ``[N]``, value ``[N]``, state).

        Discrete actions are sampled by the Gumbel-max trick straight from the logits: the same
        distribution as ``Categorical``, without building a distribution object every step.
        """
        x = self.encode_inputs(obs, prev_action, prev_reward, episode_start)
        actor_state, critic_state = self._split(state)
        features, actor_state = self.actor_core.step(x, actor_state, episode_start)
        if self.critic_core is not None:
            critic_features, critic_state = self.critic_core.step(x, critic_state, episode_start)
        else:
            critic_features = features
        value = self.critic_head(critic_features).squeeze(-1)
        if isinstance(self.action_space, gym.spaces.Discrete):
            logits = self.actor_head(features)
            if deterministic:
                action = logits.argmax(-1)
            else:
                action = (logits - torch.log(-torch.log(torch.rand_like(logits)))).argmax(-1)
            log_prob = torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        else:
            dist = self.distribution(features)
            action = _mode(dist) if deterministic else dist.sample()
            log_prob = dist.log_prob(action)
        return action, log_prob, value, actor_state + critic_state

    def unroll(
        self, obs: torch.Tensor, state: State, episode_start: torch.Tensor,
        prev_action: torch.Tensor | None = None, prev_reward: torch.Tensor | None = None,
    ) -> tuple[Distribution, torch.Tensor]:
        """A whole sequence ``[T, N, D]`` from ``state`` -> (distributions ``[T, N]``, values ``[T, N]``)."""
        x = self.encode_inputs(obs, prev_action, prev_reward, episode_start)
        actor_state, critic_state = self._split(state)
        features = self.actor_core.outputs(x, actor_state, episode_start)
        critic_features = self.critic_core.outputs(x, critic_state, episode_start) if self.critic_core else features
        return self.distribution(features), self.critic_head(critic_features).squeeze(-1)


def _mode(dist: Distribution) -> torch.Tensor:
    """The most likely action (the mean for a Gaussian)."""
    if isinstance(dist, Independent):
        return dist.base_dist.mean
    return dist.mode


class RecurrentQNetwork(nn.Module):
    """Observation encoder -> encoder MLP -> memory core (any of rlmem.memory.CORES) -> Q head (optionally
    dueling: V + A - mean A).

    Discrete actions only: one Q-value per action. ``layer_norm`` normalises every encoder layer:
    what keeps PQN's bootstrapped targets stable without a target network (Gallici et al. 2024;
    as in purejaxql's recurrent PQN, the memory's output goes to the head as it is: normalising it
    too kept RepeatPreviousEasy near 0.1 where the encoder alone reached 1.0). Off, the network is
    exactly RecurrentDQN's.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        n_actions: int,
        memory: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        encoder_sizes: tuple[int, ...] = (64,),
        dueling: bool = False,
        unroll: str = "chunked",
        memory_options: dict[str, Any] | None = None,
        layer_norm: bool = False,
        image_channels_first: bool | None = None,
    ) -> None:
        super().__init__()
        self.obs_encoder = make_obs_encoder(observation_space, image_channels_first)
        in_size = obs_features(observation_space, self.obs_encoder)
        self.encoder = _mlp([in_size, *encoder_sizes], layer_norm)
        feat = encoder_sizes[-1] if encoder_sizes else in_size
        self.core: MemoryCore = make_core(memory, feat, hidden_size, num_layers, unroll, memory_options)
        self.dueling = dueling
        self.q_head = nn.Linear(self.core.output_size, n_actions)
        self.value_head = nn.Linear(self.core.output_size, 1) if dueling else None

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero memory for ``batch_size`` envs."""
        return self.core.initial_state(batch_size, device)

    def _q(self, features: torch.Tensor) -> torch.Tensor:
        q = self.q_head(features)
        if self.value_head is not None:
            q = self.value_head(features) + q - q.mean(-1, keepdim=True)
        return q

    def _encode(self, obs: Obs) -> torch.Tensor:
        return self.encoder(obs if self.obs_encoder is None else self.obs_encoder(obs))

    def step(self, obs: Obs, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One step for a batch ``obs`` ``[N, ...]`` -> (Q-values ``[N, A]``, state)."""
        features, state = self.core.step(self._encode(obs), state, episode_start)
        return self._q(features), state

    def forward(self, obs: Obs, state: State, episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """A sequence ``[T, N, ...]`` from ``state`` -> (Q-values ``[T, N, A]``, the state after it)."""
        features, state = self.core(self._encode(obs), state, episode_start)
        return self._q(features), state

    def q_values(self, obs: Obs, state: State, episode_start: torch.Tensor) -> torch.Tensor:
        """:meth:`forward`'s Q-values ``[T, N, A]`` without the state after the sequence (the core may
        then unroll faster: :meth:`~rlmem.memory.MemoryCore.outputs`)."""
        return self._q(self.core.outputs(self._encode(obs), state, episode_start))
