"""Smoke tests of scripts/throughput.py at tiny sizes (no speed is asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "throughput.py"
TINY = ["--num-envs", "1,4", "--popgym-num-envs", "1,4", "--seconds", "0.05", "--warmup", "2"]
MACHINE_FIELDS = {"torch_version", "num_threads", "cpu_model", "date"}


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("rlmem_throughput_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
