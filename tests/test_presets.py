"""Presets (agents/*.yaml) and run settings: the shipped files match the dataclass defaults, every key and
type is checked with a message naming the file and the key, and defaults < preset < command line."""

import dataclasses
from pathlib import Path

import pytest

from rlmem.agents.config import build_config
from rlmem.agents.dqn_config import DQNConfig
from rlmem.agents.ppo import PPOConfig
from rlmem.agents.pqn import PQNConfig
from rlmem.agents.presets import (
    check_hyperparameters,
    hyperparameter_names,
    load_preset,
    parse_assignments,
    resolve_run,
)
from rlmem.agents.sb3_baseline import SB3BaselineConfig
from rlmem.memory import core_options

AGENTS = Path(__file__).resolve().parents[1] / "agents"


PINNED = {
    "ppo-lstm.yaml": PPOConfig(),
    "ppo-gru.yaml": PPOConfig(memory="gru"),
    "ppo-elman.yaml": PPOConfig(memory="elman"),
    "ppo-mlp.yaml": PPOConfig(memory="mlp"),
    "ppo-framestack.yaml": PPOConfig(memory="framestack", memory_options={"context_length": 8}),
    "ppo-lru.yaml": PPOConfig(memory="lru", memory_options=core_options("lru")),
    "ppo-transformer.yaml": PPOConfig(memory="transformer", memory_options={**core_options("transformer"),
                                                                            "gated": True}),
    "ppo-mingru.yaml": PPOConfig(memory="mingru"),
    "ppo-ffm.yaml": PPOConfig(memory="ffm", memory_options=core_options("ffm"), num_layers=2),
    "sb3-ppo-lstm.yaml": SB3BaselineConfig(),
    "dqn-lstm.yaml": DQNConfig(),
    "pqn-lstm.yaml": PQNConfig(),
}
"""Every shipped preset, and the config it must load as: a dataclass default but for the fields named here."""


def test_every_shipped_preset_is_pinned():
    assert sorted(p.name for p in AGENTS.glob("*.yaml")) == sorted(PINNED)


@pytest.mark.parametrize(("name", "expected"), list(PINNED.items()))
def test_shipped_presets_state_every_field_and_equal_the_dataclass_defaults(name, expected):
    # PPOConfig's defaults ARE the ppo-lstm preset: when they are tuned, the yaml files change with them.
    preset = load_preset(AGENTS / name)
    assert list(preset.hyperparameters) == hyperparameter_names(preset.algo)  # every field, in order
    assert build_config(type(expected), preset.hyperparameters) == expected
    assert preset.run == {}


def test_a_shipped_preset_is_found_by_its_bare_name():
    assert load_preset("ppo-gru").hyperparameters["memory"] == "gru"


def _preset(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-preset.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("algo: ppo\nhyperparams: {}\n", "my-preset.yaml: unknown key 'hyperparams'; did you mean 'hyperparameters'?"),
    ("algo: ppo\nhyperparameters:\n  lerning_rate: 0.1\n",
     "my-preset.yaml: unknown hyperparameter 'lerning_rate' for ppo; did you mean 'learning_rate'?"),
    ("algo: ppo\nhyperparameters:\n  n_steps: 12.5\n", "my-preset.yaml: n_steps must be int, got float 12.5"),
    ("algo: ppo\nhyperparameters:\n  normalize_advantage: 'yes'\n",
     "my-preset.yaml: normalize_advantage must be bool, got str 'yes'"),
    ("algo: ppo\nhyperparameters:\n  target_kl: high\n",
     "my-preset.yaml: target_kl must be float or null, got str 'high'"),
    ("algo: ppo\nhyperparameters:\n  encoder_sizes: [64, wide]\n",
     "my-preset.yaml: encoder_sizes must be list of int, got list [64, 'wide']"),
    ("algo: ppo\nhyperparameters:\n  extra: {}\n", "my-preset.yaml: unknown hyperparameter 'extra' for ppo"),
    ("algo: ppo\nsteps: many\n", "my-preset.yaml: steps must be int, got str 'many'"),
    ("algo: ppo\ncheckpoint_every: 1e5\n", "my-preset.yaml: checkpoint_every must be int, got str '1e5'"),
    ("algo: ppo\nenv_kwargs: [4]\n", "my-preset.yaml: env_kwargs must be a mapping, got list [4]"),
    ("algo: sb3-ppo-lstm\nhyperparameters:\n  unroll: chunked\n",
     "my-preset.yaml: unknown hyperparameter 'unroll' for sb3-ppo-lstm"),
    ("hyperparameters: {}\n", "my-preset.yaml: missing key 'algo' (one of ppo, dqn, pqn, sb3-ppo-lstm)"),
    ("algo: a2c\n", "my-preset.yaml: algo must be one of ppo, dqn, pqn, sb3-ppo-lstm, got str 'a2c'"),
    ("- algo: ppo\n", "my-preset.yaml: a preset must be a mapping"),
    ("algo: ppo\nhyperparameters: [1, 2]\n", "my-preset.yaml: hyperparameters must be a mapping"),
    ("algo: ppo\nhyperparameters:\n  n_envs: [\n", "my-preset.yaml: not valid YAML"),
])
def test_a_bad_preset_is_a_value_error_naming_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(ValueError) as error:
        load_preset(_preset(tmp_path, text))
    assert message in str(error.value)


def test_values_are_coerced_to_the_field_types():
    checked = check_hyperparameters("ppo", {"learning_rate": "3e-4", "gamma": 1, "encoder_sizes": [32, 32],
                                            "clip_range_vf": None, "target_kl": 0.02}, "--set")
    assert checked == {"learning_rate": 3e-4, "gamma": 1.0, "encoder_sizes": (32, 32), "clip_range_vf": None,
                       "target_kl": 0.02}
    assert isinstance(checked["gamma"], float)  # YAML reads 1e-3 as a string and 1 as an int: both are floats here
    with pytest.raises(ValueError, match="--set: hidden_size must be int, got bool True"):
        check_hyperparameters("ppo", {"hidden_size": True}, "--set")


def test_run_settings_resolve_defaults_then_preset_then_command_line(tmp_path):
    path = _preset(tmp_path, "algo: ppo\nenv: rlmem/PassiveTMazeEasy-v0\nsteps: 5000\n"
                             "hyperparameters:\n  n_envs: 16\n  hidden_size: 32\n")
    spec = resolve_run(path)
    assert (spec.algo, spec.env, spec.steps, spec.seed, spec.device) == (
        "ppo", "rlmem/PassiveTMazeEasy-v0", 5000, 0, "auto")
    expected = {f.name: getattr(PPOConfig(n_envs=16, hidden_size=32), f.name)
                for f in dataclasses.fields(PPOConfig) if f.name != "extra"}
    assert spec.hyperparameters == expected

    spec = resolve_run(path, hyperparameters={"n_envs": 8}, steps=300, seed=2)
    assert spec.hyperparameters["n_envs"] == 8 and spec.hyperparameters["hidden_size"] == 32
    assert (spec.steps, spec.seed, spec.env) == (300, 2, "rlmem/PassiveTMazeEasy-v0")
    assert spec.to_dict()["hyperparameters"]["encoder_sizes"] == [64]  # plain YAML values

    assert resolve_run().hyperparameters == resolve_run(AGENTS / "ppo-lstm.yaml").hyperparameters
    assert (spec.checkpoint_every, spec.keep_checkpoints, spec.env_kwargs) == (100_000, 3, {})

    path = _preset(tmp_path, "algo: dqn\nenv: rlmem/RepeatPrevious-v0\nenv_kwargs: {k: 2, length: 20}\n"
                             "checkpoint_every: 5000\n")
    spec = resolve_run(path, env_kwargs={"length": 30}, keep_checkpoints=5)
    assert spec.env_kwargs == {"k": 2, "length": 30}  # the command line's, key by key, over the preset's
    assert (spec.checkpoint_every, spec.keep_checkpoints) == (5000, 5)
    with pytest.raises(ValueError, match="keep_checkpoints must be an integer >= 1, got 0"):
        resolve_run(keep_checkpoints=0)
    assert resolve_run(algo="sb3-ppo-lstm").hyperparameters["net_arch"] == (64, 64)


def test_resolving_checks_sizes_and_algo_agreement(tmp_path):
    with pytest.raises(ValueError, match=r"n_minibatches \(4\) must divide n_envs \(6\)"):
        resolve_run(hyperparameters={"n_envs": 6})
    with pytest.raises(ValueError, match=r"n_minibatches \(3\) must divide n_envs \* n_steps \(2 \* 4 = 8\)"):
        resolve_run(algo="sb3-ppo-lstm", hyperparameters={"n_envs": 2, "n_steps": 4, "n_minibatches": 3})
    with pytest.raises(ValueError, match="--algo ppo does not match the preset's algo 'sb3-ppo-lstm'"):
        resolve_run(AGENTS / "sb3-ppo-lstm.yaml", algo="ppo")
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        resolve_run(steps=0)
    with pytest.raises(ValueError, match=r"unknown hyperparameter 'steps' for ppo.*use --steps"):
        resolve_run(hyperparameters={"steps": 10})


def test_set_values_are_read_as_yaml():
    assert parse_assignments(["learning_rate=1e-3", "encoder_sizes=[64, 64]", "target_kl=null", "memory=gru"]) == {
        "learning_rate": "1e-3", "encoder_sizes": [64, 64], "target_kl": None, "memory": "gru"}
    with pytest.raises(ValueError, match="--set takes KEY=VALUE, got 'n_envs'"):
        parse_assignments(["n_envs"])
