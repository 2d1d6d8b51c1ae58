"""Presets and suites ship with the package and are found by name, from any directory: a built
wheel carries agents/*.yaml and envs/*.yaml, and an install of it (not editable) reads them."""

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rlmem.cli import main
from rlmem.shipped import find_yaml, shipped_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # The installed setuptools where there is one (no download); else pip's own isolated build.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, cwd=out)
    (path,) = out.glob("rlmem-*.whl")
    return path


def test_the_wheel_carries_every_preset_and_suite(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("agents", "envs"):
        for path in (ROOT / kind).glob("*.yaml"):
            assert f"rlmem/_data/{kind}/{path.name}" in names, path
    assert "rlmem/runs.py" in names and "rlmem/throughput/command.py" in names


def test_an_installed_wheel_finds_presets_and_suites_by_name_from_an_empty_directory(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import rlmem.shipped as s, rlmem.agents.presets as p, rlmem.bench as b; "
            "print(s.find_yaml('ppo-gru', 'agents')); print(p.load_preset('ppo-gru').hyperparameters['memory']); "
            "print(len(b.load_suite('memory-probes').envs), len(b.load_suite('smoke').envs))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    preset_path, memory, counts = done.stdout.splitlines()
    assert Path(preset_path) == site / "rlmem" / "_data" / "agents" / "ppo-gru.yaml"
    assert memory == "gru" and counts == "24 2"  # memory-probes: 8 tasks x 3 levels


def test_a_preset_or_suite_by_name_path_or_folder_prefix(tmp_path):
    assert find_yaml("ppo-gru", "agents") == shipped_files("agents")["ppo-gru"]
    assert find_yaml("ppo-gru.yaml", "agents").resolve() == find_yaml("agents/ppo-gru.yaml", "agents").resolve()
    assert find_yaml("smoke", "envs") == shipped_files("envs")["smoke"]
    own = tmp_path / "mine.yaml"
    own.write_text("algo: ppo\n")
    assert find_yaml(own, "agents") == own


def test_unknown_names_and_directories_are_one_clear_error(tmp_path):
    suites = ", ".join(shipped_files("envs"))  # horizon, horizon-smoke, memory-probes, smoke
    with pytest.raises(ValueError, match=rf"^suite 'smok' not found; shipped suites: {suites}; "
                                         r"did you mean 'smoke'\?$"):
        find_yaml("smok", "envs")
    with pytest.raises(ValueError, match=f"^preset {str(tmp_path)!r} is a directory, not a YAML file$"):
        find_yaml(tmp_path, "agents")


def test_presets_command_lists_what_ships(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in [*shipped_files("agents"), *shipped_files("envs")]:
        assert f"  {name} " in out
    assert "rlmem's RecurrentPPO with a GRU memory" in out
