"""Faults of the file system during a run, made for real: a small tmpfs really filled (while writing a
checkpoint, TensorBoard events, eval.json), a read-only mount, a run directory under a regular file,
files that vanish mid-run. Each is one line `rlmem: error: ...` naming what failed and where, exit
code 1, the newest complete checkpoint whole and named, no temporary file left behind.

The tmpfs tests need root (to mount) and skip otherwise; permission bits are tested only as a user
(root ignores them)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlmem.agents.ppo import RecurrentPPO
from rlmem.cli import main

ROOT = Path(__file__).resolve().parents[1]
TMAZE = "rlmem/PassiveTMazeEasy-v0"
TINY = ["--env", TMAZE, "--set", "n_envs=8", "--set", "n_steps=16", "--set", "hidden_size=16",
        "--set", "encoder_sizes=[16]", "--set", "n_epochs=1", "--eval-episodes", "4", "--device", "cpu"]


@pytest.fixture
def small_fs(tmp_path):
    """A fresh 4 MiB tmpfs (root only): ``(mount point, mount options)``."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave: int = 0) -> Path:
    """Fill the file system at ``mount`` with one file, leaving about ``leave`` bytes free (0: none at all)."""
    filler = mount / "filler"
    st = os.statvfs(mount)
    try:
        with open(filler, "ab") as file:
            file.write(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
            file.flush()
            while not leave:  # to the last byte
                file.write(b"\0" * 4096)
                file.flush()
    except OSError:
        pass
    return filler


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rlmem: error: "), err
    return err.strip()


def _no_temporary_files(directory: Path) -> None:
    assert not list(directory.rglob("*.tmp")), list(directory.rglob("*.tmp"))


def _fill_in_iteration(monkeypatch, at_step: int, fault) -> None:
    """Run ``fault()`` inside the iteration that ends at ``at_step`` (before that step's checkpoint)."""
    iteration = RecurrentPPO._iteration

    def faulty(agent):
        result = iteration(agent)
        if agent.num_timesteps == at_step:
            fault()
        return result

    monkeypatch.setattr(RecurrentPPO, "_iteration", faulty)


# ---------------------------------------------------------------------- a full disk
def test_a_full_disk_while_writing_a_checkpoint(small_fs, monkeypatch, capsys):
    run_dir = small_fs / "run"
    filler: list[Path] = []
    # 16 KiB left: room for the events (a few hundred bytes an iteration), not for a 70 KB checkpoint.
    _fill_in_iteration(monkeypatch, 384, lambda: filler.append(fill(small_fs, leave=16 * 1024)))
    args = ["train", *TINY, "--steps", "1280", "--checkpoint-every", "128", "--run-dir", str(run_dir)]
    assert main(args) == 1
    folder = run_dir / "checkpoints"
    assert _one_line(capsys) == (
        f"rlmem: error: training stopped at step 384: could not write '{folder / 'step-000000384.pt'}': No space "
        f"left on device; the last good checkpoint is {folder / 'step-000000256.pt'} (left as it was)")
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000128.pt", "step-000000256.pt"]
    _no_temporary_files(run_dir)
    assert not (run_dir / "eval.json").exists()
    # The checkpoint named is whole: once there is room again, the run goes on from it to the end.
    filler[0].unlink()
    monkeypatch.undo()
    assert main(["train", "--resume", str(run_dir), "--threads", "1"]) == 0
    assert json.loads((run_dir / "eval.json").read_text())["steps"] == 1280
    assert "from " + str(folder / "step-000000256.pt") in capsys.readouterr().out


def test_a_full_disk_while_writing_tensorboard_events_is_one_line_from_a_real_process(small_fs, tmp_path):
    """TensorBoard writes from a thread of its own: its failure still ends the run in one line, nothing more."""
    run_dir = small_fs / "run"
    driver = tmp_path / "driver.py"
    # The disk fills right after the checkpoint at 3,840 steps; 30 iterations of events come before the
    # next one (far more than the last page of the events file holds), so the events are what fails.
    driver.write_text(f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_storage import fill
from rlmem.agents.ppo import RecurrentPPO
from rlmem.cli import main
iteration = RecurrentPPO._iteration
def faulty(agent):
    result = iteration(agent)
    if agent.num_timesteps == 3968:
        fill(Path({str(small_fs)!r}))
    return result
RecurrentPPO._iteration = faulty
sys.exit(main(sys.argv[1:]))
""")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(driver), "train", *TINY, "--threads", "1", "--steps", "7680",
                           "--checkpoint-every", "3840", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=env, timeout=600)
    last = run_dir / "checkpoints" / "step-000003840.pt"
    assert done.returncode == 1, done.stderr
    assert re.fullmatch(rf"rlmem: error: training stopped at step [\d,]+: could not write the TensorBoard events "
                        rf"file '{re.escape(str(run_dir))}/events\.out\.tfevents\.[^']+': No space left on device; "
                        rf"the last good checkpoint is {re.escape(str(last))} \(left as it was\)\n",
                        done.stderr), done.stderr
    assert sorted(p.name for p in last.parent.iterdir()) == [last.name]
    _no_temporary_files(run_dir)
    assert RecurrentPPO.restore(last, device="cpu", verbose=0).num_timesteps == 3840


def test_a_full_disk_while_writing_eval_json(small_fs, monkeypatch, capsys):
    run_dir = small_fs / "run"
    evaluate = RecurrentPPO.evaluate
    filler: list[Path] = []

    def fill_then_evaluate(agent, *args, **kwargs):
        filler.append(fill(small_fs))
        return evaluate(agent, *args, **kwargs)

    monkeypatch.setattr(RecurrentPPO, "evaluate", fill_then_evaluate)
    assert main(["train", *TINY, "--steps", "512", "--checkpoint-every", "256", "--run-dir", str(run_dir)]) == 1
    final = run_dir / "checkpoints" / "final.pt"
    assert _one_line(capsys) == (
        f"rlmem: error: training finished at step 512 and its final checkpoint {final} is whole, but could not "
        f"write '{run_dir / 'eval.json'}': No space left on device; `rlmem eval {run_dir} --write` writes "
        "eval.json again")
    assert not (run_dir / "eval.json").exists()
    _no_temporary_files(run_dir)
    filler[0].unlink()
    monkeypatch.undo()
    assert RecurrentPPO.load(final, device="cpu").num_timesteps == 512
    assert main(["eval", str(run_dir), "--write", "--device", "cpu"]) == 0
    assert json.loads((run_dir / "eval.json").read_text())["steps"] == 512


# ---------------------------------------------------------------------- a run directory that cannot be made
def test_a_run_directory_under_a_regular_file(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a directory")
    run_dir = blocker / "run"
    assert main(["train", *TINY, "--steps", "128", "--run-dir", str(run_dir)]) == 1
    assert _one_line(capsys) == (f"rlmem: error: cannot create the run directory '{run_dir}': '{blocker}' is a "
                                 "file, not a directory")
    assert blocker.read_text() == "a file, not a directory"


def test_a_read_only_file_system(small_fs, capsys):
    """A new run cannot be made there; a run already there cannot be resumed into (its lock cannot be written)."""
    run_dir = small_fs / "run"
    assert main(["train", *TINY, "--steps", "512", "--checkpoint-every", "256", "--run-dir", str(run_dir)]) == 0
    (run_dir / "eval.json").unlink()
    (run_dir / "checkpoints" / "final.pt").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    capsys.readouterr()
    assert main(["train", *TINY, "--steps", "128", "--run-dir", str(small_fs / "new")]) == 1
    assert _one_line(capsys) == (f"rlmem: error: cannot create the run directory '{small_fs / 'new'}': Read-only "
                                 "file system")
    assert main(["train", "--resume", str(run_dir)]) == 1
    assert _one_line(capsys) == (f"rlmem: error: cannot create the lock file '{run_dir / '.lock'}': Read-only file "
                                 "system")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000000256.pt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (the read-only mount stands in)")
def test_a_run_directory_without_write_permission(tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        assert main(["train", *TINY, "--steps", "128", "--run-dir", str(parent / "run")]) == 1
        assert _one_line(capsys) == (f"rlmem: error: cannot create the run directory '{parent / 'run'}': "
                                     "Permission denied")
    finally:
        parent.chmod(0o700)


# ---------------------------------------------------------------------- files that vanish mid-run
def test_the_events_file_vanishing_mid_run(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    _fill_in_iteration(monkeypatch, 384, lambda: next(run_dir.glob("events.out.tfevents.*")).unlink())
    assert main(["train", *TINY, "--steps", "1280", "--checkpoint-every", "128", "--run-dir", str(run_dir)]) == 1
    err = _one_line(capsys)
    last = run_dir / "checkpoints" / "step-000000256.pt"
    assert re.fullmatch(rf"rlmem: error: training stopped at step 384: the TensorBoard events file "
                        rf"'{re.escape(str(run_dir))}/events\.out\.tfevents\.[^']+' vanished while the run wrote it "
                        rf"\(deleted or moved\); the last good checkpoint is {re.escape(str(last))} \(left as it "
                        r"was\)", err), err
    assert sorted(p.name for p in last.parent.iterdir()) == ["step-000000128.pt", "step-000000256.pt"]


def test_the_checkpoint_directory_vanishing_mid_run(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    _fill_in_iteration(monkeypatch, 384, lambda: shutil.rmtree(run_dir / "checkpoints"))
    assert main(["train", *TINY, "--steps", "1280", "--checkpoint-every", "128", "--run-dir", str(run_dir)]) == 1
    folder = run_dir / "checkpoints"
    assert _one_line(capsys) == (
        f"rlmem: error: training stopped at step 384: the checkpoint directory '{folder}' vanished while the run "
        f"wrote it (deleted or moved); the last checkpoint written, {folder / 'step-000000256.pt'}, has vanished too")
    assert not folder.exists()  # not made anew behind the user's back
    assert not (run_dir / "eval.json").exists()


def test_a_failed_checkpoint_write_leaves_no_part_behind(tmp_path, monkeypatch):
    """RecurrentDQN writes its replay first; when the checkpoint itself then fails, the replay file goes too."""
    from rlmem import RecurrentDQN
    from rlmem.agents import checkpoints
    from rlmem.agents.stops import StorageError

    agent = RecurrentDQN(TMAZE, device="cpu", verbose=0, n_envs=8, seq_len=8, overlap=4, burn_in=2, hidden_size=16,
                         encoder_sizes=(16,), batch_size=8, learning_starts=64, buffer_size=2_000)
    agent.learn(64, checkpoint_dir=tmp_path, checkpoint_every=32)
    before = sorted(p.name for p in tmp_path.iterdir())
    save = checkpoints.atomic_save

    def full_for_the_checkpoint(data, path):
        if data.get("format") == checkpoints.CHECKPOINT_FORMAT:  # as atomic_write reports a full disk
            raise StorageError(f"could not write {str(path)!r}: No space left on device")
        save(data, path)

    monkeypatch.setattr(checkpoints, "atomic_save", full_for_the_checkpoint)
    with pytest.raises(StorageError, match=r"^training stopped at step 96: could not write '.*step-000000096\.pt': "):
        agent.learn(64, checkpoint_dir=tmp_path, checkpoint_every=32)  # step-96.pt (its replay first) fails
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no step-*.replay.pt without its checkpoint
    assert torch.load(tmp_path / "final.pt", weights_only=True)["num_timesteps"] == 64
