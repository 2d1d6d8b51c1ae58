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
    # main looks the check up where it runs it (rlmem.throughput.command), not in the package's re-export.
    monkeypatch.setattr(throughput.command, "popgym_available", lambda: False)
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
    # Starts at nearly every step of 64 envs: stepping beats ~60 short pieces, and the RNN cores step.
    assert throughput.unroll_pieces(throughput.episode_starts("scattered", 64, 64), "chunked") == 64

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


# ---------------------------------------------------------------------------- rollout, memory, summary
TINY_PPO = ["--set", "n_steps=8", "hidden_size=8", "encoder_sizes=8", "--threads", "1"]
TINY_ALL = ["--what", "all", "--sizes", "4", "--no-popgym", "--seconds", "0.05", "--warmup", "1",
            "--train-seconds", "0.05", *TINY_PPO]


def test_rollout_rows_count_whole_rollouts(throughput, tmp_path, capsys):
    path = tmp_path / "rollout.json"
    returned = throughput.main(["--what", "rollout", "--rollout-num-envs", "4,8", "--seconds", "0.05",
                                *TINY_PPO, "--json", str(path)])

    data = json.loads(path.read_text())
    assert data["rows"] == returned["rows"]
    rows = {r["num_envs"]: r for r in data["rows"]}
    assert set(rows) == {4, 8} and len(data["rows"]) == 2
    for n, row in rows.items():
        assert (row["what"], row["impl"], row["device"]) == ("rollout", "rlmem", "cpu")
        assert row["n_steps"] == 8 and row["calls"] >= 1
        assert row["env_steps"] == row["calls"] * n * 8  # whole rollouts of N * n_steps
        assert row["env_steps"] == n * row["batched_steps"]
        assert row["steps_per_s"] > 0 and row["elapsed_s"] > 0
        assert row["peak_memory_bytes"] is None and row["peak_memory_bytes_per_env"] is None
    assert data["config"]["rollout"]["num_envs"] == [4, 8]
    assert data["config"]["rollout"]["overrides"] == {"n_steps": 8, "hidden_size": 8, "encoder_sizes": [8]}
    assert "train" not in data["config"]
    assert "(rollout)" in capsys.readouterr().out


def test_all_gives_one_summary_line_per_device_and_n(throughput, tmp_path, capsys):
    pytest.importorskip("sb3_contrib")
    path = tmp_path / "all.json"
    returned = throughput.main([*TINY_ALL, "--num-envs", "4,16", "--json", str(path)])

    data = json.loads(path.read_text())
    assert data["summary"] == returned["summary"]
    assert data["config"]["what"] == ["env", "rollout", "train"]
    rows = {(r["what"], r["impl"], r["num_envs"]): r for r in data["rows"]}
    assert set(rows) == {("env", "rlmem", 4), ("env", "rlmem", 16), ("rollout", "rlmem", 4),
                         ("train", "rlmem", 4), ("train", "sb3", 4)}
    for key in (("rollout", "rlmem", 4), ("train", "rlmem", 4), ("train", "sb3", 4)):
        assert rows[key]["peak_memory_bytes"] is None  # torch counts no peak on the CPU
        assert rows[key]["peak_memory_bytes_per_env"] is None
    assert rows[("train", "sb3", 4)]["device"] == "cpu" and rows[("train", "sb3", 4)]["env_device"] == "cpu"

    table = data["summary"]["table"]
    assert [(s["device"], s["num_envs"]) for s in table] == [("cpu", 4), ("cpu", 16)]
    four, sixteen = table
    assert four["env_steps_per_s"] == rows[("env", "rlmem", 4)]["steps_per_s"]
    assert four["rollout_steps_per_s"] == rows[("rollout", "rlmem", 4)]["steps_per_s"]
    assert four["train_steps_per_s"] == rows[("train", "rlmem", 4)]["steps_per_s"]
    assert four["sb3_steps_per_s"] == rows[("train", "sb3", 4)]["steps_per_s"]
    assert (four["sb3_device"], four["sb3_num_envs"]) == ("cpu", 4)
    assert four["train_over_sb3"] == pytest.approx(four["train_steps_per_s"] / four["sb3_steps_per_s"])
    assert four["train_peak_memory_bytes_per_env"] is None
    assert four["rollout_peak_memory_bytes_per_env"] is None
    assert sixteen["env_steps_per_s"] == rows[("env", "rlmem", 16)]["steps_per_s"]
    assert sixteen["rollout_steps_per_s"] is None and sixteen["train_steps_per_s"] is None
    assert sixteen["train_over_sb3"] is None

    out = capsys.readouterr().out
    summary = out[out.index("Summary ("):]
    assert "peak MiB/env train" in summary and "train/sb3" in summary and "sb3 at (device, N)" in summary
    line = next(line for line in summary.splitlines() if line.startswith("cpu      4"))
    assert "n/a on cpu" in line and f"{four['train_over_sb3']:,.1f}x" in line and line.endswith("cpu, 4")


def test_summary_compares_with_sb3_at_its_largest_measured_n(throughput):
    def row(what, impl, device, n, rate):
        return {"what": what, "impl": impl, "device": device, "num_envs": n, "steps_per_s": rate,
                "peak_memory_bytes_per_env": None if device == "cpu" else 2.0 * 2**20}

    rows = [row("train", "rlmem", "cuda", 1024, 8e5), row("train", "rlmem", "cuda", 64, 9e3),
            row("train", "sb3", "cpu", 64, 1e3), row("train", "sb3", "cpu", 256, 2e3),
            row("rollout", "rlmem", "cuda", 1024, 4e6), row("train", "rlmem", "cuda", 16, 1e3)]
    results = {"rows": rows, "config": {"devices": ["cuda"]}, "summary": {}}
    table = {s["num_envs"]: s for s in throughput.summary_lines(results)}
    assert sorted(table) == [16, 64, 1024]
    assert table[1024]["sb3_num_envs"] == 256 and table[1024]["train_over_sb3"] == pytest.approx(400.0)
    assert table[1024]["rollout_steps_per_s"] == 4e6
    assert table[1024]["train_peak_memory_bytes_per_env"] == 2.0 * 2**20
    assert table[64]["sb3_num_envs"] == 64 and table[64]["train_over_sb3"] == pytest.approx(9.0)
    assert table[16]["sb3_num_envs"] is None and table[16]["train_over_sb3"] is None  # no sb3 at or below 16
    results["summary"]["table"] = list(table.values())
    text = throughput.format_summary_table(results)
    assert "cpu, 256" in text and "400.0x" in text and "2.0000" in text
    assert "largest N it was measured at below it" in text


def test_summary_lines_skip_unroll_rows(throughput):
    """--what env,unroll (or all,unroll): the unroll rows, which have no impl, are not summary lines."""
    rows = [{"what": "env", "impl": "rlmem", "device": "cpu", "num_envs": 4, "steps_per_s": 1e4},
            {"what": "unroll", "memory": "lstm", "mode": "chunked", "device": "cpu", "num_envs": 2,
             "samples_per_s": 1e3}]
    results = {"rows": rows, "config": {"devices": ["cpu"]}, "summary": {}}
    (line,) = throughput.summary_lines(results)
    assert (line["device"], line["num_envs"], line["env_steps_per_s"]) == ("cpu", 4, 1e4)


def test_sizes_sets_the_env_rollout_and_train_lists(throughput):
    parser = throughput.build_parser()
    sizes = throughput.section_sizes(parser.parse_args(["--sizes", "8,32"]), ["cpu"])
    assert sizes == {"env": {"cpu": [8, 32]}, "rollout": {"cpu": [8, 32]}, "train": {"cpu": [8, 32]}}
    own = throughput.section_sizes(parser.parse_args(["--sizes", "8", "--train-num-envs", "16"]), ["cpu"])
    assert own == {"env": {"cpu": [8]}, "rollout": {"cpu": [8]}, "train": {"cpu": [16]}}
    defaults = throughput.section_sizes(parser.parse_args([]), ["cpu"])
    assert defaults["env"]["cpu"] == [4**i for i in range(9)]
    assert defaults["train"]["cpu"] == defaults["rollout"]["cpu"] == [64]
    # cuda gets the sizes when no list is given (no GPU needed to decide that)
    both = throughput.section_sizes(parser.parse_args(["--train-num-envs", "64"]), ["cpu", "cuda"])
    assert both["env"] == {"cpu": [4**i for i in range(9)], "cuda": [1024, 4096, 16384, 65536]}
    assert both["train"] == both["rollout"] == {"cpu": [64], "cuda": [64]}
    assert throughput.section_sizes(parser.parse_args([]), ["cuda"])["rollout"] == {
        "cuda": [1024, 4096, 16384, 65536]}
    assert parser.parse_args(["--what", "all,unroll"]).what == ["env", "rollout", "train", "unroll"]


def test_sb3_device_same_runs_sb3_on_each_device(throughput):
    pytest.importorskip("sb3_contrib")
    results = throughput.main(["--what", "train", "--train-num-envs", "4", "--train-seconds", "0.05",
                               "--sb3-device", "same", *TINY_PPO])
    sb3 = [r for r in results["rows"] if r["impl"] == "sb3"]
    assert len(sb3) == 1 and sb3[0]["device"] == "cpu" and sb3[0]["env_device"] == "cpu"
    assert results["config"]["train"]["sb3_device"] == "same"
    assert results["config"]["train"]["sb3_devices"] == ["cpu"]


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "0"], "argument --sizes: expected integers >= 1, got '0'"),
    (["--sizes", "4,x"], "argument --sizes: expected a comma list of integers, got '4,x'"),
    (["--sb3-device", "tpu"], "argument --sb3-device: expected cpu, cuda, cuda:N or same, got 'tpu'"),
    (["--what", "rollout", "--sizes", "6"], "n_minibatches"),
    (["--what", "rollout", "--set", "n_envs=8"], "n_envs"),
])
def test_bad_sizes_and_sb3_device_are_usage_errors(throughput, capsys, argv, message):
    with pytest.raises(SystemExit) as excinfo:
        throughput.main(argv)
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_sb3_device_cuda_without_gpu_exits_with_one_clear_line(throughput):
    with pytest.raises(SystemExit) as excinfo:
        throughput.main(["--what", "train", "--sb3-device", "cuda", *TINY_PPO])
    assert str(excinfo.value) == "error: --sb3-device cuda requested but no CUDA GPU is available"


def test_peak_memory_bookkeeping_on_cuda_without_a_gpu(throughput, monkeypatch):
    """The CUDA branch of the memory figures, with torch.cuda's counters stood in for."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 4096 * 2**20)
    cuda = torch.device("cuda")
    assert throughput._reset_peak_memory(cuda) == 1000 and "reset" in calls
    memory = throughput._peak_memory(cuda, 1024, 1000)
    assert memory == {"peak_memory_bytes": 4096 * 2**20, "peak_memory_bytes_per_env": 4 * 2**20,
                      "memory_baseline_bytes": 1000}
    row = {"device": "cuda", **memory}
    assert throughput._fmt_mib_per_env(row) == "4.0000"
    assert throughput._fmt_memory_note(row) == ", peak 4,096.0 MiB (4.0000 MiB/env)"
    cpu = torch.device("cpu")
    assert throughput._reset_peak_memory(cpu) is None
    assert throughput._peak_memory(cpu, 4, None)["peak_memory_bytes_per_env"] is None
    assert throughput._fmt_mib_per_env({"device": "cpu", "peak_memory_bytes_per_env": None}) == "n/a on cpu"


def test_sb3_is_measured_at_its_cap_when_every_train_n_is_larger(throughput, capsys):
    pytest.importorskip("sb3_contrib")
    results = throughput.main(["--what", "train", "--train-num-envs", "8", "--sb3-max-num-envs", "4",
                               "--train-seconds", "0.05", *TINY_PPO])
    rows = {(r["impl"], r["num_envs"]) for r in results["rows"]}
    assert rows == {("rlmem", 8), ("sb3", 4)}
    (line,) = results["summary"]["table"]
    assert (line["num_envs"], line["sb3_num_envs"], line["sb3_device"]) == (8, 4, "cpu")
    assert line["train_over_sb3"] == pytest.approx(line["train_steps_per_s"] / line["sb3_steps_per_s"])
    out = capsys.readouterr().out
    assert "sb3-contrib is measured at N=4 for the comparison" in out
    assert "largest N it was measured at below it" in out
