"""A task's levels as classes: ``RepeatPreviousEasy`` and its siblings, made from ``RepeatPrevious.LEVELS``."""

from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlmem.envs.base import TorchVecEnv


def make_levels(task: type[TorchVecEnv]) -> tuple[type[TorchVecEnv], ...]:
    """The level classes of ``task``, one per entry of ``task.LEVELS``, in the table's order.

    Level ``L`` with settings ``S`` becomes the class ``<Task><L>``: a subclass of ``task`` in
    ``task``'s module, whose first docstring line states ``S`` ("RepeatPrevious with ``k=4``,
    ``length=52``."), whose ``level`` is ``L`` and ``task_class`` is ``task``, and whose
    constructor takes ``task``'s arguments with ``S`` as the defaults: ``{**S, **kwargs}``, so a
    keyword overrides a level's value. A task module binds them to their names, e.g.::

        RepeatPreviousEasy, RepeatPreviousMedium, RepeatPreviousHard = make_levels(RepeatPrevious)

    A setting that is not one of ``task``'s keyword-only arguments is a TypeError here, when the
    module is imported.
    """
    if task.level is not None or not task.LEVELS:
        raise TypeError(f"make_levels needs a task with a LEVELS table, got {task.__name__}")
    parameters = inspect.signature(task.__init__).parameters
    classes = []
    for level, settings in task.LEVELS.items():
        unknown = [name for name in settings
                   if name not in parameters or parameters[name].kind is not inspect.Parameter.KEYWORD_ONLY]
        if unknown:
            raise TypeError(f"{task.__name__}.LEVELS[{level!r}] sets {', '.join(unknown)}, which "
                            f"{task.__name__} does not take as keyword-only arguments")
        classes.append(_level_class(task, level, dict(settings)))
    return tuple(classes)


def _level_class(task: type[TorchVecEnv], level: str, settings: dict[str, Any]) -> type[TorchVecEnv]:
    name = task.__name__ + level
    described = ", ".join(f"``{key}={value!r}``" for key, value in settings.items()) or "its defaults"

    def __init__(self: TorchVecEnv, *args: Any, **kwargs: Any) -> None:
        super(cls, self).__init__(*args, **{**settings, **kwargs})

    __init__.__qualname__ = f"{name}.__init__"
    __init__.__module__ = task.__module__
    __init__.__doc__ = f"{task.__name__}'s arguments, with {described} unless given."
    signature = inspect.signature(task.__init__)
    __init__.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        p.replace(default=settings[p.name]) if p.name in settings else p for p in signature.parameters.values()])
    doc = (f"{task.__name__} with {described}.\n\n"
           f"The {level} level of :class:`{task.__name__}` (from ``{task.__name__}.LEVELS[{level!r}]``); "
           "a keyword argument overrides a level's value.\n")
    cls = type(name, (task,), {
        "__module__": task.__module__,
        "__qualname__": name,
        "__doc__": doc,
        "__init__": __init__,
        "level": level,
        "level_settings": MappingProxyType(settings),
    })
    return cls
