"""Nothing big is allocated before it is checked: an env batch (sized on the meta device first) and the
networks an input can make too large are refused in one line with the bytes needed and available, not
with an allocator traceback. The sizes here are far beyond any machine: the old code asked the
allocator for them and failed there."""

import pytest
import torch

from rlmem import RecurrentDQN, RecurrentPPO, make_vec_env
from rlmem.cli import main
from rlmem.envs.registry import TASKS

HUGE_K = {"k": 100_000_000_000, "length": 100_000_000_001}  # RepeatPrevious keeps [num_envs, k + 1] symbols
NEEDS = r"needs [\d,]+ bytes \([\d,.]+ GiB\), more than the [\d,]+ bytes available on cpu"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rlmem: error: "), err
    return err


def test_an_env_batch_too_large_for_memory_is_refused_before_allocation():
    with pytest.raises(ValueError, match=rf"^the env batch of 64 rlmem/RepeatPrevious-v0 envs {NEEDS}; lower "
                                         r"n_envs, or the env's sizes \(its env_kwargs\)$"):
        make_vec_env("rlmem/RepeatPrevious-v0", 64, env_kwargs=HUGE_K)
    with pytest.raises(ValueError, match=rf"^the env batch of 1,000,000,000,000 rlmem/PassiveTMazeEasy-v0 envs {NEEDS}"):
        make_vec_env("rlmem/PassiveTMazeEasy-v0", 10**12)


@pytest.mark.parametrize("env_id", [env_id for env_id in TASKS if env_id.endswith("Easy-v0")])
def test_every_task_is_sized_exactly_on_the_meta_device(env_id):
    """The meta twin's bytes are the real batch's: the same tensors, nothing allocated for them."""
    twin = TASKS[env_id](num_envs=6, device="meta")
    real = TASKS[env_id](num_envs=6)
    assert twin.state_nbytes() == real.state_nbytes() > 0
    assert all(t.device.type == "meta" for t in vars(twin).values() if isinstance(t, torch.Tensor))


def test_the_command_refuses_an_env_batch_too_large_in_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--env", "rlmem/RepeatPrevious-v0", "--env-set", f"k={HUGE_K['k']}",
                 "--env-set", f"length={HUGE_K['length']}", "--device", "cpu", "--run-dir", str(run_dir)]) == 2
    err = _one_line_error(capsys)
    assert "the env batch of 1 rlmem/RepeatPrevious-v0 envs needs" in err and "bytes available on cpu" in err
    assert not run_dir.exists()


@pytest.mark.parametrize(("cls", "what", "copies"), [(RecurrentPPO, "the policy", 4), (RecurrentDQN, "the Q-network", 5)])
def test_a_network_too_large_for_memory_is_refused_before_allocation(cls, what, copies):
    with pytest.raises(ValueError, match=rf"^{what} \([\d,]+ weights; {copies} copies with gradients and optimizer "
                                         rf"state\) {NEEDS}; lower hidden_size, num_layers or encoder_sizes$"):
        cls("rlmem/PassiveTMazeEasy-v0", device="cpu", verbose=0, n_envs=4, hidden_size=10_000_000)


def test_the_command_refuses_a_network_too_large_in_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--set", "hidden_size=10000000", "--device", "cpu", "--run-dir", str(run_dir)]) == 2
    assert "the policy (" in _one_line_error(capsys)
    assert not run_dir.exists()


def test_sizing_on_the_meta_device_draws_no_random_numbers():
    """The same seed gives the same weights as before the networks were sized first (no draw on meta)."""
    torch.manual_seed(3)
    expected = torch.nn.LSTM(8, 16).weight_ih_l0.detach().clone()
    torch.manual_seed(3)
    with torch.device("meta"):
        torch.nn.LSTM(8, 16)
    assert torch.equal(torch.nn.LSTM(8, 16).weight_ih_l0, expected)
