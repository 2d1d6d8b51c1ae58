"""One writer per run directory, with real processes: two trainings started together into one new run
directory, --overwrite and --resume of a run still training, a bench run another process holds, and
the start-up cleanup of temporary files. The second writer is refused in one line naming the first;
the first one's files are left whole; a killed owner's lock is stale and taken over."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from rlmem.agents.checkpoints import CheckpointManager
from rlmem.bench import run_bench
from rlmem.cli import main

ROOT = Path(__file__).resolve().parents[1]
LOCK_NAME = ".lock"  # rlmem.locks.LOCK_NAME
TMAZE = "rlmem/PassiveTMazeEasy-v0"
TINY = ["--env", TMAZE, "--set", "hidden_size=16", "--set", "encoder_sizes=[16]", "--device", "cpu",
        "--threads", "1", "--set", "n_envs=8", "--set", "n_steps=16", "--set", "n_epochs=1"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _train(run_dir: Path, *args: str) -> subprocess.Popen:
    """`python -m rlmem train` of this checkout in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "rlmem", "train", *TINY, *args, "--run-dir", str(run_dir)],
                            cwd=run_dir.parent, env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _in_use(run_dir: Path, pid: int) -> str:
    """The one line a second writer gets (a regex)."""
    return (rf"run directory '{re.escape(str(run_dir))}' is in use: process {pid} on host "
            rf"{re.escape(socket.gethostname())} since [\d-]+ [\d:]+ \(rlmem train .*\) is writing it; one process "
            r"writes a run at a time: wait for it to end, or choose another directory")


def _wait_for(predicate, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            pytest.fail(f"the process ended ({process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.02)


def test_two_trainings_started_together_into_one_new_run_directory_one_is_refused(tmp_path):
    """Both start at once; whichever takes the directory first trains, the other is refused in one line
    naming it (exit 2) and writes nothing: the run directory holds the winner's run alone, whole."""
    run_dir = tmp_path / "run"
    # Long enough (a big final evaluation) that the second is sure to arrive while the first writes.
    args = ["--steps", "2048", "--checkpoint-every", "256", "--eval-episodes", "600"]
    processes = {seed: _train(run_dir, *args, "--seed", str(seed)) for seed in (1, 2)}
    outputs = {seed: process.communicate(timeout=300) for seed, process in processes.items()}
    codes = {seed: process.returncode for seed, process in processes.items()}
    assert sorted(codes.values()) == [0, 2], (codes, outputs)
    winner = next(seed for seed, code in codes.items() if code == 0)
    loser = 3 - winner
    out, err = outputs[loser]
    assert out == "" and re.fullmatch(rf"rlmem: error: {_in_use(run_dir, processes[winner].pid)}\n", err), err
    # The winner's run, whole: its config, every checkpoint of its seed, its evaluation; no lock left behind.
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == winner
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["final.pt", "step-000001280.pt", "step-000001536.pt", "step-000001792.pt"]
    for name in names:
        data = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert data["seed"] == winner
    assert torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["num_timesteps"] == 2048
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["steps"] == 2048 and result["n_episodes"] == 600 and result["eval_seed"] == winner + 10_000
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert not (run_dir / LOCK_NAME).exists() and not list(run_dir.rglob("*.tmp"))


def test_overwrite_and_resume_of_a_run_in_progress_are_refused_until_its_owner_dies(tmp_path, capsys):
    run_dir = tmp_path / "run"
    process = _train(run_dir, "--steps", "10000000", "--checkpoint-every", "256", "--seed", "5")
    try:
        _wait_for(lambda: list((run_dir / "checkpoints").glob("step-*[0-9].pt")), process, "a checkpoint")
        config = (run_dir / "config.yaml").read_text()
        capsys.readouterr()
        assert main(["train", *TINY, "--steps", "256", "--overwrite", "--run-dir", str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert re.fullmatch(rf"rlmem: error: {_in_use(run_dir, process.pid)}\n", err), err
        assert main(["train", "--resume", str(run_dir), "--threads", "1"]) == 2
        err = capsys.readouterr().err
        assert re.fullmatch(rf"rlmem: error: {_in_use(run_dir, process.pid)}\n", err), err
        # Nothing of the running training was cleared or replaced: its config and checkpoints are there.
        assert (run_dir / "config.yaml").read_text() == config
        assert list((run_dir / "checkpoints").glob("step-*[0-9].pt"))
    finally:
        process.kill()  # SIGKILL: no chance to release anything; the kernel drops the lock
        process.communicate(timeout=60)
    assert (run_dir / LOCK_NAME).exists()  # stale: its owner is dead
    newest = max(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*[0-9].pt"))
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--steps", str(newest + 256), "--threads", "1"]) == 0
    assert json.loads((run_dir / "eval.json").read_text())["steps"] == newest + 256
    assert not (run_dir / LOCK_NAME).exists()


def _hold(directory: Path) -> subprocess.Popen:
    """Another process that holds ``directory`` (until killed)."""
    code = ("import sys, time\nfrom rlmem.locks import claim\nwith claim(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(300)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(directory)], env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert holder.stdout.readline() == "held\n", holder.stderr.read()
    return holder


def test_a_bench_run_another_process_holds_is_left_alone(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"envs": [{"id": "rlmem/RepeatPreviousEasy-v0", "steps": 64, "threshold": 0.9}]}))
    out = tmp_path / "out"
    run_dir = out / "runs" / "RepeatPreviousEasy-v0" / "ppo-lstm" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "bench.log").write_text("the other process's log\n")
    holder = _hold(run_dir)
    try:
        lines: list[str] = []
        assert run_bench(suite, "ppo-lstm", 1, out, echo=lambda *a, **k: lines.append(" ".join(map(str, a)))) == 1
    finally:
        holder.kill()
        holder.communicate(timeout=60)
    failed = next(line for line in lines if "FAILED" in line)
    assert re.search(rf"FAILED \(RunDirectoryInUse: run directory '{re.escape(str(run_dir))}' is in use: process "
                     rf"{holder.pid} on host ", failed), failed
    assert (run_dir / "bench.log").read_text() == "the other process's log\n"  # not truncated by the second bench
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME, "bench.log"]


def test_a_claim_is_refused_to_a_second_process_and_free_again_in_the_first(tmp_path):
    from rlmem.locks import RunDirectoryInUse, claim

    directory = tmp_path / "run"
    holder = _hold(directory)
    try:
        with pytest.raises(RunDirectoryInUse, match=rf"is in use: process {holder.pid} on host "):
            with claim(directory):
                pass
    finally:
        holder.kill()
        holder.communicate(timeout=60)
    with claim(directory):
        with claim(directory / "checkpoints"):  # inside a directory this process holds: free
            assert (directory / LOCK_NAME).is_file()
    assert not (directory / LOCK_NAME).exists()


def test_start_up_cleanup_keeps_the_temporary_file_of_a_live_writer(tmp_path):
    """A temporary checkpoint of a process still writing it is not another run's leftover: it stays."""
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        live = tmp_path / f".step-000000128.pt.{writer.pid}.tmp"
        dead = tmp_path / f".step-000000064.pt.{_exited_pid()}.tmp"
        live.write_bytes(b"being written")
        dead.write_bytes(b"left by a killed process")
        CheckpointManager(tmp_path, 64, 3)
        assert live.read_bytes() == b"being written" and not dead.exists()
    finally:
        writer.kill()
        writer.wait(timeout=60)


def _exited_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    return process.pid
