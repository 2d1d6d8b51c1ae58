"""An agent's files: ``save``, ``load`` and ``restore``, read safely and checked before use.

A saved agent (:meth:`AgentFiles.save`) holds the weights, optimizer, config, counters and
spaces; a training checkpoint also the random generators, the env batch and the agent's place
in it, so :meth:`AgentFiles.restore` goes on exactly. Files are read with
``weights_only=True`` (loading one never runs code from it), and a file whose weights do not
fit the networks its own config builds, or hold nan / inf, is refused
(:func:`check_saved_weights`). :class:`AgentFiles` is a base class of
:class:`~rlmem.agents.base.RecurrentAgent`, which supplies the state dict hooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rlmem import distributed
from rlmem.agents.checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state, space_from_dict


class AgentFiles:
    """Saving an agent, and rebuilding one from a file (see the module docstring)."""

    # ------------------------------------------------------------------ files
    def _modules_state(self) -> dict[str, Any]:
        """The state dicts (and counters) a saved agent holds: networks, optimizer."""
        raise NotImplementedError

    def _load_modules_state(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _checkpoint_parts(self) -> dict[str, Any]:
        """Large training state stored in files of its own beside a training checkpoint (name: data)."""
        return {}

    def _load_checkpoint_parts(self, parts: dict[str, Any]) -> None:
        """The inverse of :meth:`_checkpoint_parts`."""

    def _training_state(self) -> dict[str, Any]:
        """What a training checkpoint adds to a saved agent (besides its parts)."""
        return {
            "plan": self._plan,
            "rng": rng_state(self),
            "env": self.env.state_dict() if self.env.restorable else None,
            "last": self._last,
        }

    def save(self, path: str | Path) -> None:
        """Write the agent (weights, optimizer, config, counters, spaces) to ``path``, atomically.

        To continue training exactly later, use ``learn(..., checkpoint_dir=...)`` and
        :meth:`restore` instead: a training checkpoint also holds the random generators, the
        env batch and (RecurrentDQN) the replay.
        """
        save_checkpoint(self, path)

    @classmethod
    def _rebuild(cls, data: dict[str, Any], env: Any, device: str | torch.device,
                 kwargs: dict[str, Any], path: str | Path = "the checkpoint") -> AgentFiles:
        """A new agent with a checkpoint's config, env and counters and its state dicts loaded."""
        config = dict(data["config"])
        config.pop("extra", None)
        if env is None:
            env = data["env_source"]
            kwargs = {"env_kwargs": data.get("env_kwargs") or {}, **kwargs}
        if env is None:
            raise ValueError("this agent was trained on an env given as an object; pass env= to load it")
        agent = cls(env, device=device, seed=data["seed"], **{**config, **kwargs})
        for name in ("observation_space", "action_space"):
            saved, given = space_from_dict(data[name]), getattr(agent, name)
            if saved != given:
                raise ValueError(f"the checkpoint's {name.replace('_', ' ')} {saved} does not match the env's {given}")
        agent.num_timesteps = data["num_timesteps"]
        check_saved_weights(path, data, agent._modules())
        agent._load_modules_state(data)
        return agent

    @classmethod
    def load(cls, path: str | Path, env: Any = None, device: str | torch.device = "auto",
             **kwargs: Any) -> AgentFiles:
        """Rebuild a saved agent; ``env`` defaults to the id (and env kwargs) it was trained on, if it had one.

        The file is read safely (tensors and plain values only; nothing in it is run) and
        checked: a damaged file, another agent's checkpoint, or spaces that differ from
        ``env``'s are each a ValueError saying so.
        """
        return cls._rebuild(load_checkpoint(path, cls.algo), env, device, kwargs, path)

    @classmethod
    def restore(cls, path: str | Path, env: Any = None, device: str | torch.device = "auto",
                **kwargs: Any) -> AgentFiles:
        """Rebuild an agent from a training checkpoint exactly as it was: :meth:`resume` then goes on
        as if training had never stopped (bit for bit on the CPU, for rlmem's own tasks).

        Sets torch's, numpy's and Python's global random generators to the checkpoint's. An env
        batch whose state cannot be saved (a gymnasium env stepped in numpy) restarts its
        episodes instead. ``kwargs`` go to the constructor (``tensorboard_log``, ``verbose``).
        """
        data = load_checkpoint(path, cls.algo, training=True)
        agent = cls._rebuild(data, env, device, kwargs, path)
        training = data["training"]
        agent._plan = dict(training["plan"]) if training["plan"] is not None else None
        agent._load_checkpoint_parts(training["parts"])
        # A data-parallel run's checkpoint holds rank 0's envs: the other ranks start theirs afresh.
        if training["env"] is not None and agent.env.restorable and distributed.is_main():
            agent.env.load_state_dict(training["env"])
            agent._last = _to_device(training["last"], agent.device)
        else:
            agent._last = None  # the next learn call resets the env
        set_rng_state(agent, training["rng"])
        return agent


def check_saved_weights(path: str | Path, data: dict[str, Any], modules: dict[str, torch.nn.Module]) -> None:
    """Refuse, in one line, a checkpoint whose weights do not fit the networks its own config builds, or hold
    nan / inf: before anything is evaluated or trained from it."""
    where = repr(str(path))
    for name, module in modules.items():
        saved, own = data.get(name), module.state_dict()
        if not isinstance(saved, dict):
            raise ValueError(f"{where} holds no weights for its {name}")
        missing, unexpected = [k for k in own if k not in saved], [k for k in saved if k not in own]
        if missing or unexpected:
            raise ValueError(f"{where}: its {name} weights do not fit the network its config builds "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        for key, tensor in saved.items():
            if tuple(tensor.shape) != tuple(own[key].shape):
                raise ValueError(f"{where}: its weight {name}.{key} is {list(tensor.shape)}, but its config "
                                 f"builds {list(own[key].shape)}: the config and the weights do not belong together")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{where}: its weight {name}.{key} holds nan or inf; refused")


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


__all__ = ["AgentFiles", "check_saved_weights"]
