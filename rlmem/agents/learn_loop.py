"""The learn loop, written once for every agent: iterations of collect + update until the plan's end.

Around each iteration (:meth:`~rlmem.agents.base.RecurrentAgent.collect` and ``update``):
logging and progress (:mod:`~rlmem.agents.training_log`), callbacks, checkpoints every
``checkpoint_every`` env-steps (:mod:`~rlmem.agents.checkpoints`), a checkpoint and a clean
stop on SIGINT / SIGTERM (:mod:`~rlmem.agents.stops`), the guard that stops a run whose loss
or weights become nan or inf, and one line for an iteration that ran out of memory. Under
torchrun every rank runs it in step with the others (:mod:`rlmem.distributed`).
:class:`LearnLoop` is a base class of :class:`~rlmem.agents.base.RecurrentAgent`, which
supplies the iteration, the networks and the counters it reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlmem import distributed
from rlmem.agents.checkpoints import CheckpointManager
from rlmem.agents.stops import StopSignals, StorageError, TrainingDiverged, TrainingInterrupted, TrainingOutOfMemory
from rlmem.agents.training_log import TrainingLog, markdown_table
from rlmem.checks import check_positive_int
from rlmem.envs.contract import EnvError

DEFAULT_CHECKPOINT_EVERY = 100_000
"""Env-steps between training checkpoints (``rlmem train --checkpoint-every``)."""
DEFAULT_KEEP_CHECKPOINTS = 3
"""Periodic checkpoints kept (``rlmem train --keep-checkpoints``); ``final.pt`` is kept besides."""

Callback = Callable[[Any], Any]


class LearnLoop:
    """``learn`` / ``resume`` and what the loop checks each iteration (see the module docstring)."""

    @property
    def planned_end(self) -> int | None:
        """The env-step count the learn call in progress (or last, or restored) trains to; None before any."""
        return self._plan["end"] if self._plan is not None else None

    def learn(self, total_timesteps: int, callback: Callback | None = None, progress_bar: bool | None = None,
              checkpoint_dir: str | Path | None = None, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
              keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS) -> LearnLoop:
        """Train for ``total_timesteps`` more env-steps (rounded up to whole iterations); call again to continue.

        ``callback(agent)`` runs after every iteration; returning False stops training.
        ``progress_bar``: True, False, or None for a bar on a terminal and plain lines otherwise.

        With ``checkpoint_dir``, training checkpoints go there: ``step-<N>.pt`` every
        ``checkpoint_every`` env-steps (rounded up to whole iterations; the newest
        ``keep_checkpoints`` are kept) and ``final.pt`` at the end; :meth:`restore` and
        :meth:`resume` continue from one exactly. SIGINT or SIGTERM then writes a checkpoint at
        the end of the iteration and raises :class:`TrainingInterrupted` (a second signal acts
        at once). A nan or inf loss or weight raises :class:`TrainingDiverged`, naming the step
        and the last checkpoint, and writes nothing.
        """
        check_positive_int("total_timesteps", total_timesteps)
        batch = self.steps_per_iteration
        iterations = max(1, -(-total_timesteps // batch))
        self._plan = {"start": self.num_timesteps, "end": self.num_timesteps + iterations * batch}
        return self._train(callback, progress_bar, checkpoint_dir, checkpoint_every, keep_checkpoints)

    def plan_end(self, until: int) -> int:
        """The env-step count ``resume(until)`` trains to: ``until`` rounded up to whole iterations of the
        learn call in progress (the same rounding ``learn`` applied to its own total)."""
        if self._plan is None:
            raise ValueError("nothing to resume: this agent has no learn call in progress (use learn)")
        start, batch = self._plan["start"], self.steps_per_iteration
        return start + max(1, -(-(until - start) // batch)) * batch

    def resume(self, until: int | None = None, callback: Callback | None = None, progress_bar: bool | None = None,
               checkpoint_dir: str | Path | None = None, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
               keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS) -> LearnLoop:
        """Finish the learn call a :meth:`restore`-d checkpoint was written in, as if it had never stopped.

        ``until``: train on to this many env-steps in all instead (rounded up to whole
        iterations of the learn call; a linear schedule then stretches to the new end).
        The other arguments are :meth:`learn`'s.
        """
        if self._plan is None:
            raise ValueError("nothing to resume: this agent has no learn call in progress (use learn)")
        if until is not None:
            check_positive_int("until", until)
            if until < self.num_timesteps:
                raise ValueError(f"cannot resume until step {until:,}: the agent has trained {self.num_timesteps:,}")
            self._plan["end"] = self.plan_end(until)
        return self._train(callback, progress_bar, checkpoint_dir, checkpoint_every, keep_checkpoints)

    def _train(self, callback: Callback | None, progress_bar: bool | None, checkpoint_dir: str | Path | None,
               checkpoint_every: int, keep_checkpoints: int) -> LearnLoop:
        """Iterations until the plan's end: log, guard, checkpoint, stop on a signal, call back.

        In a data-parallel run (:mod:`rlmem.distributed`) every rank runs this loop in step with
        the others: rank 0's weights are copied to all first, episode statistics and stop signals
        are summed over the ranks each iteration, and only rank 0 logs and writes checkpoints.
        """
        parallel = distributed.active()
        if parallel and not self.data_parallel:
            raise ValueError(f"data-parallel training (torchrun, WORLD_SIZE={distributed.world_size()}) is not "
                             f"supported yet for {self.algo}; run it in one process (RecurrentPPO supports it)")
        main = distributed.is_main()
        end = self._plan["end"]
        checkpoints = None
        if checkpoint_dir is not None and main:
            checkpoints = CheckpointManager(checkpoint_dir, checkpoint_every, keep_checkpoints)
        self._checkpoints = checkpoints
        self._prepare_learning()  # before the broadcast: the optimizer's state is part of what ranks share
        if parallel:
            distributed.broadcast_parameters(self._modules().values())
            if not main:  # its own sampling stream, also after a resume (which loaded rank 0's generators)
                torch.manual_seed(self.env_seed + self.num_timesteps)
                self.generator.manual_seed(self.env_seed + self.num_timesteps)
        start_steps = self.num_timesteps
        try:
            # What an earlier writer logged after this step (a run killed after its last checkpoint) is dropped.
            log = TrainingLog(self.tensorboard_log if main else None, max(end - start_steps, 1), progress_bar,
                              self.verbose if main else 0, purge_step=start_steps + 1 if start_steps else None)
            if self.num_timesteps == 0:
                log.text("hyperparameters", markdown_table({**dataclasses.asdict(self.config), "seed": self.seed}))
            stop = StopSignals() if checkpoint_dir is not None else contextlib.nullcontext()
            try:
                self._loop(log, stop, end, start_steps, parallel, checkpoints, checkpoint_dir, callback)
            except BaseException:
                log.close(quiet=True)  # the error that stopped the run is the one to tell
                raise
            log.close()
        except StorageError as error:  # a file refused or vanished: one line, and the checkpoint to go on from
            kept = f"; {checkpoints.kept()}" if checkpoints is not None else ""
            raise StorageError(f"training stopped at step {self.num_timesteps:,}: {error}{kept}") from None
        except EnvError as error:  # the env broke its contract: said as the env's fault, not as a diverged loss
            if self.num_timesteps == 0:
                raise  # at its first reset: the env's line alone
            kept = f"; {checkpoints.kept()}" if checkpoints is not None else ""
            raise EnvError(f"training stopped at step {self.num_timesteps:,}: {error}; nothing was saved from "
                           f"this iteration{kept}") from None
        return self

    def _loop(self, log: TrainingLog, stop: Any, end: int, start_steps: int, parallel: bool,
              checkpoints: CheckpointManager | None, checkpoint_dir: str | Path | None,
              callback: Callback | None) -> None:
        """The iterations of :meth:`_train` (which set them up and says how they ended)."""
        with stop:
            self.start()
            start_time = time.perf_counter()
            while self.num_timesteps < end:
                previous = self.num_timesteps
                try:
                    episodes, stats = self._iteration()
                except torch.OutOfMemoryError as error:
                    raise TrainingOutOfMemory(self._out_of_memory_message(error)) from None
                if parallel:  # every rank's episodes; a signal on any rank stops all at this iteration
                    distributed.all_reduce_(episodes)
                    signal_seen = torch.tensor([getattr(stop, "signum", None) or 0])
                    distributed.all_reduce_(signal_seen, op="max")
                    if signal_seen.item() and checkpoint_dir is not None and stop.signum is None:
                        stop.signum = int(signal_seen.item())
                sps = (self.num_timesteps - start_steps) / (time.perf_counter() - start_time)
                ep_count = int(episodes[2])
                stats = {
                    "charts/episodic_return": float(episodes[0] / ep_count) if ep_count else None,
                    "charts/episodic_length": float(episodes[1] / ep_count) if ep_count else None,
                    "charts/SPS": sps,
                    **stats,
                }
                self.last_log = {k: v for k, v in stats.items() if v is not None}
                self._check_finite(stats.get("losses/loss"))
                log.scalars(stats, self.num_timesteps)
                log.progress(self.num_timesteps - start_steps, self.num_timesteps, sps,
                             stats["charts/episodic_return"])
                if checkpoints is not None:
                    due = self.num_timesteps < end and checkpoints.due(self.num_timesteps, previous)
                    if due or stop.signum is not None:
                        log.flush()  # the events up to a checkpoint are on disk before it
                    if due:
                        checkpoints.write(self)
                    if stop.signum is not None:
                        path = checkpoints.write(self, final=self.num_timesteps >= end)
                        raise TrainingInterrupted(stop.signum, self.num_timesteps, path)
                elif checkpoint_dir is not None and stop.signum is not None:  # rank > 0: rank 0 writes it
                    raise TrainingInterrupted(stop.signum, self.num_timesteps, Path(checkpoint_dir))
                if callback is not None and callback(self) is False:
                    break
            if checkpoints is not None:
                log.flush()
                checkpoints.write(self, final=True)
                if stop.signum is not None:
                    raise TrainingInterrupted(stop.signum, self.num_timesteps, checkpoints.last_path)
            elif checkpoint_dir is not None and stop.signum is not None:
                raise TrainingInterrupted(stop.signum, self.num_timesteps, Path(checkpoint_dir))

    def _modules(self) -> dict[str, torch.nn.Module]:
        """The networks whose weights are saved (and checked for nan / inf)."""
        raise NotImplementedError

    #: What to change when an iteration does not fit in memory (agents name their own sizes).
    memory_remedy = "lower n_envs"

    def _out_of_memory_message(self, error: Exception) -> str:
        """One line for an iteration that ran out of device memory: sizes, free memory, what to change."""
        free = ""
        if self.device.type == "cuda":
            available, total = torch.cuda.mem_get_info(self.device)
            free = f" ({available:,} of {total:,} bytes free after it)"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        checkpoints = getattr(self, "_checkpoints", None)
        kept = ""
        if checkpoints is not None and checkpoints.last_path is not None:
            kept = f"; the last checkpoint is {checkpoints.last_path}"
        return (f"training stopped at step {self.num_timesteps:,}: an iteration of {self.algo} with n_envs "
                f"{self.config.n_envs:,} ran out of memory on {self.device}{free}: {first_line}; "
                f"{self.memory_remedy}; nothing was saved from this iteration{kept}")

    def _check_finite(self, loss: float | None = None) -> None:
        """Raise TrainingDiverged if ``loss`` or a weight is nan or inf (one host read for all weights)."""
        problem = None
        if loss is not None and not math.isfinite(loss):
            problem = f"the loss is {loss}"
        else:
            params = [(f"{name}.{p_name}", p) for name, module in self._modules().items()
                      for p_name, p in module.named_parameters()]
            if not bool(torch.stack([torch.isfinite(p).all() for _, p in params]).all()):
                bad = next(name for name, p in params if not bool(torch.isfinite(p).all()))
                problem = f"weight {bad} holds nan or inf"
        if problem is None:
            return
        checkpoints = getattr(self, "_checkpoints", None)
        if checkpoints is None:
            where = ""
        elif checkpoints.last_path is None:
            where = "; no checkpoint had been written yet"
        else:
            where = f"; the last good checkpoint is {checkpoints.last_path} (left as it was)"
        raise TrainingDiverged(f"training stopped at step {self.num_timesteps:,}: {problem}; nothing was saved "
                               f"from these weights{where}")


__all__ = ["DEFAULT_CHECKPOINT_EVERY", "DEFAULT_KEEP_CHECKPOINTS", "Callback", "LearnLoop"]
