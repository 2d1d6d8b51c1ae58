"""Every step the throughput benchmark takes inside RecurrentPPO, gathered in one place.

The rollout measurement runs the agent's rollouts without its updates, and the train rows
record which CUDA graphs ran: for now both reach into RecurrentPPO's private members. When the
agents get a public step API (``agent.start()``, ``agent.collect()``, ``agent.update()`` and a
way to ask which graphs ran), this file is the only one to change.
"""

from __future__ import annotations

from typing import Any

import torch

from rlmem.agents.ppo import RecurrentPPO


def prepare(agent: RecurrentPPO) -> None:
    """What ``learn()`` does before its first rollout: make the rollout buffer, reset the envs."""
    agent._prepare_learning()
    agent._last = agent._start()


def collect(agent: RecurrentPPO) -> torch.Tensor:
    """One rollout into the agent's buffer (policy, env steps, buffer writes, GAE), no update.

    Returns the episode statistics, read to the host at the rollout's end. With CUDA graphs the
    first call runs eagerly and the second records the graph.
    """
    return agent._collect(agent._buffer)


def graph_use(agent: RecurrentPPO) -> dict[str, Any]:
    """Which fast paths ``agent`` ran: the update's unroll and whether the rollout and the update
    were CUDA graph replays (``unroll``, ``rollout_cuda_graph``, ``update_cuda_graph``)."""
    calls = {"rollout": agent._rollout_call, "update": agent._minibatch_call}
    return {"unroll": agent.unroll,
            **{f"{name}_cuda_graph": call is not None and call.active for name, call in calls.items()}}
