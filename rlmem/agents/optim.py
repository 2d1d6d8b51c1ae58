"""Adam for an agent whose update may be replayed from a CUDA graph.

RecurrentPPO, RecurrentDQN and RecurrentPQN build their optimizer the same way: fused on CUDA,
and where the update is recorded in a CUDA graph, ``capturable`` with the learning rate in a
device tensor (a schedule then fills that tensor in place instead of changing a number baked
into the graph). A checkpoint written on another device, or with graphs on where they are off
now, continues with this agent's settings (:func:`continue_adam`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def adam_options(lr: float, device: torch.device, graphed: bool) -> dict[str, Any]:
    """Adam's keyword arguments besides ``eps``: fused on CUDA, capturable with a tensor ``lr`` when ``graphed``."""
    options: dict[str, Any] = {"lr": lr}
    if device.type == "cuda":
        options["fused"] = True
    if graphed:
        options.update(capturable=True, lr=torch.tensor(float(lr), device=device))
    return options


def make_adam(parameters: Iterable[torch.nn.Parameter], lr: float, eps: float, device: torch.device,
              graphed: bool) -> torch.optim.Adam:
    """The agent's Adam (see the module docstring)."""
    return torch.optim.Adam(parameters, eps=eps, **adam_options(lr, device, graphed))


def continue_adam(optimizer: torch.optim.Adam, device: torch.device, graphed: bool) -> None:
    """After ``optimizer.load_state_dict``: this agent's fused / capturable settings, the saved lr and eps kept.

    Fused and capturable Adams count their steps in a device tensor, the others on the CPU.
    """
    for group in optimizer.param_groups:
        group.update({"fused": None, "capturable": False, **adam_options(float(group["lr"]), device, graphed)})
    for param, state in optimizer.state.items():
        if "step" in state:
            state["step"] = state["step"].to(param.device if device.type == "cuda" else "cpu", torch.float32)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The tensors an optimizer step reads besides the parameters: its state (moments, step counts) and any
    tensor learning rate. A recorded update reads them at fixed addresses, so they are among its inputs."""
    state = [t for per_param in optimizer.state.values() for t in per_param.values() if isinstance(t, torch.Tensor)]
    return state + [g["lr"] for g in optimizer.param_groups if isinstance(g["lr"], torch.Tensor)]


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's learning rate to ``lr``: filled in place where it is a (graph-read) tensor."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


__all__ = ["adam_options", "continue_adam", "make_adam", "optimizer_tensors", "set_learning_rate"]
