"""rlmem: reinforcement learning with recurrent memory, on batched torch environments."""

__version__ = "0.1.0"
