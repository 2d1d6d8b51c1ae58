"""`rlmem train --resume` with real processes and real signals: SIGINT / SIGTERM write a checkpoint and
exit cleanly, SIGKILL loses at most one checkpoint interval, and the resumed run is the run that never
stopped (weights, evaluation, TensorBoard curves). Tiny runs: a few seconds each, mostly process start-up."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlmem.cli import main

ROOT = Path(__file__).resolve().parents[1]
TMAZE = "rlmem/PassiveTMazeEasy-v0"
COMMON = ["--env", TMAZE, "--set", "hidden_size=16", "--set", "encoder_sizes=[16]", "--eval-episodes", "4",
          "--device", "cpu", "--threads", "1"]
PPO = ["--algo", "ppo", *COMMON, "--set", "n_envs=8", "--set", "n_steps=16", "--set", "n_epochs=1",
       "--checkpoint-every", "256"]  # 128 steps an iteration
DQN = ["--algo", "dqn", *COMMON, "--n-envs", "8", "--set", "seq_len=8", "--set", "overlap=4", "--set", "burn_in=2",
       "--set", "batch_size=8", "--set", "learning_starts=64", "--set", "buffer_size=2000",
       "--checkpoint-every", "64"]  # 32 steps an iteration


def _start(run_dir: Path, args: list[str]) -> subprocess.Popen:
    """`rlmem train` in a process of its own (this checkout's code), for far more steps than it will live."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # SIGINT at its default in the child: a test run started as a background job inherits it ignored,
    # and rlmem leaves an ignored SIGINT ignored (as it should), which is not what these tests are about.
    return subprocess.Popen([sys.executable, "-m", "rlmem.cli", "train", *args, "--steps", "10000000",
                             "--run-dir", str(run_dir)], cwd=run_dir.parent, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_a_checkpoint(run_dir: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not list((run_dir / "checkpoints").glob("step-*[0-9].pt")):
        if process.poll() is not None:
            pytest.fail(f"training ended early ({process.returncode}): {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint within 120 s")
        time.sleep(0.02)


def _steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*[0-9].pt"))


def _assert_same_run(resumed: Path, reference: Path, network: str) -> None:
    """The same final weights, evaluation and TensorBoard curves as an uninterrupted run."""
    a = torch.load(resumed / "checkpoints" / "final.pt", weights_only=True)
    b = torch.load(reference / "checkpoints" / "final.pt", weights_only=True)
    assert a["num_timesteps"] == b["num_timesteps"]
    for name, tensor in b[network].items():
        assert torch.equal(a[network][name], tensor), name
    eval_a, eval_b = (json.loads((d / "eval.json").read_text()) for d in (resumed, reference))
    assert (eval_a["mean_return"], eval_a["steps"]) == (eval_b["mean_return"], eval_b["steps"])
    curves = []
    for run_dir in (resumed, reference):
        events = EventAccumulator(str(run_dir))
        events.Reload()
        curves.append({tag: [(e.step, e.value) for e in events.Scalars(tag)]
                       for tag in ("charts/episodic_return", "losses/loss")})
    assert curves[0] == curves[1] and len(curves[0]["losses/loss"]) > 4


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_writes_a_checkpoint_and_exits_cleanly_and_resume_finishes_the_same_run(signum, tmp_path):
    run_dir = tmp_path / "run"
    process = _start(run_dir, PPO)
    _wait_for_a_checkpoint(run_dir, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum  # 130 / 143: stopped on request, not crashed
    found = re.fullmatch(rf"rlmem: interrupted by {signal.Signals(signum).name} at step ([\d,]+); checkpoint "
                         rf"written to (\S+); continue with `rlmem train --resume {re.escape(str(run_dir))}`\n", err)
    assert found, err  # one line, no traceback
    step = int(found.group(1).replace(",", ""))
    assert Path(found.group(2)) == run_dir / "checkpoints" / f"step-{step:09d}.pt" and step == _steps(run_dir)[-1]
    assert not (run_dir / "checkpoints" / "final.pt").exists() and not (run_dir / "eval.json").exists()
    if signum == signal.SIGINT:
        return  # the resume is checked after SIGTERM (here) and SIGKILL (below)

    target = step + 4 * 128
    assert main(["train", "--resume", str(run_dir), "--steps", str(target), "--threads", "1"]) == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["steps"] == target
    reference = tmp_path / "reference"
    assert main(["train", *PPO, "--steps", str(target), "--run-dir", str(reference)]) == 0
    _assert_same_run(run_dir, reference, "policy")


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    process = _start(run_dir, DQN)
    _wait_for_a_checkpoint(run_dir, process)
    process.send_signal(signal.SIGKILL)  # no chance to write anything more
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    steps = _steps(run_dir)
    # One checkpoint every 64 steps (two 32-step iterations), the last three kept: a kill loses
    # at most the steps since the newest one, which the resume starts from.
    assert steps == list(range(steps[0], steps[-1] + 1, 64)) and len(steps) <= 4  # 4: killed before pruning
    newest = steps[-1]

    target = newest + 8 * 32
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--steps", str(target), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"resuming dqn on {TMAZE} from {run_dir / 'checkpoints' / f'step-{newest:09d}.pt'} (step {newest:,})" in out
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # a write cut short by the kill is cleared
    reference = tmp_path / "reference"
    assert main(["train", *DQN, "--steps", str(target), "--run-dir", str(reference)]) == 0
    _assert_same_run(run_dir, reference, "q_net")


@pytest.fixture
def stopped_run(tmp_path):
    """A 768-step ppo run with its end undone (final.pt and eval.json removed): as if stopped after step 512."""
    run_dir = tmp_path / "run"
    assert main(["train", *PPO, "--steps", "768", "--run-dir", str(run_dir)]) == 0
    (run_dir / "eval.json").unlink()  # as if stopped after its last checkpoint
    (run_dir / "checkpoints" / "final.pt").unlink()
    return run_dir


def _snapshot(run_dir: Path) -> dict:
    return {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rlmem: error: "), err
    return err


def test_resume_takes_only_steps_and_threads_and_touches_nothing_otherwise(stopped_run, capsys):
    before = _snapshot(stopped_run)
    capsys.readouterr()
    assert main(["train", "--resume", str(stopped_run), "--seed", "3", "--set", "hidden_size=8"]) == 2
    assert ("--resume continues a run with its own settings (its config.yaml); --seed, --set cannot be given with it "
            "(allowed: --steps, --threads, --dist-timeout, --debug)") in _one_line_error(capsys)
    assert main(["train", "--resume", str(stopped_run), "--steps", "256"]) == 2
    assert f"--steps 256 is below the 512 steps '{stopped_run}' has already trained" in _one_line_error(capsys)
    assert main(["train", "--resume", str(stopped_run.parent / "nothing")]) == 2
    assert "is not a directory" in _one_line_error(capsys)
    assert _snapshot(stopped_run) == before


def test_resume_passes_over_a_damaged_newest_checkpoint(stopped_run, capsys):
    newest = stopped_run / "checkpoints" / "step-000000512.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["train", "--resume", str(stopped_run), "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"rlmem: skipping step-000000512.pt: '{newest}' is truncated or corrupted")
    assert "from " + str(stopped_run / "checkpoints" / "step-000000256.pt") + " (step 256) to 768 steps" in captured.out
    assert json.loads((stopped_run / "eval.json").read_text())["steps"] == 768
    assert main(["train", "--resume", str(stopped_run)]) == 2  # now finished
    assert f"'{stopped_run}' has already finished its 768 steps; pass a larger --steps" in _one_line_error(capsys)


def test_resume_of_a_run_without_a_checkpoint_says_so(stopped_run, capsys):
    for path in (stopped_run / "checkpoints").iterdir():
        path.unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(stopped_run)]) == 2
    assert (f"'{stopped_run}' holds no checkpoint to resume from (a run writes its first after checkpoint_every = "
            "256 steps); start it again with --overwrite") in _one_line_error(capsys)


# ---------------------------------------------------------------------- what --resume passes over, and edited configs
def test_resume_names_an_unreadable_final_checkpoint_even_when_an_older_one_is_used(tmp_path, capsys):
    """final.pt is the newest checkpoint of a finished run; truncated, its step cannot be read: it is passed
    over all the same, and said so (it used to be tried last, and never named when an older one loaded)."""
    run_dir = tmp_path / "run"
    assert main(["train", *PPO, "--steps", "768", "--run-dir", str(run_dir)]) == 0
    final = run_dir / "checkpoints" / "final.pt"
    final.write_bytes(final.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--steps", "1024", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert re.fullmatch(rf"rlmem: skipping final\.pt: '{re.escape(str(final))}' is truncated or corrupted: it could "
                        r"not be read \(\w+\)\n", captured.err), captured.err
    assert "from " + str(run_dir / "checkpoints" / "step-000000512.pt") + " (step 512) to 1,024 steps" in captured.out


def test_resume_names_every_checkpoint_it_passes_over_once_each(stopped_run, capsys):
    from rlmem import RecurrentDQN

    folder = stopped_run / "checkpoints"
    RecurrentDQN(TMAZE, device="cpu", n_envs=2, seq_len=4, overlap=0, burn_in=0, buffer_size=64,
                 verbose=0).save(folder / "step-000000512.pt")  # another agent class, newest
    (folder / "final.pt").write_bytes(b"not a checkpoint")  # unreadable: its step is unknown
    capsys.readouterr()
    assert main(["train", "--resume", str(stopped_run), "--threads", "1"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"rlmem: skipping final.pt: '{folder / 'final.pt'}' is not an rlmem checkpoint (not a torch file)",
        f"rlmem: skipping step-000000512.pt: '{folder / 'step-000000512.pt'}' holds a RecurrentDQN agent, "
        "not a RecurrentPPO"]


def test_resume_refuses_a_config_edited_to_another_env_or_hyperparameters(stopped_run, capsys):
    config_path = stopped_run / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    before = _snapshot(stopped_run)
    edited = {**config, "env": "rlmem/RepeatPreviousEasy-v0",
              "hyperparameters": {**config["hyperparameters"], "hidden_size": 32}}
    config_path.write_text(yaml.safe_dump(edited, sort_keys=False))
    capsys.readouterr()
    assert main(["train", "--resume", str(stopped_run)]) == 2
    assert (f"rlmem: error: {config_path} was edited after step-000000512.pt was written: env (config.yaml: "
            f"'rlmem/RepeatPreviousEasy-v0', checkpoint: '{TMAZE}'); hidden_size (config.yaml: 32, checkpoint: 16); "
            "a resumed run keeps what its checkpoint holds, so put these back (or start a new run with --overwrite)"
            ) == _one_line_error(capsys)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert _snapshot(stopped_run) == before


def test_resume_honours_steps_edited_in_config_yaml(stopped_run, capsys):
    config_path = stopped_run / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config_path.write_text(yaml.safe_dump({**config, "steps": 1024}, sort_keys=False))
    capsys.readouterr()
    assert main(["train", "--resume", str(stopped_run), "--threads", "1"]) == 0
    assert (f"resuming ppo on {TMAZE} from {stopped_run / 'checkpoints' / 'step-000000512.pt'} (step 512) to "
            "1,024 steps (config.yaml's steps)") in capsys.readouterr().out
    assert json.loads((stopped_run / "eval.json").read_text())["steps"] == 1024
