"""Data-parallel RecurrentPPO under torchrun: 2 CPU processes over Gloo, as real subprocesses.

The processes run this worktree's code (PYTHONPATH) with one torch thread each.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from learning import learned_by_some_seed
from rlmem.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(args: list[str], port: int, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_port", str(port),
            *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(args: list[str], timeout: float = 240, nproc: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run(_torchrun(args, _free_port(), nproc), env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _train_args(run_dir: Path, *extra: str) -> list[str]:
    return ["-m", "rlmem", "train", "--run-dir", str(run_dir), "--device", "cpu", "--threads", "1",
            "--dist-timeout", "20", *extra]


def test_ranks_hold_identical_weights_after_every_update(tmp_path):
    """Each rank hashes its flattened weights after every iteration: the hashes agree, and move."""
    result = _run([str(ROOT / "tests" / "distributed_worker.py"), str(tmp_path)], timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["initial"] == rank1["initial"]
    assert rank0["hashes"] == rank1["hashes"] and len(rank0["hashes"]) == 6
    assert len(set(rank0["hashes"])) == 6 and rank0["initial"] not in rank0["hashes"]  # every update changed them
    # target_kl stopped some updates early, on both ranks at the same epoch (a disagreement would deadlock)
    assert rank0["epochs"] == rank1["epochs"] and min(rank0["epochs"]) < 4
    assert rank0["first_obs"] != rank1["first_obs"]  # each rank steps its own envs from its own seed
    assert rank0["steps"] == [256 * (i + 1) for i in range(6)]  # global env-steps: 2 ranks x 8 envs x 16 steps


def test_rank_0_alone_writes_the_run_and_resume_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    first = _run(_train_args(run_dir, "--steps", "2048", "--n-envs", "8", "--set", "n_steps=32",
                             "--checkpoint-every", "1024", "--eval-episodes", "8"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("training ppo on") == 1 and first.stdout.count("eval: mean_return") == 1
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # one writer: rank 0
    # iterations of 2 ranks x 8 envs x 32 steps = 512: a checkpoint at 1024, then final.pt at 2048
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["final.pt", "step-000001024.pt"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["world_size"] == 2
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["steps"] == 2048 and result["world_size"] == 2 and result["n_episodes"] == 8
    assert result["env_steps_per_s"] == pytest.approx(2048 / result["wall_clock_s"], rel=0.01)  # global figure

    before = (run_dir / "eval.json").read_text()
    refused = _run(_train_args(run_dir, "--steps", "2048"), timeout=120)  # both ranks stop: no hang
    assert refused.returncode != 0 and "already holds a run (config.yaml)" in refused.stderr
    assert (run_dir / "eval.json").read_text() == before

    resumed = _run(["-m", "rlmem", "train", "--resume", str(run_dir), "--steps", "3072", "--threads", "1",
                    "--dist-timeout", "20"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("resuming ppo") == 1
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["steps"] == 3072 and result["resumed_from_step"] == 2048 and result["world_size"] == 2
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # rank 0's, once per start


def test_dqn_says_data_parallel_is_not_supported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--algo", "dqn", "--run-dir", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlmem: error: data-parallel training (torchrun, WORLD_SIZE=2) is not supported yet for dqn")
    assert "\n" not in err and not (tmp_path / "run").exists()


def _rank_pids(port: int) -> dict[int, int]:
    """The pids of the torchrun workers listening on ``port``, by rank (read from /proc)."""
    pids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except OSError:
            continue
        if env.get("MASTER_PORT") == str(port) and "RANK" in env and "TORCHELASTIC_RUN_ID" in env:
            pids[int(env["RANK"])] = int(entry.name)
    return pids


def _start_long_run(tmp_path: Path, timeout_s: str):
    port = _free_port()
    run_dir = tmp_path / "run"
    args = ["-m", "rlmem", "train", "--run-dir", str(run_dir), "--device", "cpu", "--threads", "1",
            "--dist-timeout", timeout_s, "--steps", "100000000", "--n-envs", "8", "--set", "n_steps=16"]
    proc = subprocess.Popen(_torchrun(args, port), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not list(run_dir.glob("events.out.tfevents.*")):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    time.sleep(1.0)  # a few iterations in
    pids = _rank_pids(port)
    assert sorted(pids) == [0, 1]
    return proc, pids


def test_a_killed_rank_stops_the_other_with_an_error(tmp_path):
    proc, pids = _start_long_run(tmp_path, "20")
    killed = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - killed < 60
    assert proc.returncode != 0
    assert "exitcode  : -9" in err and "rank      : 1" in err  # torchrun names the dead rank


def test_a_stalled_rank_makes_the_other_fail_after_the_timeout(tmp_path):
    """Rank 1 stopped (SIGSTOP) keeps its sockets open: only the collective timeout frees rank 0."""
    proc, pids = _start_long_run(tmp_path, "5")
    os.kill(pids[1], signal.SIGSTOP)
    stalled = time.monotonic()
    try:
        while Path(f"/proc/{pids[0]}").exists() and time.monotonic() - stalled < 60:
            time.sleep(0.2)
        waited = time.monotonic() - stalled
    finally:
        os.kill(pids[1], signal.SIGCONT)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert 4 < waited < 40  # the 5 s timeout, plus the iteration in progress
    assert proc.returncode != 0
    assert "rlmem: error: rank 0 of 2: a collective failed" in err and "--dist-timeout" in err


@pytest.mark.slow
def test_two_processes_learn_repeat_previous_easy(tmp_path):
    """2 ranks x 32 envs (64 in all, as the single-process default that tests/test_ppo_learning.py pins
    learning RepeatPreviousEasy) with the ppo defaults: the greedy policy repeats the previous bit."""
    def train(seed):
        run_dir = tmp_path / f"seed{seed}"
        result = _run(_train_args(run_dir, "--steps", "400000", "--n-envs", "32", "--eval-episodes", "100",
                                  "--checkpoint-every", "1000000", "--seed", str(seed)), timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return run_dir

    learned_by_some_seed(train, lambda run_dir: json.loads((run_dir / "eval.json").read_text())["mean_return"], 0.9)
