"""RecurrentPPO: PPO with a recurrent memory (any core of rlmem.memory), rollouts and updates on the env's device.

Reads top to bottom: the config, then the agent (rollout -> GAE -> update), then the
sb3-contrib-style API (``predict``, ``evaluate``, ``save`` / ``load``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlmem import distributed, observations
from rlmem.agents.acting import episode_sums, new_episode_sums, step_env
from rlmem.agents.base import RecurrentAgent
from rlmem.agents.buffers import RolloutBuffer, buffer_tensors
from rlmem.agents.config import MemoryConfig, check_memory_fields, memory_size_note
from rlmem.agents.graphs import (
    GraphedCall,
    resolve_unroll,
    tensor_attributes,
    uses_cuda_graphs,
)
from rlmem.agents.optim import continue_adam, make_adam, optimizer_tensors, set_learning_rate
from rlmem.agents.policy import RecurrentActorCritic
from rlmem.checks import check_positive_int
from rlmem.device import build_checked, check_fits
from rlmem.envs.base import TorchVecEnv
from rlmem.memory import UNROLL_MODES, State


@dataclass
class PPOConfig(MemoryConfig):
    """RecurrentPPO's hyperparameters; presets (agents/*.yaml) fill these fields."""

    separate_critic_memory: bool = False
    """Give the critic a memory core of its own instead of sharing the actor's."""
    prev_action_reward: bool = False
    """Feed the previous action and reward into the encoder with the observation."""
    image_channels_first: bool | None = None
    """Whether image observations are (C, H, W) (true) or (H, W, C) (false); None: detected from the shape
    (the smallest dimension is the channels), an error where that is ambiguous."""
    n_envs: int = 64
    """Envs stepped together."""
    n_steps: int = 64
    """Steps per env in one rollout (sequence length of the update)."""
    n_minibatches: int = 4
    """Minibatches per epoch; each holds n_envs / n_minibatches whole env sequences."""
    n_epochs: int = 4
    """Passes over each rollout."""
    learning_rate: float = 5e-3
    """Adam learning rate (the start value under a schedule)."""
    lr_schedule: str = "constant"
    """'constant' or 'linear' (to 0 at the end of each learn call)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.7
    """GAE lambda (0.7: low-variance advantages; tuned with learning_rate on the Easy tasks)."""
    clip_range: float = 0.2
    """PPO's policy ratio clip."""
    clip_range_vf: float | None = None
    """Clip of the value change per update (None: no value clipping)."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    target_kl: float | None = None
    """Stop an update's epochs early once the approximate KL exceeds this (None: never)."""
    unroll: str = "auto"
    """Memory unroll in the update: 'chunked' (one fused RNN call between episode starts), 'per_step'
    (one cell op per step; no host reads, so it can be recorded in a CUDA graph), or 'auto':
    per_step where the update runs from a CUDA graph, chunked elsewhere."""
    cuda_graphs: bool = True
    """On a CUDA device, record the rollout (and the update, with the per_step unroll) in CUDA graphs
    and replay them; ignored on the CPU, in data-parallel runs and for envs that are not capturable."""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Not a hyperparameter: free-form notes kept with the config (e.g. from a preset)."""

    def validate(self) -> None:
        """Raise a ValueError naming the first field that breaks a rule."""
        check_memory_fields(self, (*UNROLL_MODES, "auto"))
        for name in ("n_steps", "n_minibatches", "n_epochs"):
            check_positive_int(name, getattr(self, name))
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"lr_schedule must be 'constant' or 'linear', got {self.lr_schedule!r}")
        if self.n_envs % self.n_minibatches:
            raise ValueError(f"n_minibatches ({self.n_minibatches}) must divide n_envs ({self.n_envs}): "
                             "minibatches are whole env sequences")
        if not self.clip_range > 0:
            raise ValueError(f"clip_range must be > 0, got {self.clip_range!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


class RecurrentPPO(RecurrentAgent):
    """PPO with recurrent memory, on a batch of envs on one device.

    ``env`` may be an rlmem id, any gymnasium id, a callable returning a gymnasium env, a
    gymnasium ``VectorEnv`` (same-step autoreset) or a ``TorchVecEnv``. Hyperparameters are the
    fields of :class:`PPOConfig`; an unknown one is an error that names it.
    """

    algo = "RecurrentPPO"
    data_parallel = True
    memory_remedy = "lower n_envs or n_steps, or raise n_minibatches (the update holds one minibatch's activations)"

    def __init__(
        self,
        env: Any,
        memory: str = "lstm",
        n_envs: int = 64,
        n_steps: int = 64,
        device: str | torch.device = "auto",
        seed: int = 0,
        tensorboard_log: str | Path | None = None,
        verbose: int = 1,
        env_kwargs: dict[str, Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        self._setup(PPOConfig, {"memory": memory, "n_envs": n_envs, "n_steps": n_steps, **hyperparameters},
                    env, device, seed, tensorboard_log, verbose, env_kwargs)
        c = self.config
        #: Whether training replays CUDA graphs (``PPOConfig.cuda_graphs``); the update too where its unroll reads
        #: nothing back to the host (every core's sequence path but the cuDNN RNNs' chunked one).
        self.uses_cuda_graphs = uses_cuda_graphs(c.cuda_graphs, self.device, self.env)
        #: The unroll the update runs ('auto' resolved: the core's own sequence path, unless that reads the
        #: host where the update is to be recorded in a CUDA graph).
        self.unroll = resolve_unroll(c.unroll, c.memory, self.uses_cuda_graphs)
        self._check_rollout_fits()  # the sizes the user gave most directly, before the network's
        self.policy = build_checked(self._build_policy, "the policy", self.device, 4,
                                    "lower hidden_size, num_layers or encoder_sizes").to(self.device)
        self.optimizer = make_adam(self.policy.parameters(), c.learning_rate, 1e-5, self.device, self.uses_cuda_graphs)
        self._buffer: RolloutBuffer | None = None
        self._rollout_call: GraphedCall | None = None
        self._minibatch_call: GraphedCall | None = None

    def _build_policy(self) -> RecurrentActorCritic:
        c = self.config
        return RecurrentActorCritic(
            self.observation_space, self.action_space, memory=c.memory, hidden_size=c.hidden_size,
            num_layers=c.num_layers, encoder_sizes=c.encoder_sizes, separate_critic_memory=c.separate_critic_memory,
            memory_options=c.memory_options,
            prev_action_reward=c.prev_action_reward, unroll=self.unroll,
            image_channels_first=c.image_channels_first,
        )

    @property
    def graph_calls(self) -> dict[str, GraphedCall | None]:
        """The rollout's and the update's :class:`~rlmem.agents.graphs.GraphedCall` (None before the first
        iteration): whether each replays a CUDA graph (``active``), and how often it ran eagerly or replayed."""
        return {"rollout": self._rollout_call, "update": self._minibatch_call}

    # ------------------------------------------------------------------ training
    def _start(self) -> dict[str, Any]:
        obs, _ = self.env.reset(seed=self.env_seed)
        n = self.env.num_envs
        action_shape = self.action_space.shape
        action_dtype = self.action_dtype
        return {
            "obs": observations.clone(observations.to(obs, self.device)),  # updated in place by each rollout: never the env's own tensor
            "state": self.policy.initial_state(n, self.device),
            "episode_start": torch.ones(n, dtype=torch.bool, device=self.device),
            "prev_action": torch.zeros((n, *action_shape), dtype=action_dtype, device=self.device),
            "prev_reward": torch.zeros(n, device=self.device),
        }

    # learn() is RecurrentAgent's loop (logging, checkpoints, signals, nan guard) around collect and update.
    @property
    def steps_per_iteration(self) -> int:
        """Env-steps of one iteration: a rollout of n_steps in every env (of every rank, data-parallel)."""
        return self.env.num_envs * self.config.n_steps * distributed.world_size()

    def _rollout_sizes(self) -> tuple[int, int, Any, tuple[int, ...], torch.dtype, list[tuple[int, ...]]]:
        n = self.env.num_envs
        policy = getattr(self, "policy", None)
        if policy is None:  # sized before the policy is built: a copy on the meta device (no memory, no draws)
            with torch.device("meta"):
                policy = self._build_policy()
        state_shapes = [tuple(s.shape) for s in policy.initial_state(n, "meta")]  # nothing allocated
        return (self.config.n_steps, n, observations.layout(self.observation_space), self.action_space.shape,
                self.action_dtype, state_shapes)

    def _check_rollout_fits(self) -> None:
        """Fail before allocation (at construction and again before the first rollout) when the buffer can't fit."""
        c, sizes = self.config, self._rollout_sizes()
        total = RolloutBuffer.nbytes(*sizes)
        what, remedy = memory_size_note(c, 4 * sum(math.prod(shape) for shape in sizes[-1]), total,
                                        f"the rollout buffer of n_envs {self.env.num_envs:,} x n_steps {c.n_steps:,}",
                                        "lower n_envs or n_steps")
        check_fits(what, total, self.device, remedy)

    def _prepare_learning(self) -> None:
        if self._buffer is None:
            self._check_rollout_fits()  # the device may have filled up since construction
            self._buffer = RolloutBuffer(*self._rollout_sizes(), self.device)
            # The update's fixed places: the minibatch's env columns and the running loss sums.
            self._minibatch_envs = torch.zeros(self.env.num_envs // self.config.n_minibatches, dtype=torch.int64,
                                               device=self.device)
            self._loss_sums = torch.zeros(6, device=self.device)
            self._epoch_kl = torch.zeros((), device=self.device)
            self._rollout_call = self._minibatch_call = None

    def _schedule(self) -> dict[str, float]:
        """The learning rate of this iteration (a linear schedule follows the learn call's plan)."""
        c = self.config
        lr = c.learning_rate
        if c.lr_schedule == "linear":  # the learn call's progress, from its plan: the same after a resume
            done = (self.num_timesteps - self._plan["start"]) / (self._plan["end"] - self._plan["start"])
            lr = c.learning_rate * (1.0 - done)
            set_learning_rate(self.optimizer, lr)
        return {"charts/learning_rate": lr}

    def collect(self) -> torch.Tensor:
        """One rollout of ``n_steps`` in every env into the rollout buffer, advantages included.

        Returns [sum of returns, sum of lengths, episodes] on the CPU. With CUDA graphs the rollout
        runs eagerly once, then is recorded and replayed; the one host read per rollout is the
        episode statistics at the end.
        """
        buffer = self._buffer
        if self._rollout_call is None:
            self._rollout_call = GraphedCall(
                lambda: self._rollout(buffer), self._rollout_inputs, holders=[self.env],
                generators=[self.env.generator], warmup=1 if self.uses_cuda_graphs else float("inf"),
                name="rollout")
        episodes = self._rollout_call().cpu()
        self.num_timesteps += self.steps_per_iteration
        return episodes

    def _rollout_inputs(self) -> list[torch.Tensor]:
        """What a recorded rollout reads: the env's tensors, the agent's position, the buffer, the weights."""
        last = self._last
        return [*tensor_attributes(self.env).values(), *observations.leaves(last["obs"]), *last["state"],
                last["episode_start"],
                last["prev_action"], last["prev_reward"], *buffer_tensors(self._buffer), *self.policy.parameters()]

    @torch.no_grad()
    def _rollout(self, buffer: RolloutBuffer) -> torch.Tensor:
        """One rollout into ``buffer``, pure device work: the eager reference, and what a CUDA graph records.

        The agent's position (``self._last``) and the buffer are updated in place; returns the
        episode statistics on the device.
        """
        c, last, policy = self.config, self._last, self.policy
        for saved, s in zip(buffer.initial_state, last["state"], strict=True):
            saved.copy_(s)
        obs, state, episode_start = last["obs"], last["state"], last["episode_start"]
        prev_action, prev_reward = last["prev_action"], last["prev_reward"]
        episodes = new_episode_sums(self.device)
        for t in range(c.n_steps):
            action, log_prob, value, state = policy.act(obs, state, episode_start, prev_action, prev_reward)
            step = step_env(self.env, self.env_action(action), self.device)
            stored_reward = step.reward
            if self._needs_bootstrap(step.bootstrap):
                _, _, final_value, _ = policy.act(step.final_obs(), state, torch.zeros_like(step.done), action,
                                                  step.reward)
                stored_reward = step.reward + c.gamma * final_value * step.bootstrap
            observations.assign(buffer.obs, t, obs)
            buffer.actions[t], buffer.log_probs[t] = action, log_prob
            buffer.values[t], buffer.rewards[t], buffer.dones[t] = value, stored_reward, step.done
            buffer.episode_starts[t], buffer.prev_actions[t], buffer.prev_rewards[t] = (
                episode_start, prev_action, prev_reward)
            episodes += episode_sums(step)
            obs, episode_start, prev_action, prev_reward = step.obs, step.done, action, step.reward
        _, _, last_value, _ = policy.act(obs, state, episode_start, prev_action, prev_reward)
        buffer.compute_gae(last_value, c.gamma, c.gae_lambda)
        observations.tree_map(torch.Tensor.copy_, last, {  # the agent's position, in place
            "obs": obs, "state": state, "episode_start": episode_start, "prev_action": prev_action,
            "prev_reward": prev_reward})
        return episodes

    def update(self) -> dict[str, float]:
        """PPO epochs over minibatches of whole env columns; returns the mean losses (one host read).

        Each minibatch step is :meth:`_minibatch_step`; with CUDA graphs and the per_step unroll it
        runs eagerly twice, then is recorded and replayed with the next env columns copied in.
        """
        c, buffer = self.config, self._buffer
        if self._minibatch_call is None:
            graphed = self.uses_cuda_graphs and not self.policy.actor_core.sequence_reads_host
            self._minibatch_call = GraphedCall(self._minibatch_step, self._update_inputs,
                                               warmup=2 if graphed else float("inf"), name="update")
        n = buffer.n_envs
        self._loss_sums.zero_()
        count = epochs = 0
        for _ in range(c.n_epochs):
            epochs += 1
            self._epoch_kl.zero_()
            order = torch.randperm(n, generator=self.generator)
            if self.device.type == "cuda":  # from pinned memory the copy does not wait for the device
                order = order.pin_memory()
            order = order.to(self.device, non_blocking=True)
            for envs in order.chunk(c.n_minibatches):
                self._minibatch_envs.copy_(envs)
                self._minibatch_call()
                count += 1
            if c.target_kl is not None:  # one host read per epoch; every rank decides on the same mean
                distributed.all_reduce_(self._epoch_kl)
                if float(self._epoch_kl) / distributed.world_size() > c.target_kl:
                    break
        returns, values = buffer.returns.flatten(), buffer.values.flatten()
        var = returns.var()
        explained = torch.where(var > 0, 1 - (returns - values).var() / var, torch.nan)
        figures = torch.cat((self._loss_sums / count, explained.view(1))).tolist()
        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "loss", "explained_variance")
        return {**dict(zip(names, figures, strict=True)), "epochs": epochs}

    def _update_inputs(self) -> list[torch.Tensor]:
        """What a recorded minibatch step reads: the buffer, the weights, the optimizer's state, its fixed places."""
        return [*buffer_tensors(self._buffer), *self.policy.parameters(), *optimizer_tensors(self.optimizer),
                self._minibatch_envs, self._loss_sums, self._epoch_kl]

    def _minibatch_step(self) -> None:
        """One gradient step on the env columns in ``self._minibatch_envs``; the losses add to ``self._loss_sums``."""
        c, policy, buffer = self.config, self.policy, self._buffer
        mb = buffer.columns(self._minibatch_envs)
        dist, values = policy.unroll(mb["obs"], mb["initial_state"], mb["episode_starts"],
                                     mb["prev_actions"], mb["prev_rewards"])
        log_prob = dist.log_prob(mb["actions"])
        log_ratio = log_prob - mb["log_probs"]
        ratio = log_ratio.exp()
        advantages = mb["advantages"]
        if c.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = torch.max(-advantages * ratio,
                                -advantages * ratio.clamp(1 - c.clip_range, 1 + c.clip_range)).mean()
        if c.clip_range_vf is not None:
            clipped = mb["values"] + (values - mb["values"]).clamp(-c.clip_range_vf, c.clip_range_vf)
            value_loss = 0.5 * torch.max((values - mb["returns"]) ** 2, (clipped - mb["returns"]) ** 2).mean()
        else:
            value_loss = 0.5 * ((values - mb["returns"]) ** 2).mean()
        entropy = dist.entropy().mean()
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(policy.parameters())  # data-parallel: the mean over ranks
        nn.utils.clip_grad_norm_(policy.parameters(), c.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clipfrac = ((ratio - 1).abs() > c.clip_range).float().mean()
            self._loss_sums += torch.stack((policy_loss, value_loss, entropy, approx_kl, clipfrac, loss)).detach()
            self._epoch_kl += approx_kl / c.n_minibatches

    # ------------------------------------------------------------------ using a trained agent
    # predict() and evaluate() come from RecurrentAgent, built on these two.
    def initial_state(self, n: int) -> State:
        return self.policy.initial_state(n, self.device)

    def act(self, obs: torch.Tensor, state: State, episode_start: torch.Tensor, prev_action: torch.Tensor,
                  prev_reward: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, State]:
        action, _, _, state = self.policy.act(obs, state, episode_start, prev_action, prev_reward, deterministic)
        return action, state

    # ------------------------------------------------------------------ files
    # save(), load() and restore() come from RecurrentAgent; these hooks feed them.
    def _modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy}

    def _modules_state(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}

    def _load_modules_state(self, data: dict[str, Any]) -> None:
        self.policy.load_state_dict(data["policy"])
        self.optimizer.load_state_dict(data["optimizer"])
        continue_adam(self.optimizer, self.device, self.uses_cuda_graphs)  # this agent's Adam settings

__all__ = ["PPOConfig", "RecurrentPPO", "TorchVecEnv"]
