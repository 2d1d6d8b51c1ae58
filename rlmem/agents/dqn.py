"""RecurrentDQN (R2D2-style): sequence replay on the device, stored state and burn-in, n-step double Q.

Reads top to bottom: the config, the pieces of the loss (value rescaling, n-step double-Q
targets, R2D2's priority mix), then the agent (act -> sequence replay -> learner), then the
sb3-contrib-style API (``predict``, ``evaluate``, ``save`` / ``load``) it shares with RecurrentPPO.

Kapturowski et al. (2019), "Recurrent Experience Replay in Distributed Reinforcement Learning".
Differences from the paper, on purpose: one process (the N envs act with the latest network, no
actor lag), and a truncated episode's last reward has ``gamma * max Q(final obs)`` added at
collection time (as RecurrentPPO does with V), so the replay need not store final observations.
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
from rlmem.agents.config import check_memory_fields, memory_size_note
from rlmem.agents.buffers import SequenceReplay
from rlmem.agents.policy import RecurrentQNetwork
from rlmem.device import build_checked, check_fits
from rlmem.checks import check_int, check_positive_int
from rlmem.envs.base import TorchVecEnv
from rlmem.memory import State


@dataclass
class DQNConfig:
    """RecurrentDQN's hyperparameters; presets (agents/dqn-lstm.yaml) fill these fields."""

    memory: str = "lstm"
    """Memory core (``rlmem.memory.CORES``): 'lstm', 'gru', 'elman', 'mlp' (none), 'framestack', 'transformer',
    'lru', 'mingru' or 'ffm'."""
    memory_options: dict[str, Any] = field(default_factory=dict)
    """The memory core's own options (e.g. transformer: context_length, num_heads, gated); an option the core
    does not have is an error. Checked, and the core's defaults filled in, when the config is validated."""
    hidden_size: int = 64
    """Units in the memory core."""
    num_layers: int = 1
    """Stacked layers in the memory core."""
    encoder_sizes: tuple[int, ...] = (64,)
    """Widths of the MLP encoder before the memory core."""
    dueling: bool = False
    """Dueling Q head: V(s) + A(s, a) - mean A."""
    image_channels_first: bool | None = None
    """Whether image observations are (C, H, W) (true) or (H, W, C) (false); None: detected from the shape
    (the smallest dimension is the channels), an error where that is ambiguous."""
    n_envs: int = 64
    """Envs stepped together."""
    seq_len: int = 20
    """Steps per replayed sequence (R2D2: 80)."""
    overlap: int = 10
    """Steps consecutive sequences of one env share (R2D2: 40); a sequence is stored every seq_len - overlap steps."""
    burn_in: int = 5
    """Leading steps of a sequence that only warm the memory up and take no loss (R2D2: 40)."""
    store_state: bool = True
    """Start each replayed sequence from the memory state the actor had there (False: from zeros)."""
    buffer_size: int = 100_000
    """Replay capacity in transitions (stored as buffer_size // seq_len sequences)."""
    learning_starts: int = 1_000
    """Env-steps collected before the first update."""
    batch_size: int = 32
    """Sequences per update."""
    updates_per_iteration: int = 8
    """Learner updates per iteration (an iteration: every env takes seq_len - overlap steps).

    With the defaults an iteration is 64 envs x 10 steps = 640 env-steps and 8 updates of 32 sequences: a
    sampled-transitions-to-env-steps ratio of 8. The learner's LSTM work is near the CPU's arithmetic
    bound already, so this ratio is what sets training speed; RepeatPreviousEasy needs about 2,000 updates,
    which sets how low it can go (docs/benchmarks.md, RecurrentDQN: speed)."""
    learning_rate: float = 2e-3
    """Adam learning rate."""
    adam_eps: float = 1e-8
    """Adam's epsilon. Keep it far below the gradients: rlmem's tasks scale a whole episode's return
    to 1, so per-step TD errors are ~0.02, and R2D2's 1e-3 (or even 1e-4) swamps the small
    gradients that reach the memory through time (RepeatPreviousEasy stalled near 0.15 with 1e-4)."""
    gamma: float = 0.9
    """Discount factor. 0.9, not 0.99: on a task that pays a small reward at every step (RepeatPrevious: +-1/48),
    at 0.99 the Q-values sum about 50 future rewards whose size depends on the time left in the episode; their
    error (0.12 early in the episode) grows seven times the one-step gap between the right and a wrong answer
    (0.017), and learning is 2.3x slower (and oscillates with 1-step targets or the dueling head:
    docs/benchmarks.md). The memory tasks pay where the action is taken, so 0.9 loses them nothing; a task
    whose reward comes long after the action needs a longer horizon."""
    n_step: int = 5
    """Steps of reward in the target before bootstrapping (cut at episode ends and at the sequence end)."""
    target_update_interval: int = 50
    """Updates between hard copies of the online network into the target network (when tau is 1)."""
    tau: float = 1.0
    """Polyak factor per update; 1.0 means hard updates every target_update_interval updates."""
    value_rescaling: bool = False
    """Learn h(Q) with R2D2's h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x."""
    prioritized: bool = False
    """Sample sequences by priority (R2D2's 0.9 max + 0.1 mean |TD error|) instead of uniformly."""
    priority_exponent: float = 0.9
    """Priority exponent alpha (R2D2: 0.9)."""
    importance_sampling_exponent: float = 0.6
    """Importance-sampling exponent beta (R2D2: 0.6)."""
    epsilon_schedule: str = "linear"
    """'linear': one epsilon for all envs, from epsilon_start to epsilon_end; 'apex': a fixed epsilon per env."""
    epsilon_start: float = 1.0
    """First epsilon of the linear schedule."""
    epsilon_end: float = 0.05
    """Last epsilon of the linear schedule (also predict's epsilon when not deterministic)."""
    exploration_steps: int = 10_000
    """Env-steps over which the linear schedule decays."""
    apex_epsilon: float = 0.4
    """Ape-X: env i explores with apex_epsilon ** (1 + apex_alpha * i / (n_envs - 1))."""
    apex_alpha: float = 7.0
    """Ape-X's spread of the per-env epsilons."""
    max_grad_norm: float = 10.0
    """Gradient norm clip."""
    unroll: str = "chunked"
    """Memory unroll in the learner: 'chunked' (one fused RNN call between episode starts) or 'per_step'."""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Not a hyperparameter: free-form notes kept with the config (e.g. from a preset)."""

    def validate(self) -> None:
        """Raise a ValueError naming the first field that breaks a rule."""
        check_memory_fields(self)
        for name in ("seq_len", "buffer_size", "batch_size", "updates_per_iteration", "n_step",
                     "target_update_interval"):
            check_positive_int(name, getattr(self, name))
        for name in ("overlap", "burn_in", "learning_starts", "exploration_steps"):
            check_int(name, getattr(self, name), 0)
        if self.epsilon_schedule not in ("linear", "apex"):
            raise ValueError(f"epsilon_schedule must be 'linear' or 'apex', got {self.epsilon_schedule!r}")
        if self.burn_in >= self.seq_len:
            raise ValueError(f"burn_in ({self.burn_in}) must be shorter than seq_len ({self.seq_len}): "
                             "the steps after the burn-in take the loss")
        if self.overlap >= self.seq_len:
            raise ValueError(f"overlap ({self.overlap}) must be shorter than seq_len ({self.seq_len})")
        if self.buffer_size < self.n_envs * self.seq_len:
            raise ValueError(f"buffer_size ({self.buffer_size}) must hold at least one sequence per env: "
                             f"n_envs * seq_len = {self.n_envs * self.seq_len} transitions")
        if not self.adam_eps > 0:
            raise ValueError(f"adam_eps must be > 0, got {self.adam_eps!r}")
        for name in ("gamma", "tau", "epsilon_start", "epsilon_end", "apex_epsilon", "priority_exponent",
                     "importance_sampling_exponent"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.tau == 0:
            raise ValueError("tau must be in (0, 1], got 0 (the target network would never move)")


# ---------------------------------------------------------------------- the loss, piece by piece
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
    q, _ = network(observations.take(obs, slice(burn_in, None)), state, episode_starts[burn_in:])
    return q


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
        self.q_net = build_checked(self._build_network, "the Q-network", self.device, 5,  # and its target
                                   "lower hidden_size, num_layers or encoder_sizes").to(self.device)
        self.target_net = self._build_network().to(self.device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=c.learning_rate, eps=c.adam_eps)
        self.num_updates = 0
        self._check_replay_fits()
        self.replay: SequenceReplay | None = None  # allocated by the first learn call

    def _build_network(self) -> RecurrentQNetwork:
        c = self.config
        return RecurrentQNetwork(self.observation_space, self.n_actions, memory=c.memory, hidden_size=c.hidden_size,
                                 num_layers=c.num_layers, encoder_sizes=c.encoder_sizes, dueling=c.dueling,
                                 unroll=c.unroll, memory_options=c.memory_options,
                                 image_channels_first=c.image_channels_first)

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
        return {"obs": observations.to(obs, self.device), "state": self.q_net.initial_state(n, self.device),
                "episode_start": torch.ones(n, dtype=torch.bool, device=self.device)}

    # ------------------------------------------------------------------ training
    # learn() is RecurrentAgent's loop (logging, checkpoints, signals, nan guard) around collect and update.
    def _prepare_learning(self) -> None:
        if self.replay is None:
            self.replay = self._make_replay()

    def collect(self) -> torch.Tensor:
        """Every env steps ``seq_len - overlap`` times into the replay (one new sequence each).

        Returns [sum of returns, sum of lengths, episodes] on the CPU.
        """
        episodes = self.collect_steps(self.config.seq_len - self.config.overlap)
        self.num_timesteps += self.steps_per_iteration
        return episodes

    def update(self) -> dict[str, float]:
        """``updates_per_iteration`` learner steps; their mean loss, Q-value and |TD error| (one host read).

        Nothing (an empty dict) before ``learning_starts`` env-steps and a first whole sequence in
        the replay (with seq_len above learning_starts / n_envs the first iterations store none).
        """
        c = self.config
        if self.num_timesteps < c.learning_starts or self.replay.size == 0:
            return {}
        sums = torch.zeros(3, device=self.device)
        for _ in range(c.updates_per_iteration):
            sums += self.learner_step()
        return dict(zip(("loss", "q_values", "td_error"), (sums / c.updates_per_iteration).tolist(), strict=True))

    def _charts(self) -> dict[str, float]:
        return {"charts/epsilon": float(self.epsilon().mean()), "charts/updates": float(self.num_updates)}

    @torch.no_grad()
    def collect_steps(self, steps: int) -> torch.Tensor:
        """Step every env ``steps`` times into the replay (``num_timesteps`` is left as it is: :meth:`collect`
        counts); return [sum of returns, sum of lengths, episodes] on the CPU."""
        c, last, replay = self.config, self._last, self.replay
        obs, state, episode_start = last["obs"], last["state"], last["episode_start"]
        epsilon = self.epsilon()
        episodes = new_episode_sums(self.device)
        for _ in range(steps):
            q, next_state = self.q_net.step(obs, state, episode_start)
            action = self._epsilon_greedy(q, epsilon)
            step = step_env(self.env, self.env_action(action), self.device)
            stored_reward = step.reward
            if self._needs_bootstrap(step.bootstrap):
                final_q, _ = self.q_net.step(step.final_obs(), next_state, torch.zeros_like(step.done))
                stored_reward = step.reward + c.gamma * final_q.max(-1).values * step.bootstrap
            replay.add(obs, action, stored_reward, step.done, episode_start, state)
            episodes += episode_sums(step)
            obs, state, episode_start = step.obs, next_state, step.done
        self._last = {"obs": obs, "state": state, "episode_start": episode_start}
        return episodes.cpu()

    def learner_step(self) -> torch.Tensor:
        """One learner step on a batch of sequences; returns [loss, mean Q, mean |TD error|] on the device."""
        c = self.config
        alpha = c.priority_exponent if c.prioritized else None
        mb = self.replay.sample(c.batch_size, self.generator, alpha, c.importance_sampling_exponent)
        b = c.burn_in
        q_all = burn_in_unroll(self.q_net, mb["obs"], mb["initial_state"], mb["episode_starts"], b)
        with torch.no_grad():  # no gradient either way: one unroll over the whole sequence, burn-in included
            target_q = self.target_net(mb["obs"], mb["initial_state"], mb["episode_starts"])[0][b:]
            best = q_all.argmax(-1, keepdim=True)  # double Q: the online net picks, the target net values
            bootstrap_q = target_q.gather(-1, best).squeeze(-1)
            targets, mask = n_step_targets(mb["rewards"][b:], mb["dones"][b:], bootstrap_q, c.gamma, c.n_step,
                                           c.value_rescaling)
        q_taken = q_all.gather(-1, mb["actions"][b:].unsqueeze(-1)).squeeze(-1)
        td_error = targets - q_taken
        maskf = mask.to(q_taken.dtype)
        per_sequence = (nn.functional.smooth_l1_loss(q_taken, targets, reduction="none") * maskf).sum(0)
        per_sequence = per_sequence / maskf.sum(0).clamp_min(1)
        loss = (per_sequence * mb["weights"]).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q_net.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.num_updates += 1
        with torch.no_grad():
            if c.prioritized:
                self.replay.update_priorities(mb["slots"], sequence_priorities(td_error, maskf))
            if c.tau < 1.0:
                for target, online in zip(self.target_net.parameters(), self.q_net.parameters(), strict=True):
                    target.lerp_(online, c.tau)
            elif self.num_updates % c.target_update_interval == 0:
                self.target_net.load_state_dict(self.q_net.state_dict())
            count = maskf.sum().clamp_min(1)
            return torch.stack((loss.detach(), (q_taken * maskf).sum() / count, (td_error.abs() * maskf).sum() / count))

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
        self.num_updates = data["num_updates"]

    def _checkpoint_parts(self) -> dict[str, Any]:
        return {"replay": self.replay.state_dict()} if self.replay is not None else {}

    def _load_checkpoint_parts(self, parts: dict[str, Any]) -> None:
        if "replay" in parts:
            self.replay = self._make_replay()
            self.replay.load_state_dict(parts["replay"])


__all__ = ["DQNConfig", "RecurrentDQN", "TorchVecEnv"]
