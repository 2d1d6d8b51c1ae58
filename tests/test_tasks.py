"""What every registered task must do, tested once for all of them: a new task is covered by being registered.

For every task class in the registry: its levels are its ``LEVELS`` table (importable classes, names,
docstrings, keyword overrides); seeding; bad keyword arguments; out-of-range actions; its lag facts;
and, on its Easy level, its reference oracle (:meth:`TorchVecEnv.oracle_actions`) returns exactly 1.0
per episode and a uniformly random policy's mean return is its ``chance_return()``.

What only one task does (its Python reference, its saved-state history, what its observations show)
stays in that task's own test file.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pickle
import re

import gymnasium as gym
import pytest
import torch

from rlmem.envs.registry import LEVELS, TASKS
from rlmem.probes import lag_task

#: Every task class, in registry order (a level's task is its task_class).
TASK_CLASSES = list(dict.fromkeys(cls.task_class for cls in TASKS.values()))
#: Keyword arguments for which 0 is a valid setting (every other numeric one must refuse 0).
ZERO_IS_VALID = {("RepeatPrevious", "k"),  # k=0: name the symbol shown now
                 ("MaskedCartPole", "noise_std"),  # no observation noise (the Easy level)
                 ("PixelRepeatPrevious", "k"), ("PixelRepeatPrevious", "noise")}  # clean glyphs
#: Tasks whose chance_return() is a documented approximation, and by how much it may be off.
#: MaskedCartPole's "about 22 steps": a random policy's first episode lasts 22.30 +- 0.03 steps
#: (measured over 2e5 envs), so 22 is within half a step.
APPROXIMATE_CHANCE = {"MaskedCartPole": lambda env: 0.5 / env.max_steps}


def _name(cls: type) -> str:
    return cls.__name__


def _easy(task: type) -> type:
    return TASKS[f"rlmem/{task.__name__}Easy-v0"]


def random_actions(env, gen: torch.Generator) -> torch.Tensor:
    """Uniformly random actions for every env of ``env`` (rlmem's tasks all act in a Discrete space)."""
    space = env.single_action_space
    assert isinstance(space, gym.spaces.Discrete), f"extend random_actions to {space}"
    return torch.randint(int(space.n), (env.num_envs,), generator=gen) + int(space.start)


# ---------------------------------------------------------------------- levels as data
@pytest.mark.parametrize("task", TASK_CLASSES, ids=_name)
def test_the_level_classes_are_the_task_table(task):
    module = importlib.import_module(task.__module__)
    assert tuple(task.LEVELS) == LEVELS
    assert task.level is None and task.task_class is task and not task.level_settings
    doc = " ".join(inspect.getdoc(task).split())
    assert "## Levels" in doc, "the task's docstring states its levels"
    levels_section = doc.split("## Levels", 1)[1].split("##", 1)[0]
    for level, settings in task.LEVELS.items():
        cls = TASKS[f"rlmem/{task.__name__}{level}-v0"]
        name = task.__name__ + level
        # Importable by its name, so callers, scripts and pickles find it; saved states record the name.
        assert getattr(module, name) is cls and pickle.loads(pickle.dumps(cls)) is cls
        assert (cls.__name__, cls.__qualname__, cls.__module__) == (name, name, task.__module__)
        assert issubclass(cls, task) and cls.__bases__ == (task,)
        assert cls.level == level and cls.task_class is task and dict(cls.level_settings) == settings
        shown = ", ".join(f"``{key}={value!r}``" for key, value in settings.items())
        assert cls.__doc__.splitlines()[0] == f"{task.__name__} with {shown}."
        # The task's docstring says the same as the table.
        assert f"{level} ``{', '.join(f'{k}={v!r}' for k, v in settings.items())}``" in levels_section
        env = cls(num_envs=2)
        assert {key: getattr(env, key) for key in settings} == settings
        assert env.state_dict()["type"] == name
        # The task's arguments, positionally too; a keyword overrides the level's value.
        other = next(s for lvl, s in task.LEVELS.items() if lvl != level)
        env = cls(3, "cpu", 5, False, **other)
        assert env.num_envs == 3 and {key: getattr(env, key) for key in other} == other


def test_a_level_table_naming_an_unknown_argument_fails_at_import():
    from rlmem.envs.levels import make_levels
    from rlmem.envs.passive_tmaze import PassiveTMaze

    class Typo(PassiveTMaze):
        LEVELS = {"Easy": {"corridor_lenght": 10}}

    with pytest.raises(TypeError, match="Typo.LEVELS\\['Easy'\\] sets corridor_lenght"):
        make_levels(Typo)


# ---------------------------------------------------------------------- seeding
def _trajectory(env, seed: int | None, steps: int | None = None) -> tuple[torch.Tensor, ...]:
    """Observations, rewards and end flags of ``steps`` random steps after ``reset(seed=seed)``;
    without ``steps``, until every env has been through an autoreset (at most max_episode_steps + 1)."""
    obs, _ = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(7)
    all_obs, rewards, ends = [obs], [], []
    reset = torch.zeros(env.num_envs, dtype=torch.bool)
    for _ in range(steps if steps is not None else env.max_episode_steps + 1):
        obs, reward, terminated, truncated, _ = env.step(random_actions(env, gen))
        all_obs.append(obs)
        rewards.append(reward)
        ends.append(torch.stack((terminated, truncated)))
        reset |= terminated | truncated
        if steps is None and bool(reset.all()):
            break
    return torch.stack(all_obs), torch.stack(rewards), torch.stack(ends)


@pytest.mark.parametrize("task", TASK_CLASSES, ids=_name)
def test_same_seed_same_trajectory_and_reset_reseeds(task):
    level = _easy(task)
    a = _trajectory(level(8, seed=0), seed=123)  # through an autoreset of every env
    steps = a[1].shape[0]
    other = level(8, seed=99)
    c = _trajectory(other, seed=124, steps=steps)
    assert not torch.equal(a[0], c[0])
    if not bool((a[1] == a[1].flatten()[0]).all()):  # rewards that vary (MaskedCartPole's do not)
        assert not torch.equal(a[1], c[1])
    # reset(seed) re-seeds: a used batch built with another seed replays the first one exactly.
    for x, y in zip(a, _trajectory(other, seed=123, steps=steps), strict=True):
        assert torch.equal(x, y)
    # The constructor's seed alone is deterministic too, and another one differs.
    steps = min(steps, 20)
    d, e = _trajectory(level(8, seed=5), None, steps), _trajectory(level(8, seed=5), None, steps)
    for x, y in zip(d, e, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(d[0], _trajectory(level(8, seed=6), None, steps)[0])


# ---------------------------------------------------------------------- bad keyword arguments
def _bad_kwargs() -> list[tuple[type, str, object]]:
    """(task, field, value) for every numeric keyword argument of every task: negative, bool, string,
    a float for an integer field, and 0 where 0 is not a valid setting."""
    cases = []
    for task in TASK_CLASSES:
        for name, parameter in inspect.signature(task).parameters.items():
            default = parameter.default
            if parameter.kind is not inspect.Parameter.KEYWORD_ONLY or isinstance(default, bool):
                continue
            if isinstance(default, int):
                values = [-1, True, str(default), float(default), default + 0.5]
            elif isinstance(default, float):
                values = [-1.0, True, str(default)]
            else:
                continue
            if (task.__name__, name) not in ZERO_IS_VALID:
                values.append(type(default)(0))
            cases += [(task, name, value) for value in values]
    return cases


@pytest.mark.parametrize("task, field, value", _bad_kwargs(),
                         ids=lambda x: x.__name__ if isinstance(x, type) else repr(x))
def test_a_bad_value_is_a_value_error_naming_the_field(task, field, value):
    with pytest.raises(ValueError, match=rf"^{re.escape(field)} must"):
        task(num_envs=2, **{field: value})


@pytest.mark.parametrize("task", TASK_CLASSES, ids=_name)
def test_unknown_kwargs_num_envs_and_seed_are_refused(task):
    for cls in (task, _easy(task)):
        with pytest.raises((TypeError, ValueError), match="no_such_setting"):
            cls(num_envs=2, no_such_setting=1)
        with pytest.raises(ValueError, match="^num_envs must"):
            cls(num_envs=0)
        with pytest.raises(ValueError, match="^seed must"):
            cls(num_envs=2, seed=-1)
    # Where 0 is a valid setting, it builds.
    for name, field in ZERO_IS_VALID:
        if name == task.__name__:
            assert getattr(task(num_envs=2, **{field: 0}), field) == 0


# ---------------------------------------------------------------------- actions
@pytest.mark.parametrize("task", TASK_CLASSES, ids=_name)
def test_check_actions_refuses_out_of_range_actions(task):
    env = _easy(task)(4, seed=0, check_actions=True)
    n = int(env.single_action_space.n)
    env.reset()
    env.step(torch.tensor([0, n - 1, 0, n - 1]))  # in range: fine
    for bad in (n, -1):
        with pytest.raises(ValueError, match="outside the action space"):
            env.step(torch.tensor([0, bad, 0, 0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("task", TASK_CLASSES, ids=_name)
def test_step_does_not_synchronise_on_cuda(task):
    env = _easy(task)(64, device="cuda", seed=0)
    env.reset()
    actions = torch.zeros(64, dtype=torch.int64, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2 * env.max_episode_steps):  # through an autoreset
            env.step(actions)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ---------------------------------------------------------------------- the oracle: exactly 1.0
@pytest.mark.parametrize("task", TASK_CLASSES, ids=_name)
def test_the_oracle_returns_exactly_one_per_episode(task):
    """The task's reference oracle (optimal actions read from its hidden state) plays whole episodes
    on every env of the Easy level, two in a row (through an autoreset; one where an episode is
    longer than 250 steps): every one lasts the longest an episode can and returns 1.0 (within
    1e-6), the sum of its rewards, none of them negative."""
    n = 64
    env = _easy(task)(num_envs=n, seed=0)
    env.reset(seed=1)
    length = env.max_episode_steps
    episodes = 2 if length <= 250 else 1
    rewards, ends, returns = [], [], []
    for _ in range(episodes * length):
        _, reward, _, _, info = env.step(env.oracle_actions())
        rewards.append(reward)
        ends.append(info["_episode"])
        returns.append(info["episode"]["r"])
    rewards, ends = torch.stack(rewards).double(), torch.stack(ends)
    last_steps = torch.arange(episodes * length) % length == length - 1
    assert torch.equal(ends, last_steps.unsqueeze(1).expand(-1, n))  # every episode lasts `length` steps
    returns = torch.stack(returns)[last_steps]  # [episodes, n]
    assert torch.allclose(returns, torch.ones_like(returns), atol=1e-6, rtol=0)
    assert bool((rewards >= 0).all())  # an optimal policy is never penalised
    torch.testing.assert_close(rewards.view(episodes, length, n).sum(1), returns, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- chance
@pytest.mark.parametrize("task", TASK_CLASSES, ids=_name)
def test_a_random_policy_returns_the_chance_return(task):
    """The first episode of each of 4096 envs of the Easy level under uniformly random actions (the
    first, so that short episodes are not favoured). The returns are independent, so their mean has
    standard error std / sqrt(4096); it must lie within 5 of them of ``chance_return()`` (a correct
    value fails with probability ~6e-7, and the test is seeded), plus the documented slack of an
    approximate one (:data:`APPROXIMATE_CHANCE`)."""
    n = 4096
    env = _easy(task)(num_envs=n, seed=0)
    chance = env.chance_return()
    assert chance is not None, f"{task.__name__} must know its chance return (bench normalises by it)"
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(4)
    first = torch.full((n,), math.nan, dtype=torch.float64)
    for _ in range(env.max_episode_steps):
        _, _, _, _, info = env.step(random_actions(env, gen))
        done = info["_episode"] & first.isnan()
        first = torch.where(done, info["episode"]["r"], first)
        if not bool(first.isnan().any()):
            break
    assert not bool(first.isnan().any())  # every env finished an episode within max_episode_steps
    tolerance = 5 * first.std().item() / math.sqrt(n) + APPROXIMATE_CHANCE.get(task.__name__, lambda env: 0.0)(env)
    assert abs(first.mean().item() - chance) < tolerance, (first.mean().item(), chance, tolerance)


# ---------------------------------------------------------------------- the lag a recall curve sweeps
@pytest.mark.parametrize("task", TASK_CLASSES, ids=_name)
def test_the_lag_facts_agree_with_the_task(task):
    if task.lag_parameter is None:
        with pytest.raises(ValueError, match="has no lag to sweep; recall curves need one of RepeatPrevious"):
            lag_task(f"rlmem/{task.__name__}Easy-v0")
        return
    for level in task.LEVELS:
        env_id = f"rlmem/{task.__name__}{level}-v0"
        env = TASKS[env_id](num_envs=1)
        assert lag_task(env_id)[0] is task
        lag = getattr(env, task.lag_parameter)
        # At the level's own lag the kwargs rebuild the level; at another lag only the lag changes.
        same = task(**env.lag_kwargs(lag))
        assert same.max_episode_steps == env.max_episode_steps
        assert all(getattr(same, key) == value for key, value in env.level_settings.items())
        assert getattr(task(**env.lag_kwargs(lag + 3)), task.lag_parameter) == lag + 3
        # A perfect return is every recall right; the chance return is the chance accuracy.
        assert env.recall_accuracy(1.0) == 1.0
        assert env.recall_accuracy(env.chance_return()) == pytest.approx(env.chance_accuracy())
