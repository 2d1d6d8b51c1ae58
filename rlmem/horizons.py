"""How far back each agent's memory reaches, measured by training at each gap of a task family.

A horizon suite (``envs/horizon.yaml``) trains every agent once per gap (PassiveTMaze's corridor
length, RepeatPrevious's k, MemoryChain's memory length, RepeatFirst's length). From the
finished runs, per agent and family:

* a gap is *solved* when at least half of the agent's seeds at it succeed (their final
  deterministic evaluation's mean return reaches the entry's threshold);
* the *horizon* is the largest gap that is solved with every smaller gap of the family solved too
  (:func:`horizon`; :data:`HORIZON_RULE`);
* the *memory score* is the fraction of the family's gaps solved (bsuite's memory score).

And before any run, :func:`unroll_warning`: a gradient reaches no further back than the agent's
unroll (PPO's ``n_steps``, DQN's ``seq_len`` less its burn-in), so an unroll that is not longer
than the gap gets one warning line per (env, agent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HORIZON_RULE = ("a gap is solved when at least half of the agent's seeds at it succeed (final deterministic "
                "evaluation's mean return >= the threshold); horizon = the largest gap solved with every smaller "
                "gap of the family solved too; memory score = the fraction of the family's gaps solved")
"""The rule behind :func:`horizon` and :func:`memory_score`, written next to every horizon the bench reports."""


def horizon(gaps: Sequence[int], solved: Sequence[bool | None]) -> int | None:
    """The largest gap such that it and every smaller gap are solved; None if the smallest is not.

    ``solved[i]`` is None for a gap with no finished run: the horizon stops before it (it is not
    known to be solved). ``horizon([1, 2, 4, 8], [True, True, False, True]) == 2``.
    """
    if len(gaps) != len(solved):
        raise ValueError(f"{len(gaps)} gaps but {len(solved)} solved flags")
    reached = None
    for gap, ok in sorted(zip(gaps, solved, strict=True), key=lambda pair: pair[0]):
        if not ok:
            break
        reached = gap
    return reached


def memory_score(solved: Sequence[bool | None]) -> float:
    """The fraction of gaps solved (a gap not run counts as not solved)."""
    return sum(bool(s) for s in solved) / len(solved) if solved else 0.0


def gap_solved(successes: Sequence[bool]) -> bool | None:
    """Whether the runs of one gap (its seeds) solve it: at least half succeed; None if none finished."""
    return None if not successes else 2 * sum(map(bool, successes)) >= len(successes)


def horizon_text(gaps: Sequence[int], solved: Sequence[bool | None]) -> str:
    """The horizon as read in a table: ``100``, ``>= 1000`` (every gap solved: at least that far),
    ``< 10`` (not even the smallest gap)."""
    reached = horizon(gaps, solved)
    if reached is None:
        return f"< {min(gaps)}"
    return f">= {reached}" if reached == max(gaps) else str(reached)


def family_rows(families: dict[str, list[Any]], agents: Sequence[str],
                groups: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (agent, family) with runs: gaps, per-gap solved flags, horizon, memory score.

    ``families``: family -> its :class:`~rlmem.suites.SuiteEnv` runs; ``groups``: (run name, agent)
    -> the results of its seeds.
    """
    rows = []
    for agent in agents:
        for family, envs in families.items():
            if not any((env.name, agent) in groups for env in envs):
                continue
            gaps = [env.gap for env in envs]
            solved = [gap_solved([r["success"] for r in groups.get((env.name, agent), [])]) for env in envs]
            rows.append({"agent": agent, "family": family, "gap_parameter": envs[0].gap_parameter, "gaps": gaps,
                         "solved": solved, "horizon": horizon(gaps, solved), "horizon_text": horizon_text(gaps, solved),
                         "memory_score": memory_score(solved), "gaps_run": sum(s is not None for s in solved)})
    return rows


# ---------------------------------------------------------------------- before the runs
def unroll(spec: Any) -> tuple[int, str] | None:
    """How many steps back the agent's gradient reaches, and which settings say so; None: not known."""
    h = spec.hyperparameters
    if spec.algo == "dqn":
        return h["seq_len"] - h["burn_in"], f"seq_len {h['seq_len']} - burn_in {h['burn_in']}"
    if "n_steps" in h:
        return h["n_steps"], f"n_steps {h['n_steps']}"
    return None


def unroll_warning(spec: Any, agent: str, name: str, gap: int | None, gap_parameter: str | None) -> str | None:
    """One line where ``agent``'s unroll is not longer than the gap it is asked to learn, else None."""
    reach = unroll(spec) if gap is not None else None
    if reach is None or reach[0] > gap:
        return None
    setting = "seq_len" if spec.algo == "dqn" else "n_steps"
    return (f"warning: {name}: {agent}'s unroll of {reach[0]} steps ({reach[1]}) is not longer than the gap it "
            f"must learn ({gap_parameter} {gap}): no gradient reaches the cue; give the suite entry "
            f"hyperparameters: {{{spec.algo}: {{{setting}: ...}}}} for an unroll above {gap}")


__all__ = ["HORIZON_RULE", "family_rows", "gap_solved", "horizon", "horizon_text", "memory_score", "unroll",
           "unroll_warning"]
