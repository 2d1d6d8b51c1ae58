"""Smoke tests of the throughput benchmark (rlmem.throughput, also `rlmem throughput` and
scripts/throughput.py) at tiny sizes (no speed is asserted)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rlmem.throughput
from rlmem import cli

REPO = Path(__file__).resolve().parents[1]
TINY = ["--what", "env", "--num-envs", "1,4", "--popgym-num-envs", "1,4", "--seconds", "0.05",
        "--warmup", "2"]
# Training at a tiny size: 4 envs x 8 steps per iteration, a small LSTM, ~0.2 s per agent.
TINY_TRAIN = ["--what", "train", "--train-num-envs", "4", "--train-seconds", "0.2",
              "--set", "n_steps=8", "hidden_size=8", "encoder_sizes=8", "--threads", "1"]
MACHINE_FIELDS = {"torch_version", "num_threads", "cpu_model", "date"}


@pytest.fixture(scope="module")
def throughput():
    return rlmem.throughput


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """``--threads`` calls torch.set_num_threads; give other tests their thread count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _env_rows(rows):
    return {(r["impl"], r["device"], r["num_envs"]): r for r in rows if r["what"] == "env"}


def test_json_holds_one_row_per_measurement_and_the_machine(throughput, tmp_path, capsys):
    pytest.importorskip("popgym")
    path = tmp_path / "out" / "throughput.json"
    returned = throughput.main([*TINY, "--json", str(path)])

    data = json.loads(path.read_text())
    assert data["rows"] == returned["rows"]
    rows = _env_rows(data["rows"])
    assert len(rows) == len(data["rows"]) == 4  # no duplicates
    assert set(rows) == {
        ("rlmem", "cpu", 1), ("rlmem", "cpu", 4), ("popgym", "cpu", 1), ("popgym", "cpu", 4),
    }
    for row in data["rows"]:
        assert row["what"] == "env"
        assert row["steps_per_s"] > 0
        assert row["env_steps"] == row["num_envs"] * row["batched_steps"] > 0
    machine = data["machine"]
    assert MACHINE_FIELDS <= set(machine)
    assert machine["torch_version"] == torch.__version__
    assert isinstance(machine["num_threads"], int) and machine["num_threads"] >= 1
    assert machine["cpu_model"]
    # N=4096 was not measured, so there is no headline ratio.
    assert data["summary"]["rlmem_over_popgym_cpu_n4096"] is None

    out = capsys.readouterr().out
    assert "rlmem/popgym" in out and "not measured" in out
    assert f"torch {torch.__version__}" in out


def test_no_popgym_measures_rlmem_only(throughput, tmp_path):
    path = tmp_path / "t.json"
    throughput.main([*TINY, "--no-popgym", "--json", str(path)])
    rows = _env_rows(json.loads(path.read_text())["rows"])
    assert set(rows) == {("rlmem", "cpu", 1), ("rlmem", "cpu", 4)}


def test_missing_popgym_is_one_line_and_skipped(throughput, monkeypatch, capsys):
    monkeypatch.setattr(throughput, "popgym_available", lambda: False)
    results = throughput.main(TINY)
    assert {r["impl"] for r in results["rows"]} == {"rlmem"}
    assert "popgym is not installed" in capsys.readouterr().out


def test_headline_ratio_at_4096_on_cpu(throughput):
    rows = [
        {"what": "env", "impl": "rlmem", "device": "cpu", "num_envs": 4096, "steps_per_s": 5e6},
        {"what": "env", "impl": "rlmem", "device": "cuda", "num_envs": 4096, "steps_per_s": 9e9},
        {"what": "env", "impl": "popgym", "device": "cpu", "num_envs": 4096, "steps_per_s": 5e4},
    ]
    assert throughput.headline_ratio({"rows": rows}) == pytest.approx(100.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_gpu_exits_with_one_clear_line(throughput):
    with pytest.raises(SystemExit) as excinfo:
        throughput.main(["--device", "cuda", *TINY])
    assert str(excinfo.value) == "error: --device cuda requested but no CUDA GPU is available"


def test_bad_num_envs_is_a_usage_error(throughput, capsys):
    with pytest.raises(SystemExit) as excinfo:
        throughput.main(["--num-envs", "1,zero"])
    assert excinfo.value.code == 2
    assert "--num-envs" in capsys.readouterr().err


# ---------------------------------------------------------------------------- training


def _train_rows(rows):
    return {(r["impl"], r["device"], r["num_envs"]): r for r in rows if r["what"] == "train"}


def test_train_measures_rlmem_and_sb3_and_their_ratio(throughput, tmp_path, capsys):
    pytest.importorskip("sb3_contrib")
    path = tmp_path / "train.json"
    returned = throughput.main([*TINY_TRAIN, "--json", str(path)])

    data = json.loads(path.read_text())
    assert data["rows"] == returned["rows"]
    rows = _train_rows(data["rows"])
    assert len(rows) == len(data["rows"]) == 2  # one per impl, no env rows
    assert set(rows) == {("rlmem", "cpu", 4), ("sb3", "cpu", 4)}
    for row in rows.values():
        assert row["steps_per_s"] > 0
        assert row["n_steps"] == 8
        assert row["iterations"] >= 1
        assert row["env_steps"] == row["iterations"] * 4 * 8
        assert row["env_steps"] == row["num_envs"] * row["batched_steps"]
    assert rows[("sb3", "cpu", 4)]["batch_size"] == 4 * 8 // 4  # n_minibatches=4 per epoch
    summary = data["summary"]
    expected = rows[("rlmem", "cpu", 4)]["steps_per_s"] / rows[("sb3", "cpu", 4)]["steps_per_s"]
    assert summary["ppo_over_sb3_train_cpu"] == pytest.approx(expected)
    assert summary["ppo_over_sb3_train_num_envs"] == 4
    assert summary["rlmem_over_popgym_cpu_n4096"] is None
    train = data["config"]["train"]
    assert train["overrides"] == {"n_steps": 8, "hidden_size": 8, "encoder_sizes": [8]}
    assert train["sb3_kwargs"]["policy_kwargs"]["lstm_hidden_size"] == 8

    out = capsys.readouterr().out
    assert "rlmem/sb3" in out and "rlmem/popgym" not in out
    last = out.strip().splitlines()[-2]  # then "wrote PATH"
    assert last.startswith("rlmem PPO / sb3-contrib RecurrentPPO end-to-end on cpu: ")
    assert "target >= 30x on 2 CPU cores" in last


def test_no_sb3_trains_rlmem_only(throughput, capsys):
    results = throughput.main([*TINY_TRAIN, "--no-sb3"])
    assert set(_train_rows(results["rows"])) == {("rlmem", "cpu", 4)}
    assert results["summary"]["ppo_over_sb3_train_cpu"] is None
    assert "end-to-end on cpu: not measured" in capsys.readouterr().out


def test_no_train_skips_training(throughput):
    results = throughput.main([*TINY[2:], "--no-popgym", "--no-train"])  # default --what env,train
    assert {r["what"] for r in results["rows"]} == {"env"}
    assert "train" not in results["config"]


def test_sb3_gets_the_matched_settings(throughput):
    config = throughput.ppo_config(16, {"n_steps": 8, "hidden_size": 12, "num_layers": 2,
                                        "n_minibatches": 2, "n_epochs": 3, "ent_coef": 0.0})
    kwargs = throughput.sb3_kwargs(config, seed=3)
    assert kwargs["n_steps"] == 8 and kwargs["n_epochs"] == 3 and kwargs["seed"] == 3
    assert kwargs["batch_size"] == 16 * 8 // 2  # same number of minibatches per epoch
    for name in ("learning_rate", "gamma", "gae_lambda", "clip_range", "clip_range_vf",
                 "normalize_advantage", "ent_coef", "vf_coef", "max_grad_norm", "target_kl"):
        assert kwargs[name] == getattr(config, name), name
    policy = kwargs["policy_kwargs"]
    assert policy["lstm_hidden_size"] == 12 and policy["n_lstm_layers"] == 2
    assert policy["shared_lstm"] and not policy["enable_critic_lstm"]  # rlmem's default sharing
    assert policy["net_arch"] == []
    separate = throughput.sb3_kwargs(throughput.ppo_config(16, {"separate_critic_memory": True}))
    assert not separate["policy_kwargs"]["shared_lstm"]
    assert separate["policy_kwargs"]["enable_critic_lstm"]
    linear = throughput.sb3_kwargs(throughput.ppo_config(16, {"lr_schedule": "linear"}))
    assert linear["learning_rate"](0.5) == pytest.approx(0.5 * config.learning_rate)


def test_sb3_network_has_as_many_parameters_as_rlmems(throughput):
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import RecurrentPPO as SB3RecurrentPPO

    from rlmem import SB3VecEnvView, make_vec_env

    for overrides in ({}, {"separate_critic_memory": True, "encoder_sizes": (16, 8)}):
        config = throughput.ppo_config(4, {"hidden_size": 8, "n_steps": 8, **overrides})
        agent = throughput.RecurrentPPO(throughput.TRAIN_ENV_ID, device="cpu", verbose=0,
                                        **throughput._hyperparameters(config))
        venv = SB3VecEnvView(make_vec_env(throughput.TRAIN_ENV_ID, 4, device="cpu", seed=0))
        model = SB3RecurrentPPO("MlpLstmPolicy", venv, device="cpu",
                                **throughput.sb3_kwargs(config))
        sb3_count = sum(p.numel() for p in model.policy.parameters())
        assert sb3_count == sum(p.numel() for p in agent.policy.parameters()), overrides


def test_sb3_cannot_match_gru_or_previous_action_reward(throughput):
    assert throughput.sb3_unsupported(throughput.ppo_config(4, {})) is None
    assert "memory" in throughput.sb3_unsupported(throughput.ppo_config(4, {"memory": "gru"}))
    assert "prev_action_reward" in throughput.sb3_unsupported(
        throughput.ppo_config(4, {"prev_action_reward": True}))
    with pytest.raises(ValueError, match="memory"):
        throughput.sb3_kwargs(throughput.ppo_config(4, {"memory": "gru"}))


def test_set_values_are_parsed_as_literals(throughput):
    pairs = [throughput._setting(text) for text in
             ("n_steps=8", "learning_rate=3e-4", "encoder_sizes=32", "target_kl=none",
              "memory=gru", "normalize_advantage=False", "encoder_sizes=(16, 8)")]
    assert pairs[:6] == [("n_steps", 8), ("learning_rate", 3e-4), ("encoder_sizes", 32),
                         ("target_kl", None), ("memory", "gru"), ("normalize_advantage", False)]
    overrides = throughput.parse_settings(pairs[:6])
    assert overrides["encoder_sizes"] == (32,)
    assert throughput.parse_settings(pairs[6:]) == {"encoder_sizes": (16, 8)}


@pytest.mark.parametrize("argv, message", [
    (["--set", "hiden_size=8"], "hiden_size"),
    (["--set", "n_envs=8"], "--train-num-envs"),
    (["--set", "n_steps"], "KEY=VALUE"),
    (["--train-num-envs", "6"], "n_minibatches"),
    (["--what", "env,bogus"], "--what"),
    (["--what", "train", "--no-train"], "nothing to measure"),
])
def test_bad_training_arguments_are_usage_errors(throughput, capsys, argv, message):
    with pytest.raises(SystemExit) as excinfo:
        throughput.main(argv)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------- memory unroll
TINY_UNROLL = ["--what", "unroll", "--unroll-num-envs", "2", "--unroll-hidden-sizes", "8",
               "--seconds", "0.05", "--warmup", "1", "--threads", "1"]
UNROLL_FIELDS = {"what", "memory", "hidden_size", "pattern", "mode", "device", "num_envs",
                 "seq_len", "samples_per_s"}


def test_unroll_measures_both_modes_for_each_core_and_pattern(throughput, tmp_path, capsys):
    path = tmp_path / "unroll.json"
    returned = throughput.main([*TINY_UNROLL, "--json", str(path)])

    data = json.loads(path.read_text())
    assert data["rows"] == returned["rows"]
    rows = {(r["memory"], r["pattern"], r["mode"]): r for r in data["rows"]}
    assert len(rows) == len(data["rows"]) == 2 * 2 * 2  # lstm/gru x patterns x modes
    assert set(rows) == {(m, p, mode) for m in ("lstm", "gru")
                         for p in ("synchronized", "scattered") for mode in ("chunked", "per_step")}
    for (memory, pattern, mode), row in rows.items():
        assert UNROLL_FIELDS <= set(row)
        assert row["what"] == "unroll" and row["device"] == "cpu"
        assert row["hidden_size"] == 8 and row["num_envs"] == 2 and row["seq_len"] == 64
        assert row["samples_per_s"] > 0 and row["calls"] >= 1
        assert row["samples_per_s"] == pytest.approx(64 * 2 * row["calls"] / row["elapsed_s"])
        assert row["max_abs_diff_vs_per_step"] < 1e-5  # chunked matches the reference
        if mode == "per_step":
            assert row["pieces"] == 64
    assert rows[("lstm", "synchronized", "chunked")]["pieces"] == 2  # cut only at t=52

    faster = data["summary"]["unroll_faster"]
    assert len(faster) == 4  # one per (memory, hidden, pattern, N)
    for c in faster:
        assert c["faster"] in ("chunked", "per_step") and c["speedup"] >= 1.0
    assert data["config"]["unroll"]["num_envs"] == [2]

    out = capsys.readouterr().out
    assert "chunked samples/s" in out and "per_step samples/s" in out
    assert "memory unroll (forward + backward):" in out
    assert "rlmem/popgym" not in out and "rlmem/sb3" not in out


def test_unroll_episode_start_patterns(throughput):
    sync = throughput.episode_starts("synchronized", 64, 5)
    assert sync.shape == (64, 5) and sync.dtype == torch.bool
    assert sync.all(dim=1).nonzero().flatten().tolist() == [0, 52]
    assert int(sync.sum()) == 2 * 5
    assert throughput.unroll_pieces(sync, "chunked") == 2
    assert throughput.unroll_pieces(sync, "per_step") == 64

    scattered = throughput.episode_starts("scattered", 64, 4096, seed=3)
    assert torch.equal(scattered, throughput.episode_starts("scattered", 64, 4096, seed=3))
    assert not torch.equal(scattered, throughput.episode_starts("scattered", 64, 4096, seed=4))
    assert float(scattered.float().mean()) == pytest.approx(1 / 25, rel=0.05)
    with pytest.raises(ValueError, match="pattern"):
        throughput.episode_starts("bogus", 4, 4)


def test_new_sections_are_opt_in(throughput):
    assert throughput.build_parser().parse_args([]).what == ["env", "train"]
    args = throughput.build_parser().parse_args(["--what", "learn,unroll"])
    assert args.what == ["unroll", "learn"]
    assert args.unroll_num_envs == [16, 64] and args.unroll_hidden_sizes == [64, 128]
    assert args.learn_env == "rlmem/RepeatPreviousEasy-v0"
    assert args.learn_threshold == 0.9 and args.learn_budget == 2_000_000


# ---------------------------------------------------------------------------- time to learn
TINY_LEARN = ["--what", "learn", "--learn-budget", "512", "--set", "n_envs=8", "--set", "n_steps=16",
              "--set", "hidden_size=8", "--threads", "1"]
LEARN_FIELDS = {"what", "impl", "env", "device", "threshold", "seconds_to_threshold",
                "steps_to_threshold", "eval_mean_return", "seeds"}


def test_learn_not_reached_within_the_budget(throughput, tmp_path, capsys):
    path = tmp_path / "learn.json"
    returned = throughput.main([*TINY_LEARN, "--json", str(path)])

    data = json.loads(path.read_text())
    assert data["rows"] == returned["rows"]
    seed_row, median = data["rows"]  # the seed, then the median over seeds
    for row in (seed_row, median):
        assert LEARN_FIELDS <= set(row)
        assert row["what"] == "learn" and row["impl"] == "rlmem" and row["device"] == "cpu"
        assert row["env"] == "rlmem/RepeatPreviousEasy-v0" and row["threshold"] == 0.9
        assert row["seconds_to_threshold"] is None and row["steps_to_threshold"] is None
        assert row["seeds"] == [0]
        assert math.isfinite(row["eval_mean_return"])
    assert seed_row["aggregate"] is None and median["aggregate"] == "median"
    assert not seed_row["reached"] and median["reached_seeds"] == 0
    assert seed_row["num_timesteps"] == 512 and seed_row["eval_episodes"] == 200
    assert data["summary"]["learn_seconds_median"] is None
    learn = data["config"]["learn"]
    assert learn["overrides"] == {"n_envs": 8, "n_steps": 16, "hidden_size": 8}
    assert learn["hyperparameters"]["n_envs"] == 8 and learn["budget"] == 512

    out = capsys.readouterr().out
    assert "seed 0: 0.9 not reached within 512 env-steps" in out
    assert ("RepeatPreviousEasy to 0.9: median not reached within 512 env-steps over 1 seed"
            in out)
    assert "(target: well under 30 s on 2 CPU cores)" in out


def test_learn_reached_at_once_reports_each_seed_and_the_median(throughput, capsys):
    results = throughput.main([*TINY_LEARN, "--learn-env", "rlmem/PassiveTMazeEasy-v0",
                               "--learn-threshold", "0.0", "--learn-seeds", "0,1"])

    rows = results["rows"]
    seed_rows = [r for r in rows if r["aggregate"] is None]
    medians = [r for r in rows if r["aggregate"] == "median"]
    assert [r["seed"] for r in seed_rows] == [0, 1] and len(medians) == 1
    for row in seed_rows:
        assert row["env"] == "rlmem/PassiveTMazeEasy-v0" and row["threshold"] == 0.0
        assert row["reached"] and row["seconds_to_threshold"] > 0
        # The first rollout (16 steps of 11-step episodes) already has returns >= 0.
        assert row["steps_to_threshold"] == row["num_timesteps"] == 8 * 16
        assert 0.0 <= row["eval_mean_return"] <= 1.0
    median = medians[0]
    assert median["seeds"] == [0, 1] and median["reached_seeds"] == 2
    expected = sum(r["seconds_to_threshold"] for r in seed_rows) / 2
    assert median["seconds_to_threshold"] == pytest.approx(expected)
    assert results["summary"]["learn_seconds_median"] == pytest.approx(expected)

    out = capsys.readouterr().out
    assert "PassiveTMazeEasy to 0: median " in out and " s over 2 seeds" in out
    assert "target" not in out.strip().splitlines()[-1]  # the target is RepeatPreviousEasy's


def test_learn_median_counts_misses_as_infinitely_slow(throughput):
    assert throughput._median([3.0, None, 1.0]) == 3.0
    assert throughput._median([1.0, None]) is None
    assert throughput._median([None]) is None
    assert throughput._median([2.0]) == 2.0


@pytest.mark.parametrize("argv, message", [
    (["--what", "learn,train", "--set", "n_envs=8"], "--train-num-envs"),
    (["--what", "learn", "--learn-seeds", "0,-1"], "--learn-seeds"),
    (["--what", "learn", "--learn-budget", "0"], "--learn-budget"),
    (["--what", "learn", "--set", "n_envs=6"], "n_minibatches"),
    (["--what", "unroll", "--unroll-num-envs", "0"], "--unroll-num-envs"),
])
def test_bad_unroll_and_learn_arguments_are_usage_errors(throughput, capsys, argv, message):
    with pytest.raises(SystemExit) as excinfo:
        throughput.main(argv)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err


def test_sb3_defaults_run_alongside_the_matched_baseline(throughput):
    results = throughput.main([*TINY_TRAIN, "--sb3-settings", "matched,defaults"])
    impls = sorted(r["impl"] for r in results["rows"] if r["what"] == "train")
    assert impls == ["rlmem", "sb3", "sb3-defaults"]
    defaults = next(r for r in results["rows"] if r["impl"] == "sb3-defaults")
    assert defaults["n_steps"] == 128 and defaults["batch_size"] == 128  # sb3-contrib's own defaults
    assert results["summary"]["ppo_over_sb3_defaults_train_cpu"] > 0
    with pytest.raises(SystemExit):
        throughput.main(["--what", "train", "--sb3-settings", "fast"])


# ---------------------------------------------------------------------------- rlmem throughput
CLI_ENV = ["--what", "env", "--num-envs", "4", "--no-popgym", "--seconds", "0.05", "--warmup", "1"]


def test_rlmem_throughput_runs_the_benchmark(tmp_path, capsys):
    path = tmp_path / "cli.json"
    assert cli.main(["throughput", *CLI_ENV, "--json", str(path)]) == 0

    data = json.loads(path.read_text())
    (row,) = data["rows"]
    assert (row["what"], row["impl"], row["device"], row["num_envs"]) == ("env", "rlmem", "cpu", 4)
    assert row["steps_per_s"] > 0 and row["env_steps"] == 4 * row["batched_steps"] > 0
    assert data["config"]["num_envs"] == [4]
    assert f"wrote {path}" in capsys.readouterr().out


def test_rlmem_throughput_help_is_the_benchmarks_own(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["throughput", "--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rlmem throughput ")
    assert "--train-num-envs" in out and "--what" in out
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--debug", "throughput", "-h"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out.startswith("usage: rlmem throughput ")


def test_rlmem_throughput_errors_name_the_subcommand(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["throughput", "--num-envs", "zero"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "rlmem throughput: error: argument --num-envs" in err and "'zero'" in err


def test_rlmem_help_lists_throughput(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "throughput" in capsys.readouterr().out


def test_scripts_wrapper_runs_the_module(tmp_path):
    path = tmp_path / "script.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "throughput.py"), *CLI_ENV, "--threads", "1",
                           "--json", str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(path.read_text())["rows"]
    assert (row["what"], row["impl"], row["num_envs"]) == ("env", "rlmem", 4)
