"""RecurrentDQN (R2D2-style): sequence replay on the device, stored state and burn-in, n-step double Q.

Reads top to bottom: the agent (act -> sequence replay -> learner), then the sb3-contrib-style
API (``predict``, ``evaluate``, ``save`` / ``load``) it shares with RecurrentPPO. Its
hyperparameters are :class:`~rlmem.agents.dqn_config.DQNConfig`; the pieces of its loss (value
rescaling, n-step double-Q targets, R2D2's priority mix, the burn-in unroll) are in
:mod:`rlmem.agents.dqn_targets`.

On a CUDA device (``cuda_graphs``) the acting steps of an iteration and each learner step are
recorded in CUDA graphs and replayed (:class:`~rlmem.agents.graphs.GraphedCall`): the
functions they record (:meth:`RecurrentDQN._act` and :meth:`RecurrentDQN._learn_on_slots`) are
pure device work, and run as they are (eagerly) on the CPU, which makes them the reference the
CUDA tests compare replays with. What the host decides stays outside: the replay's counters
(moved after the acting steps), the sampled slots (copied into a fixed device tensor before a
learner step), the epsilon schedule (filled into a device tensor) and the target network's copy.

Kapturowski et al. (2019), "Recurrent Experience Replay in Distributed Reinforcement Learning".
Differences from the paper, on purpose: one process (the N envs act with the latest network, no
actor lag), and a truncated episode's last reward has ``gamma * max Q(final obs)`` added at
collection time (as RecurrentPPO does with V), so the replay need not store final observations.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlmem import observations
from rlmem.agents.acting import episode_sums, new_episode_sums, step_env
from rlmem.agents.base import RecurrentAgent
from rlmem.agents.buffers import SequenceReplay, buffer_tensors
from rlmem.agents.config import memory_size_note
from rlmem.agents.dqn_config import DQNConfig
from rlmem.agents.dqn_targets import burn_in_unroll, n_step_targets, sequence_priorities
from rlmem.agents.graphs import (
    GraphedCall,
    resolve_unroll,
    tensor_attributes,
    uses_cuda_graphs,
)
from rlmem.agents.optim import continue_adam, make_adam, optimizer_tensors
from rlmem.agents.policy import RecurrentQNetwork
from rlmem.device import build_checked, check_fits
from rlmem.envs.base import TorchVecEnv
from rlmem.memory import State


# ---------------------------------------------------------------------- the agent
class RecurrentDQN(RecurrentAgent):
    """R2D2-style recurrent DQN, on a batch of envs on one device.

    ``env`` may be an rlmem id, any gymnasium id, a callable returning a gymnasium env, a
    gymnasium ``VectorEnv`` (same-step autoreset) or a ``TorchVecEnv``; its action space must be
    ``Discrete`` (MultiDiscrete and Box are refused). Hyperparameters are the fields of
    :class:`DQNConfig`; an unknown one is an error that names it.
    """

    algo = "RecurrentDQN"
    memory_remedy = "lower batch_size, seq_len, buffer_size or n_envs"

    def __init__(
        self,
        env: Any,
        memory: str = "lstm",
        n_envs: int = 64,
        device: str | torch.device = "auto",
        seed: int = 0,
        tensorboard_log: str | Path | None = None,
        verbose: int = 1,
        env_kwargs: dict[str, Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        self._setup(DQNConfig, {"memory": memory, "n_envs": n_envs, **hyperparameters},
                    env, device, seed, tensorboard_log, verbose, env_kwargs)
        self.n_actions = self._require_discrete_actions()
        c = self.config
        #: Whether training replays CUDA graphs (``DQNConfig.cuda_graphs``); the learner too where its unroll
        #: reads nothing back to the host.
        self.uses_cuda_graphs = uses_cuda_graphs(c.cuda_graphs, self.device, self.env)
        #: The learner's unroll ('auto' resolved as RecurrentPPO resolves it).
        self.unroll = resolve_unroll(c.unroll, c.memory, self.uses_cuda_graphs)
        self.q_net = build_checked(self._build_network, "the Q-network", self.device, 5,  # and its target
                                   "lower hidden_size, num_layers or encoder_sizes").to(self.device)
        self.target_net = self._build_network().to(self.device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        self.optimizer = make_adam(self.q_net.parameters(), c.learning_rate, c.adam_eps, self.device,
                                   self.uses_cuda_graphs)
        self.num_updates = 0
        self._check_replay_fits()
        self.replay: SequenceReplay | None = None  # allocated by the first learn call
        # The fixed places the recorded calls read and write (filled in place between replays).
        n, b = self.env.num_envs, c.batch_size
        self._epsilon = torch.zeros(n, device=self.device)  #: this iteration's epsilon per env
        self._slots = torch.zeros(b, dtype=torch.int64, device=self.device)  #: the sampled replay slots
        self._weights = torch.ones(b, device=self.device)  #: their importance-sampling weights
        self._learner_sums = torch.zeros(3, device=self.device)  #: loss, mean Q, mean |TD| summed over steps
        self._acting_call: GraphedCall | None = None
        self._learner_call: GraphedCall | None = None

    def _build_network(self) -> RecurrentQNetwork:
        c = self.config
        return RecurrentQNetwork(self.observation_space, self.n_actions, memory=c.memory, hidden_size=c.hidden_size,
                                 num_layers=c.num_layers, encoder_sizes=c.encoder_sizes, dueling=c.dueling,
                                 unroll=self.unroll, memory_options=c.memory_options,
                                 image_channels_first=c.image_channels_first)

    @property
    def graph_calls(self) -> dict[str, GraphedCall | None]:
        """The acting steps' and the learner step's :class:`~rlmem.agents.graphs.GraphedCall` (None before the
        first iteration): whether each replays a CUDA graph (``active``), how often it ran eagerly or replayed."""
        return {"acting": self._acting_call, "learner": self._learner_call}

    @property
    def steps_per_iteration(self) -> int:
        """Env-steps of one iteration: every env advances until the next sequence is stored."""
        return self.env.num_envs * (self.config.seq_len - self.config.overlap)

    # ------------------------------------------------------------------ replay
    def _replay_sizes(self) -> tuple[int, int, int, int, Any, list[tuple[int, ...]]]:
        """SequenceReplay's sizes: capacity, seq_len, overlap, n_envs, obs size, memory state shapes."""
        c = self.config
        shapes = [tuple(s.shape) for s in self.q_net.initial_state(1, "cpu")]
        shapes = [(s[0], *s[2:]) for s in shapes]
        return (self._capacity(), c.seq_len, c.overlap, self.env.num_envs, observations.layout(self.observation_space),
                shapes)

    def replay_nbytes(self) -> int:
        """Bytes the replay will take on the device (computed before it is allocated)."""
        return SequenceReplay.nbytes(*self._replay_sizes())

    def _capacity(self) -> int:
        """Sequence slots: buffer_size transitions, rounded down to whole writes of n_envs sequences."""
        c = self.config
        return max(1, c.buffer_size // c.seq_len // self.env.num_envs) * self.env.num_envs

    def _check_replay_fits(self) -> None:
        """Fail early (at construction, long before allocation) when the replay cannot fit on the device."""
        c, sizes = self.config, self._replay_sizes()
        slots = sizes[0] + c.seq_len * self.env.num_envs  # the ring's start states, and the actors' windows
        state = 4 * slots * sum(math.prod(shape) for shape in sizes[-1])
        what, remedy = memory_size_note(c, state, self.replay_nbytes(),
                                        f"replay of buffer_size {c.buffer_size:,} transitions", "lower buffer_size")
        check_fits(what, self.replay_nbytes(), self.device, remedy)

    def _make_replay(self) -> SequenceReplay:
        c = self.config
        self._check_replay_fits()  # the device may have filled up since construction
        if self.verbose > 0:
            print(f"replay: {self._capacity():,} sequences of {c.seq_len} steps ({c.buffer_size:,} transitions): "
                  f"{self.replay_nbytes() / 2**20:,.1f} MiB on {self.device}", flush=True)
        return SequenceReplay(*self._replay_sizes(), self.device, c.store_state)

    # ------------------------------------------------------------------ acting
    def epsilon(self) -> torch.Tensor:
        """This step's epsilon of each env ``[N]``."""
        c, n = self.config, self.env.num_envs
        if c.epsilon_schedule == "apex":
            i = torch.arange(n, device=self.device, dtype=torch.float32)
            return c.apex_epsilon ** (1 + c.apex_alpha * i / max(n - 1, 1))
        fraction = min(1.0, self.num_timesteps / c.exploration_steps) if c.exploration_steps else 1.0
        value = c.epsilon_start + fraction * (c.epsilon_end - c.epsilon_start)
        return torch.full((n,), value, device=self.device)

    def _epsilon_greedy(self, q: torch.Tensor, epsilon: torch.Tensor | float) -> torch.Tensor:
        """Epsilon-greedy actions from Q-values ``[N, A]`` (no host sync)."""
        greedy = q.argmax(-1)
        random = torch.randint(self.n_actions, greedy.shape, device=q.device)
        explore = torch.rand(greedy.shape, device=q.device) < epsilon
        return torch.where(explore, random, greedy)

    def _start(self) -> dict[str, Any]:
        if self.replay is not None:
            self.replay.position = 0  # a reset cuts the episodes in flight: drop the partial windows
        obs, _ = self.env.reset(seed=self.env_seed)
        n = self.env.num_envs
        # obs, state and episode_start are updated in place by each iteration's acting: never the env's own tensors.
        return {"obs": observations.clone(observations.to(obs, self.device)),
                "state": self.q_net.initial_state(n, self.device),
                "episode_start": torch.ones(n, dtype=torch.bool, device=self.device)}

    # ------------------------------------------------------------------ training
    # learn() is RecurrentAgent's loop (logging, checkpoints, signals, nan guard) around collect and update.
    def _prepare_learning(self) -> None:
        if self.replay is None:
            self.replay = self._make_replay()

    def collect(self) -> torch.Tensor:
        """Every env steps ``seq_len - overlap`` times into the replay (one new sequence each).

        Returns [sum of returns, sum of lengths, episodes] on the CPU. With CUDA graphs the steps
        run eagerly twice, then are recorded and replayed (recorded again where the replay's window
        position differs from the recording's: the first iterations after a reset).
        """
        steps = self.config.seq_len - self.config.overlap
        if self._acting_call is None:  # two eager warm-ups: the second also runs the ring write and the slide
            self._acting_call = GraphedCall(
                lambda: self._act(steps), self._acting_inputs, holders=[self.env], generators=[self.env.generator],
                warmup=2 if self.uses_cuda_graphs else float("inf"), name="acting steps",
                key=lambda: self.replay.position)
        episodes = self._counted_acting(self._acting_call, steps)
        self.num_timesteps += self.steps_per_iteration
        return episodes

    def collect_steps(self, steps: int) -> torch.Tensor:
        """Step every env ``steps`` times into the replay, eagerly (``num_timesteps`` is left as it is:
        :meth:`collect` counts); return [sum of returns, sum of lengths, episodes] on the CPU."""
        return self._counted_acting(lambda: self._act(steps), steps)

    def _counted_acting(self, act: Any, steps: int) -> torch.Tensor:
        """Run ``act`` (``steps`` acting steps, eager or replayed), then move the replay's host counters."""
        self._epsilon.copy_(self.epsilon())
        try:
            episodes = act().cpu()
        except BaseException:  # a write the counters never heard of is overwritten by the next one
            self.replay.slot_base.fill_(self.replay.next_slot)
            raise
        self.replay.advance(steps)
        return episodes

    def _acting_inputs(self) -> list[torch.Tensor]:
        """What recorded acting steps read: the env's tensors, the agent's position, the replay, the weights."""
        last = self._last
        return [*tensor_attributes(self.env).values(), *observations.leaves(last["obs"]), *last["state"],
                last["episode_start"], *buffer_tensors(self.replay), *self.q_net.parameters(), self._epsilon]

    @torch.no_grad()
    def _act(self, steps: int) -> torch.Tensor:
        """``steps`` steps of every env into the replay, pure device work: the eager reference, and what a
        CUDA graph records. The agent's position (``self._last``) is updated in place and the replay's device
        tensors written; its host counters are not (the caller advances them). Returns the episode statistics
        on the device."""
        c, last, replay = self.config, self._last, self.replay
        obs, state, episode_start = last["obs"], last["state"], last["episode_start"]
        episodes = new_episode_sums(self.device)
        for row in replay.window_rows(steps):
            q, next_state = self.q_net.step(obs, state, episode_start)
            action = self._epsilon_greedy(q, self._epsilon)
            step = step_env(self.env, self.env_action(action), self.device)
            stored_reward = step.reward
            if self._needs_bootstrap(step.bootstrap):
                final_q, _ = self.q_net.step(step.final_obs(), next_state, torch.zeros_like(step.done))
                stored_reward = step.reward + c.gamma * final_q.max(-1).values * step.bootstrap
            replay.store(row, obs, action, stored_reward, step.done, episode_start, state)
            episodes += episode_sums(step)
            obs, state, episode_start = step.obs, next_state, step.done
        observations.tree_map(torch.Tensor.copy_, last, {"obs": obs, "state": state, "episode_start": episode_start})
        return episodes

    def update(self) -> dict[str, float]:
        """``updates_per_iteration`` learner steps; their mean loss, Q-value and |TD error| (one host read).

        Nothing (an empty dict) before ``learning_starts`` env-steps and a first whole sequence in
        the replay (with seq_len above learning_starts / n_envs the first iterations store none).
        """
        c = self.config
        if self.num_timesteps < c.learning_starts or self.replay.size == 0:
            return {}
        self._learner_sums.zero_()
        for _ in range(c.updates_per_iteration):
            self.learner_step()
        means = (self._learner_sums / c.updates_per_iteration).tolist()
        return dict(zip(("loss", "q_values", "td_error"), means, strict=True))

    def learner_step(self) -> None:
        """One learner step: sample slots on the host's generator, learn on them (:meth:`_learn_on_slots`:
        recorded and replayed under CUDA graphs), then move the target network. The step's loss, mean Q
        and mean |TD error| add to ``self._learner_sums``."""
        c = self.config
        if self._learner_call is None:
            graphed = self.uses_cuda_graphs and not self.q_net.core.sequence_reads_host
            self._learner_call = GraphedCall(self._learn_on_slots, self._learner_inputs,
                                             warmup=2 if graphed else float("inf"), name="learner step")
        alpha = c.priority_exponent if c.prioritized else None
        slots, weights = self.replay.sample_slots(c.batch_size, self.generator, alpha,
                                                  c.importance_sampling_exponent)
        if self.device.type == "cuda" and slots.device.type == "cpu":  # from pinned memory: no wait for the device
            slots = slots.pin_memory()
        self._slots.copy_(slots, non_blocking=True)
        self._weights.copy_(weights)
        self._learner_call()
        self.num_updates += 1
        with torch.no_grad():
            if c.tau < 1.0:
                for target, online in zip(self.target_net.parameters(), self.q_net.parameters(), strict=True):
                    target.lerp_(online, c.tau)
            elif self.num_updates % c.target_update_interval == 0:
                self.target_net.load_state_dict(self.q_net.state_dict())  # copies in place: the same addresses

    def _learner_inputs(self) -> list[torch.Tensor]:
        """What a recorded learner step reads: the replay, both networks, the optimizer's state, its fixed places."""
        return [*buffer_tensors(self.replay), *self.q_net.parameters(), *self.target_net.parameters(),
                *optimizer_tensors(self.optimizer), self._slots, self._weights, self._learner_sums]

    def _learn_on_slots(self) -> None:
        """One gradient step on the sequences in ``self._slots``, pure device work (the eager reference, and
        what a CUDA graph records): burn-in unroll, n-step double-Q targets, loss, optimizer, priorities."""
        c = self.config
        mb = self.replay.gather(self._slots)
        b = c.burn_in
        q_all = burn_in_unroll(self.q_net, mb["obs"], mb["initial_state"], mb["episode_starts"], b)
        with torch.no_grad():  # no gradient either way: one unroll over the whole sequence, burn-in included
            target_q = self.target_net.q_values(mb["obs"], mb["initial_state"], mb["episode_starts"])[b:]
            best = q_all.argmax(-1, keepdim=True)  # double Q: the online net picks, the target net values
            bootstrap_q = target_q.gather(-1, best).squeeze(-1)
            targets, mask = n_step_targets(mb["rewards"][b:], mb["dones"][b:], bootstrap_q, c.gamma, c.n_step,
                                           c.value_rescaling)
        q_taken = q_all.gather(-1, mb["actions"][b:].unsqueeze(-1)).squeeze(-1)
        td_error = targets - q_taken
        maskf = mask.to(q_taken.dtype)
        per_sequence = (nn.functional.smooth_l1_loss(q_taken, targets, reduction="none") * maskf).sum(0)
        per_sequence = per_sequence / maskf.sum(0).clamp_min(1)
        loss = (per_sequence * self._weights).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q_net.parameters(), c.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            if c.prioritized:
                self.replay.update_priorities(self._slots, sequence_priorities(td_error, maskf))
            count = maskf.sum().clamp_min(1)
            self._learner_sums += torch.stack(
                (loss.detach(), (q_taken * maskf).sum() / count, (td_error.abs() * maskf).sum() / count))

    def _charts(self) -> dict[str, float]:
        return {"charts/epsilon": float(self.epsilon().mean()), "charts/updates": float(self.num_updates)}

    # ------------------------------------------------------------------ using a trained agent
    # predict() and evaluate() come from RecurrentAgent, built on these two. Not
    # deterministic means epsilon_end-greedy. DQN takes no previous action or reward.
    def initial_state(self, n: int) -> State:
        return self.q_net.initial_state(n, self.device)

    def act(self, obs: torch.Tensor, state: State, episode_start: torch.Tensor, prev_action: torch.Tensor,
                  prev_reward: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, State]:
        q, state = self.q_net.step(obs, state, episode_start)
        return self._epsilon_greedy(q, 0.0 if deterministic else self.config.epsilon_end), state

    # ------------------------------------------------------------------ files
    # save(), load() and restore() come from RecurrentAgent; these hooks feed them. save() writes
    # no replay; a training checkpoint keeps it in a file of its own (<name>.replay.pt).
    def _modules(self) -> dict[str, nn.Module]:
        return {"q_net": self.q_net, "target_net": self.target_net}

    def _modules_state(self) -> dict[str, Any]:
        return {"q_net": self.q_net.state_dict(), "target_net": self.target_net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "num_updates": self.num_updates}

    def _load_modules_state(self, data: dict[str, Any]) -> None:
        self.q_net.load_state_dict(data["q_net"])
        self.target_net.load_state_dict(data["target_net"])
        self.optimizer.load_state_dict(data["optimizer"])
        continue_adam(self.optimizer, self.device, self.uses_cuda_graphs)  # this agent's Adam settings
        self.num_updates = data["num_updates"]

    def _checkpoint_parts(self) -> dict[str, Any]:
        return {"replay": self.replay.state_dict()} if self.replay is not None else {}

    def _load_checkpoint_parts(self, parts: dict[str, Any]) -> None:
        if "replay" in parts:
            self.replay = self._make_replay()
            self.replay.load_state_dict(parts["replay"])


__all__ = ["DQNConfig", "RecurrentDQN", "TorchVecEnv"]
