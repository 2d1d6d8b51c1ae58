"""rlmem: reinforcement learning with recurrent memory, on batched torch environments.

Importing rlmem registers every task with gymnasium (``rlmem/<Task><Level>-v0``).
"""

__version__ = "0.1.0"

from rlmem.agents.dqn import DQNConfig, RecurrentDQN  # noqa: E402
from rlmem.agents.ppo import PPOConfig, RecurrentPPO  # noqa: E402
from rlmem.agents.pqn import PQNConfig, RecurrentPQN  # noqa: E402
from rlmem.device import resolve_device  # noqa: E402
from rlmem.envs.adapters import GymEnvView, GymVectorEnvAdapter, GymVectorEnvView, SB3VecEnvView  # noqa: E402
from rlmem.envs.base import TorchVecEnv  # noqa: E402
from rlmem.envs.registry import TASKS, make_env, make_vec_env, register_all  # noqa: E402
from rlmem.envs.wrappers import FlickerObservation, MaskObservation, ObservationNoise, PreviousActionReward  # noqa: E402

register_all()

__all__ = [
    "TASKS",
    "DQNConfig",
    "PPOConfig",
    "PQNConfig",
    "RecurrentDQN",
    "RecurrentPPO",
    "RecurrentPQN",
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
