"""RecurrentDQN's hyperparameters (:class:`DQNConfig`) and their checks; presets fill these fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlmem.agents.config import MemoryConfig, check_memory_fields
from rlmem.checks import check_int, check_positive_int
from rlmem.memory import UNROLL_MODES


@dataclass
class DQNConfig(MemoryConfig):
    """RecurrentDQN's hyperparameters; presets (agents/dqn-lstm.yaml) fill these fields."""

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
    unroll: str = "auto"
    """Memory unroll in the learner: 'chunked' (the core's sequence path: for the RNNs one fused call between
    episode starts), 'per_step' (no host reads: recordable in a CUDA graph), or 'auto': per_step where the
    learner runs from a CUDA graph and the core's chunked path reads the host, chunked elsewhere."""
    cuda_graphs: bool = True
    """On a CUDA device, record the acting step (policy, env step, replay writes) and the learner step (unroll,
    targets, backward, optimizer, priorities) in CUDA graphs and replay them; the eager code is the reference."""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Not a hyperparameter: free-form notes kept with the config (e.g. from a preset)."""

    def validate(self) -> None:
        """Raise a ValueError naming the first field that breaks a rule."""
        check_memory_fields(self, (*UNROLL_MODES, "auto"))
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


__all__ = ["DQNConfig"]
