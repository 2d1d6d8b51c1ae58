"""rlmem: reinforcement learning with recurrent memory, on batched torch environments.

Importing rlmem registers every task with gymnasium (``rlmem/<Task><Level>-v0``).
"""

from rlmem.device import resolve_device
from rlmem.envs.adapters import GymEnvView, GymVectorEnvAdapter, GymVectorEnvView, SB3VecEnvView
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.registry import TASKS, make_env, make_vec_env, register_all
from rlmem.envs.wrappers import FlickerObservation, MaskObservation, ObservationNoise, PreviousActionReward

__version__ = "0.1.0"

register_all()

__all__ = [
    "TASKS",
    "FlickerObservation",
    "GymEnvView",
    "GymVectorEnvAdapter",
    "GymVectorEnvView",
    "MaskObservation",
    "ObservationNoise",
    "PreviousActionReward",
    "SB3VecEnvView",
    "TorchVecEnv",
    "make_env",
    "make_vec_env",
    "resolve_device",
    "__version__",
]
