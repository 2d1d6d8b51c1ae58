"""Every rlmem task as a gymnasium id, and :func:`make_vec_env`, the one way in for any env.

On ``import rlmem`` each task is registered as ``rlmem/<Task>-v0`` (accepting the task's
kwargs) and ``rlmem/<Task><Level>-v0`` for each level of its ``LEVELS`` table (Easy, Medium
and Hard; the classes :func:`rlmem.envs.levels.make_levels` makes from it), each with an
``entry_point`` (one env as a gymnasium ``Env``) and a ``vector_entry_point`` (the batched
torch env as a gymnasium ``VectorEnv``), so both of these work::

    gymnasium.make("rlmem/RepeatPreviousEasy-v0")
    gymnasium.make_vec("rlmem/RepeatPreviousEasy-v0", num_envs=1024,
                       vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch

from rlmem.checks import check_positive_int, close_matches
from rlmem.device import check_fits, resolve_device
from rlmem.envs import (
    count_recall,
    masked_cartpole,
    memory_chain,
    multiarmed_bandit,
    passive_tmaze,
    pixel_repeat_previous,
    repeat_first,
    repeat_previous,
)
from rlmem.envs.adapters import GymEnvView, GymVectorEnvAdapter, GymVectorEnvView
from rlmem.envs.base import TorchVecEnv
from rlmem.envs.contract import checked_factory, env_name

NAMESPACE = "rlmem"
#: The levels every task's ``LEVELS`` table names, easiest first.
LEVELS = ("Easy", "Medium", "Hard")
_TASK_MODULES = {
    "RepeatPrevious": repeat_previous,
    "RepeatFirst": repeat_first,
    "CountRecall": count_recall,
    "PassiveTMaze": passive_tmaze,
    "MemoryChain": memory_chain,
    "MaskedCartPole": masked_cartpole,
    "MultiarmedBandit": multiarmed_bandit,
    "PixelRepeatPrevious": pixel_repeat_previous,
}


def _task_classes() -> dict[str, type[TorchVecEnv]]:
    classes = {}
    for name, module in _TASK_MODULES.items():
        task = classes[f"{NAMESPACE}/{name}-v0"] = getattr(module, name)
        for level in task.LEVELS:
            classes[f"{NAMESPACE}/{name}{level}-v0"] = getattr(module, name + level)
    return classes


#: Every registered rlmem id and the TorchVecEnv class behind it.
TASKS: dict[str, type[TorchVecEnv]] = _task_classes()


def _make_single(task: type[TorchVecEnv], render_mode: str | None = None, **kwargs: Any) -> GymEnvView:
    """gymnasium ``entry_point``: one env of ``task`` on the cpu."""
    return GymEnvView(task(num_envs=1, device="cpu", **kwargs), render_mode=render_mode)


def _make_vector(
    task: type[TorchVecEnv],
    num_envs: int = 1,
    device: str = "cpu",
    seed: int | None = None,
    render_mode: str | None = None,
    **kwargs: Any,
) -> GymVectorEnvView:
    """gymnasium ``vector_entry_point``: ``num_envs`` envs of ``task`` as tensors on ``device``."""
    return GymVectorEnvView(
        task(num_envs=num_envs, device=resolve_device(device), seed=seed, **kwargs), render_mode=render_mode
    )


def register_all() -> None:
    """Register every task and level with gymnasium (idempotent)."""
    for env_id, task in TASKS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=functools.partial(_make_single, task),
            vector_entry_point=functools.partial(_make_vector, task),
        )


def unknown_env_error(env_id: str) -> ValueError:
    """A ValueError naming ``env_id`` and the registered ids closest to it."""
    matches = close_matches(env_id, gym.registry, n=3)
    if matches:
        names = [repr(m) for m in matches]
        hint = "; did you mean " + (", ".join(names[:-1]) + " or " if len(names) > 1 else "") + names[-1] + "?"
    else:
        hint = "; `rlmem envs` lists rlmem's tasks"
    return ValueError(f"unknown env id {env_id!r}{hint}")


def resolve_env_spec(spec: str) -> str | Callable[..., gym.Env]:
    """The one reading of an env string every command and config uses.

    An rlmem or gymnasium id is returned as it is (a plug-in's id, ``popgym-...`` or ``MiniGrid-...``,
    imports its package first); gymnasium's ``module:env-id`` imports the module, which registers the id,
    and returns the id; an entry point ``module:Class`` / ``module:function`` returns the callable, which
    builds one env.

    The module is looked for on ``sys.path`` and in the current directory. Each failure is one
    ValueError naming the module, the name and what was found.
    """
    if spec in TASKS or spec in gym.registry:
        return spec
    if ":" not in spec:
        return _plugin_id(spec)
    module_name, name = spec.split(":", 1)
    if not module_name or not name:
        raise ValueError(f"env {spec!r} is not an id, nor 'module:name' (an entry point or gymnasium's module:env-id)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # `rlmem train` from a directory holding the module, as `python -m` would
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"env {spec!r}: cannot import module {module_name!r} ({type(error).__name__}: {error}); "
                         "put it on PYTHONPATH or in the current directory") from None
    if name in gym.registry:
        return name
    target = getattr(module, name, None)
    if callable(target):
        return target
    found = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))
                   and getattr(getattr(module, n), "__module__", None) == module.__name__)
    ids = sorted(i for i, s in gym.registry.items() if _entry_module(s.entry_point) == module_name)
    what = f"classes / functions: {', '.join(found) or 'none'}; gymnasium ids it registers: {', '.join(ids) or 'none'}"
    kind = "not callable" if target is not None else "not found"
    raise ValueError(f"env {spec!r}: {name!r} is {kind} in module {module_name!r} and is no gymnasium id ({what})")


#: Id prefixes of packages that register their envs with gymnasium when imported (``pip install popgym``).
PLUGINS = {"popgym-": "popgym", "MiniGrid-": "minigrid", "BabyAI-": "minigrid"}


def _plugin_id(env_id: str) -> str:
    """An id of a plug-in package (:data:`PLUGINS`), its package imported so that the id is registered."""
    package = next((p for prefix, p in PLUGINS.items() if env_id.startswith(prefix)), None)
    if package is None:
        raise unknown_env_error(env_id)
    try:
        importlib.import_module(package)
    except ImportError as error:
        raise ValueError(f"env {env_id!r} is one of the {package} package's: install it (pip install {package}) "
                         f"({type(error).__name__}: {error})") from None
    if env_id not in gym.registry:
        raise unknown_env_error(env_id)
    return env_id


def _entry_module(entry_point: Any) -> str | None:
    """The module a registered entry point lives in (``"pkg.mod:Cls"`` or the callable itself)."""
    if isinstance(entry_point, str):
        return entry_point.split(":", 1)[0]
    return getattr(entry_point, "__module__", None)


def task_keywords(task: type[TorchVecEnv]) -> tuple[type, list[str]]:
    """The class that defines ``task``'s own keyword arguments (a level passes them on to its task) and their names."""
    for cls in getattr(task, "task_class", task).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is TorchVecEnv:
            continue
        params = list(inspect.signature(init).parameters.values())
        names = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        if names or not any(p.kind is p.VAR_KEYWORD for p in params):
            return cls, names
    return task, []


def build_task(task: type[TorchVecEnv], env_id: str, num_envs: int, device: torch.device, seed: int | None,
                check_actions: bool, env_kwargs: dict[str, Any]) -> TorchVecEnv:
    """``task``'s batch (``env_id`` names it in errors), its keywords checked by name and its memory against
    the device's before anything is allocated: the batch is first built on the meta device (shapes, no
    memory) to size it."""
    owner, names = task_keywords(task)
    unknown = [key for key in env_kwargs if key not in names]
    if unknown:
        takes = f"{env_id} takes {', '.join(names)}" if names else f"{env_id} takes no env arguments"
        raise TypeError(f"{owner.__name__}.__init__() got an unexpected keyword argument {unknown[0]!r} ({takes})")
    twin = task(num_envs=num_envs, device="meta", seed=0, **env_kwargs)
    check_fits(f"the env batch of {num_envs:,} {env_id} envs", twin.state_nbytes(), device,
               "lower n_envs, or the env's sizes (its env_kwargs)")
    return task(num_envs=num_envs, device=device, seed=seed, check_actions=check_actions, **env_kwargs)


def make_vec_env(
    env: str | Callable[[], gym.Env] | gym.vector.VectorEnv | TorchVecEnv,
    num_envs: int = 1,
    device: str | torch.device = "cpu",
    seed: int | None = 0,
    *,
    env_kwargs: dict[str, Any] | None = None,
    vectorization: str = "sync",
    check_actions: bool = False,
) -> TorchVecEnv:
    """A batch of ``num_envs`` envs behind the :class:`TorchVecEnv` interface, from anything.

    ``env`` may be:

    * an rlmem id (``"rlmem/RepeatPreviousEasy-v0"``): the native torch batch on ``device``,
      no numpy anywhere;
    * any other gymnasium id, gymnasium's ``"module:env-id"``, an entry point ``"module:Class"`` /
      ``"module:function"`` (:func:`resolve_env_spec`), or a callable returning a gymnasium ``Env``
      (a user's own environment): ``num_envs`` copies stepped by gymnasium's sync (or, with
      ``vectorization="async"``, subprocess) vector env, turned into tensors at the edge;
    * a gymnasium ``VectorEnv`` built with ``autoreset_mode=AutoresetMode.SAME_STEP``;
    * a ``TorchVecEnv``, returned as it is.

    ``env_kwargs`` go to the task (or to ``gymnasium.make`` / the callable). ``seed`` seeds the
    first reset (``None``: fresh entropy). A task's batch is sized before it is allocated (too large
    for the device's free memory: a ValueError with the bytes needed and available); a gymnasium
    env's copies are checked where they meet rlmem (:mod:`rlmem.envs.contract`).
    """
    env_kwargs = dict(env_kwargs or {})
    if isinstance(env, TorchVecEnv):
        if env.num_envs != num_envs and num_envs != 1:
            raise ValueError(f"num_envs={num_envs} does not match the given TorchVecEnv's num_envs={env.num_envs}")
        return env
    device = resolve_device(device)
    if isinstance(env, gym.vector.VectorEnv):
        return GymVectorEnvAdapter(env, device=device, seed=seed, check_actions=check_actions)
    source = None
    if isinstance(env, gym.Env):
        raise TypeError(
            "make_vec_env needs a way to build num_envs copies: pass an env id or a callable "
            f"returning a new env (e.g. lambda: MyEnv()), not an env instance ({type(env).__name__})"
        )
    if isinstance(env, str):
        source, env = env, resolve_env_spec(env)
    if isinstance(env, str):
        if env in TASKS:
            return build_task(TASKS[env], env, num_envs, device, seed, check_actions, env_kwargs)
        env_id, name = env, env_name(source)
        # rlmem checks the copies itself (errors, where gymnasium's checker only warns).
        options = {"disable_env_checker": True, **env_kwargs}
        env = lambda: gym.make(env_id, **options)  # noqa: E731
    elif callable(env) and isinstance(source, str):
        name = env_name(source)
        if env_kwargs:
            env = functools.partial(env, **env_kwargs)
    elif callable(env):
        name = env_name(env)
        if env_kwargs:
            env = functools.partial(env, **env_kwargs)
    else:
        raise TypeError(
            "env must be an env id, a callable returning a gymnasium Env, a gymnasium VectorEnv "
            f"or a TorchVecEnv, got {type(env).__name__}"
        )
    vector_classes = {"sync": gym.vector.SyncVectorEnv, "async": gym.vector.AsyncVectorEnv}
    if vectorization not in vector_classes:
        raise ValueError(f"vectorization must be one of {sorted(vector_classes)}, got {vectorization!r}")
    check_positive_int("num_envs", num_envs)
    copies = [checked_factory(env, name, index) for index in range(num_envs)]
    vec = vector_classes[vectorization](copies, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    if name is None:  # a lambda: named by the class of the env it built
        name = vec.envs[0].name if hasattr(vec, "envs") else "(the env the callable builds)"
    return GymVectorEnvAdapter(vec, device=device, seed=seed, check_actions=check_actions, name=name)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` for any env string :func:`resolve_env_spec` reads (an unknown id names the closest)."""
    env = resolve_env_spec(env_id)
    return gym.make(env, **kwargs) if isinstance(env, str) else env(**kwargs)
