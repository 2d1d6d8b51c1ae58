"""Train rlmem's RecurrentPPO on a memory task, evaluate it and save it: copy this and change it.

    python scripts/train.py --env rlmem/RepeatPreviousEasy-v0 --steps 500000
    python scripts/train.py --preset agents/ppo-gru.yaml      # hyperparameters from a preset

`rlmem train` does the same with a run directory (config.yaml, TensorBoard, eval.json).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a checkout works without `pip install -e .`
from rlmem.agents.ppo import RecurrentPPO
from rlmem.agents.presets import load_preset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="rlmem/RepeatPreviousEasy-v0")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", help="a preset YAML (agents/*.yaml) instead of the settings below")
    parser.add_argument("--out", default="runs/train-script/final.pt", help="where the agent is saved")
    args = parser.parse_args(argv)

    if args.preset:  # every hyperparameter from the file, checked (unknown keys, types, sizes)
        hyperparameters = load_preset(args.preset).hyperparameters
    else:  # any field of rlmem.agents.ppo.PPOConfig; the rest keep their defaults
        hyperparameters = {"memory": "lstm", "hidden_size": 128, "n_envs": 32, "n_steps": 64, "learning_rate": 1e-3}
    agent = RecurrentPPO(args.env, device=args.device, seed=0, **hyperparameters)
    agent.learn(total_timesteps=args.steps)
    result = agent.evaluate(n_episodes=100)
    agent.save(args.out)  # RecurrentPPO.load(args.out) gives it back
    print(f"{args.env}: mean return {result['mean_return']:.3f} +- {result['std_return']:.3f} "
          f"over {result['n_episodes']} episodes; agent saved to {args.out}")
    return result


if __name__ == "__main__":
    main()
