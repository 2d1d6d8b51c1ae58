"""RecurrentPQN: Q-learning from the env batch itself, with Q(lambda) targets and layer norm; no replay, no target net.

Gallici et al. (2024), "Simplifying Deep Temporal Difference Learning" (PQN): many envs act
epsilon-greedily with the online network; each rollout's Q(lambda) targets are computed
backwards from the greedy Q-values the network gave while acting; then a few epochs of
minibatch regression to them, and the rollout is thrown away. Layer normalisation in the
Q-network is what keeps these bootstrapped targets stable without a target network. With a
recurrent core this is POPGym Arcade's value-based baseline and CleanRL's ``pqn_atari_envpool_lstm``.

Reads top to bottom: the config, then the agent (rollout -> Q(lambda) -> update), built like
RecurrentPPO (env columns as minibatches, the memory unrolled from the rollout's stored start
state, CUDA graphs of the rollout and the minibatch step). Choices, on purpose: the targets
come once per rollout from the acting Q-values (CleanRL's PQN-LSTM; purejaxql's RNN variant
recomputes them per minibatch), Adam rather than RAdam, and a truncated episode's last reward
gets ``gamma * max Q(final obs)`` at collection (as RecurrentDQN does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlmem import observations
from rlmem.agents.acting import episode_sums, new_episode_sums, step_env
from rlmem.agents.base import RecurrentAgent
from rlmem.agents.buffers import QRolloutBuffer, buffer_tensors
from rlmem.agents.config import MemoryConfig, check_memory_fields, memory_size_note
from rlmem.agents.graphs import (
    GraphedCall,
    resolve_unroll,
    tensor_attributes,
    uses_cuda_graphs,
)
from rlmem.agents.optim import continue_adam, make_adam, optimizer_tensors
from rlmem.agents.policy import RecurrentQNetwork
from rlmem.checks import check_int, check_positive_int
from rlmem.device import build_checked, check_fits
from rlmem.envs.base import TorchVecEnv
from rlmem.memory import UNROLL_MODES, State


@dataclass
class PQNConfig(MemoryConfig):
    """RecurrentPQN's hyperparameters; the preset agents/pqn-lstm.yaml states them all."""

    layer_norm: bool = True
    """LayerNorm in every encoder layer: PQN's stabiliser in place of a target network."""
    image_channels_first: bool | None = None
    """Whether image observations are (C, H, W) (true) or (H, W, C) (false); None: detected from the shape
    (the smallest dimension is the channels), an error where that is ambiguous."""
    n_envs: int = 64
    """Envs stepped together: the batch PQN learns from in place of a replay."""
    n_steps: int = 64
    """Steps per env in one rollout (the horizon of the lambda-returns and the update's sequence length)."""
    n_epochs: int = 4
    """Passes over each rollout."""
    n_minibatches: int = 4
    """Minibatches per epoch; each holds n_envs / n_minibatches whole env sequences."""
    learning_rate: float = 1e-3
    """Adam learning rate. At 3e-3 RepeatPreviousEasy was learned sooner (about 370k steps against 450k) but
    collapsed to chance within an update some 200k steps later (seeds 0 and 1); at 1e-3 it held to 2M."""
    gamma: float = 0.9
    """Discount factor. 0.9, not 0.99: with a reward every step (RepeatPrevious: +-1/48) Q at 0.99 sums
    ~50 rewards while the action gap is one step's; RepeatPreviousEasy then took 1.15M steps instead of
    0.45M (seed 1), and at a learning rate of 3e-3 it collapsed midway (0.58 at 290k steps, -0.4 at 400k)."""
    td_lambda: float = 0.65
    """Lambda of the Q(lambda) targets: 0 is one-step Q-learning, 1 the rollout's discounted return."""
    epsilon_start: float = 1.0
    """Epsilon of the first rollout."""
    epsilon_end: float = 0.05
    """Epsilon after the decay (also predict's epsilon when not deterministic)."""
    exploration_steps: int = 50_000
    """Env-steps over which epsilon decays linearly from epsilon_start to epsilon_end."""
    td_loss: str = "mse"
    """Regression to the targets: 'mse' (half squared error, as the paper) or 'huber' (smooth L1)."""
    max_grad_norm: float = 10.0
    """Gradient norm clip."""
    unroll: str = "auto"
    """Memory unroll in the update: 'chunked', 'per_step' (no host reads: recordable in a CUDA graph), or
    'auto': per_step where the update runs from a CUDA graph and the core's fast path reads the host."""
    cuda_graphs: bool = True
    """On a CUDA device, record the rollout (and the update where its unroll allows) in CUDA graphs and
    replay them; ignored on the CPU and for envs that are not capturable."""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Not a hyperparameter: free-form notes kept with the config (e.g. from a preset)."""

    def validate(self) -> None:
        """Raise a ValueError naming the first field that breaks a rule."""
        check_memory_fields(self, (*UNROLL_MODES, "auto"))
        for name in ("n_steps", "n_epochs", "n_minibatches"):
            check_positive_int(name, getattr(self, name))
        check_int("exploration_steps", self.exploration_steps, 0)
        if self.n_envs % self.n_minibatches:
            raise ValueError(f"n_minibatches ({self.n_minibatches}) must divide n_envs ({self.n_envs}): "
                             "minibatches are whole env sequences")
        if self.td_loss not in ("mse", "huber"):
            raise ValueError(f"td_loss must be 'mse' or 'huber', got {self.td_loss!r}")
        for name in ("gamma", "td_lambda", "epsilon_start", "epsilon_end"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm!r}")


def epsilon_greedy(q: torch.Tensor, epsilon: torch.Tensor | float) -> torch.Tensor:
    """Epsilon-greedy actions from Q-values ``[N, A]`` (no host read: recordable in a CUDA graph)."""
    greedy = q.argmax(-1)
    random = torch.randint(q.shape[-1], greedy.shape, device=q.device)
    return torch.where(torch.rand(greedy.shape, device=q.device) < epsilon, random, greedy)


class RecurrentPQN(RecurrentAgent):
    """Recurrent PQN (Gallici et al. 2024) on a batch of envs on one device; Discrete action spaces only.

    ``env`` may be an rlmem id, any gymnasium id, a callable returning a gymnasium env, a
    gymnasium ``VectorEnv`` (same-step autoreset) or a ``TorchVecEnv``. Hyperparameters are the
    fields of :class:`PQNConfig`; an unknown one is an error that names it.
    """

    algo = "RecurrentPQN"
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
        self._setup(PQNConfig, {"memory": memory, "n_envs": n_envs, "n_steps": n_steps, **hyperparameters},
                    env, device, seed, tensorboard_log, verbose, env_kwargs)
        self.n_actions = self._require_discrete_actions()
        c = self.config
        #: Whether training replays CUDA graphs (``PQNConfig.cuda_graphs``).
        self.uses_cuda_graphs = uses_cuda_graphs(c.cuda_graphs, self.device, self.env)
        #: The update's unroll ('auto' resolved as RecurrentPPO resolves it).
        self.unroll = resolve_unroll(c.unroll, c.memory, self.uses_cuda_graphs)
        self._check_rollout_fits()  # the sizes the user gave most directly, before the network's
        self.q_net = build_checked(self._build_network, "the Q-network", self.device, 4,
                                   "lower hidden_size, num_layers or encoder_sizes").to(self.device)
        self.optimizer = make_adam(self.q_net.parameters(), c.learning_rate, 1e-8, self.device, self.uses_cuda_graphs)
        self.num_updates = 0
        #: This rollout's epsilon, in a device tensor (a recorded rollout reads it; the schedule fills it in place).
        self._epsilon = torch.full((), c.epsilon_start, device=self.device)
        self._buffer: QRolloutBuffer | None = None
        self._rollout_call: GraphedCall | None = None
        self._minibatch_call: GraphedCall | None = None

    def _build_network(self) -> RecurrentQNetwork:
        c = self.config
        return RecurrentQNetwork(self.observation_space, self.n_actions, memory=c.memory, hidden_size=c.hidden_size,
                                 num_layers=c.num_layers, encoder_sizes=c.encoder_sizes, unroll=self.unroll,
                                 memory_options=c.memory_options, layer_norm=c.layer_norm,
                                 image_channels_first=c.image_channels_first)

    @property
    def graph_calls(self) -> dict[str, GraphedCall | None]:
        """The rollout's and the update's :class:`~rlmem.agents.graphs.GraphedCall` (None before the first iteration)."""
        return {"rollout": self._rollout_call, "update": self._minibatch_call}

    # ------------------------------------------------------------------ training
    @property
    def steps_per_iteration(self) -> int:
        """Env-steps of one iteration: a rollout of n_steps in every env."""
        return self.env.num_envs * self.config.n_steps

    def _start(self) -> dict[str, Any]:
        obs, _ = self.env.reset(seed=self.env_seed)
        n = self.env.num_envs
        return {"obs": observations.clone(observations.to(obs, self.device)),  # updated in place by each rollout: never the env's own tensor
                "state": self.q_net.initial_state(n, self.device),
                "episode_start": torch.ones(n, dtype=torch.bool, device=self.device)}

    def _rollout_sizes(self) -> tuple[int, int, Any, list[tuple[int, ...]]]:
        n = self.env.num_envs
        network = getattr(self, "q_net", None)
        if network is None:  # sized before the network is built: a copy on the meta device (no memory, no draws)
            with torch.device("meta"):
                network = self._build_network()
        state_shapes = [tuple(s.shape) for s in network.initial_state(n, "meta")]
        return self.config.n_steps, n, observations.layout(self.observation_space), state_shapes

    def _check_rollout_fits(self) -> None:
        """Fail before allocation (at construction and again before the first rollout) when the buffer can't fit."""
        c, sizes = self.config, self._rollout_sizes()
        total = QRolloutBuffer.nbytes(*sizes)
        what, remedy = memory_size_note(c, 4 * sum(math.prod(shape) for shape in sizes[-1]), total,
                                        f"the rollout buffer of n_envs {self.env.num_envs:,} x n_steps {c.n_steps:,}",
                                        "lower n_envs or n_steps")
        check_fits(what, total, self.device, remedy)

    def _prepare_learning(self) -> None:
        if self._buffer is None:
            self._check_rollout_fits()  # the device may have filled up since construction
            self._buffer = QRolloutBuffer(*self._rollout_sizes(), self.device)
            self._minibatch_envs = torch.zeros(self.env.num_envs // self.config.n_minibatches, dtype=torch.int64,
                                               device=self.device)
            self._loss_sums = torch.zeros(3, device=self.device)
            self._rollout_call = self._minibatch_call = None

    def epsilon(self) -> float:
        """The epsilon of the next rollout: linear in env-steps from epsilon_start to epsilon_end."""
        c = self.config
        fraction = min(1.0, self.num_timesteps / c.exploration_steps) if c.exploration_steps else 1.0
        return c.epsilon_start + fraction * (c.epsilon_end - c.epsilon_start)

    def _schedule(self) -> dict[str, float]:
        return {"charts/epsilon": self.epsilon()}

    def _charts(self) -> dict[str, float]:
        return {"charts/updates": float(self.num_updates)}

    def collect(self) -> torch.Tensor:
        """One rollout of ``n_steps`` in every env into the buffer, Q(lambda) targets included.

        Returns [sum of returns, sum of lengths, episodes] on the CPU. With CUDA graphs the rollout
        runs eagerly once, then is recorded and replayed; its one host read is the episode statistics.
        """
        self._epsilon.fill_(self.epsilon())
        if self._rollout_call is None:
            buffer = self._buffer
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
                *buffer_tensors(self._buffer), *self.q_net.parameters(), self._epsilon]

    @torch.no_grad()
    def _rollout(self, buffer: QRolloutBuffer) -> torch.Tensor:
        """One rollout into ``buffer``, pure device work: the eager reference, and what a CUDA graph records."""
        c, last, net = self.config, self._last, self.q_net
        for saved, s in zip(buffer.initial_state, last["state"], strict=True):
            saved.copy_(s)
        obs, state, episode_start = last["obs"], last["state"], last["episode_start"]
        episodes = new_episode_sums(self.device)
        for t in range(c.n_steps):
            q, state = net.step(obs, state, episode_start)
            action = epsilon_greedy(q, self._epsilon)
            step = step_env(self.env, self.env_action(action), self.device)
            stored_reward = step.reward
            if self._needs_bootstrap(step.bootstrap):
                final_q, _ = net.step(step.final_obs(), state, torch.zeros_like(step.done))
                stored_reward = step.reward + c.gamma * final_q.max(-1).values * step.bootstrap
            observations.assign(buffer.obs, t, obs)
            buffer.actions[t], buffer.rewards[t] = action, stored_reward
            buffer.dones[t], buffer.episode_starts[t], buffer.values[t] = step.done, episode_start, q.max(-1).values
            episodes += episode_sums(step)
            obs, episode_start = step.obs, step.done
        last_q, _ = net.step(obs, state, episode_start)
        buffer.compute_lambda_returns(last_q.max(-1).values, c.gamma, c.td_lambda)
        observations.tree_map(torch.Tensor.copy_, last, {"obs": obs, "state": state, "episode_start": episode_start})
        return episodes

    def update(self) -> dict[str, float]:
        """``n_epochs`` over minibatches of whole env columns; the mean loss, Q-value and |TD error| (one host read)."""
        c = self.config
        if self._minibatch_call is None:
            graphed = self.uses_cuda_graphs and not self.q_net.core.sequence_reads_host
            self._minibatch_call = GraphedCall(self._minibatch_step, self._update_inputs,
                                               warmup=2 if graphed else float("inf"), name="update")
        self._loss_sums.zero_()
        count = 0
        for _ in range(c.n_epochs):
            order = torch.randperm(self.env.num_envs, generator=self.generator)
            if self.device.type == "cuda":  # from pinned memory the copy does not wait for the device
                order = order.pin_memory()
            for envs in order.to(self.device, non_blocking=True).chunk(c.n_minibatches):
                self._minibatch_envs.copy_(envs)
                self._minibatch_call()
                count += 1
        self.num_updates += count
        return dict(zip(("loss", "q_values", "td_error"), (self._loss_sums / count).tolist(), strict=True))

    def _update_inputs(self) -> list[torch.Tensor]:
        """What a recorded minibatch step reads: the buffer, the weights, the optimizer's state, its fixed places."""
        return [*buffer_tensors(self._buffer), *self.q_net.parameters(), *optimizer_tensors(self.optimizer),
                self._minibatch_envs, self._loss_sums]

    def _minibatch_step(self) -> None:
        """One gradient step on the env columns in ``self._minibatch_envs``; the stats add to ``self._loss_sums``."""
        c, net = self.config, self.q_net
        mb = self._buffer.columns(self._minibatch_envs)
        q = net.q_values(mb["obs"], mb["initial_state"], mb["episode_starts"])
        q_taken = q.gather(-1, mb["actions"].unsqueeze(-1)).squeeze(-1)
        if c.td_loss == "huber":
            loss = nn.functional.smooth_l1_loss(q_taken, mb["returns"])
        else:
            loss = 0.5 * nn.functional.mse_loss(q_taken, mb["returns"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), c.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            td = (mb["returns"] - q_taken).abs().mean()
            self._loss_sums += torch.stack((loss.detach(), q_taken.mean(), td))

    # ------------------------------------------------------------------ using a trained agent
    # predict() and evaluate() come from RecurrentAgent, built on these two. Not deterministic means
    # epsilon_end-greedy. PQN takes no previous action or reward.
    def initial_state(self, n: int) -> State:
        return self.q_net.initial_state(n, self.device)

    def act(self, obs: torch.Tensor, state: State, episode_start: torch.Tensor, prev_action: torch.Tensor,
            prev_reward: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, State]:
        q, state = self.q_net.step(obs, state, episode_start)
        return (q.argmax(-1) if deterministic else epsilon_greedy(q, self.config.epsilon_end)), state

    # ------------------------------------------------------------------ files
    # save(), load() and restore() come from RecurrentAgent; these hooks feed them (no buffer: each rollout refills it).
    def _modules(self) -> dict[str, nn.Module]:
        return {"q_net": self.q_net}

    def _modules_state(self) -> dict[str, Any]:
        return {"q_net": self.q_net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "num_updates": self.num_updates}

    def _load_modules_state(self, data: dict[str, Any]) -> None:
        self.q_net.load_state_dict(data["q_net"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.num_updates = data["num_updates"]
        continue_adam(self.optimizer, self.device, self.uses_cuda_graphs)  # this agent's Adam settings

__all__ = ["PQNConfig", "RecurrentPQN", "TorchVecEnv"]
