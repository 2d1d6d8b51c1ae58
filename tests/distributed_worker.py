"""One rank of a data-parallel RecurrentPPO run, for tests/test_distributed.py (started by torchrun).

Writes ``<out>/rank<R>.json``: a SHA-256 of the flattened weights after every iteration, the
epochs each update ran (target_kl stops them early) and a hash of this rank's first observations.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

from rlmem import distributed
from rlmem.agents.ppo import RecurrentPPO


def weights_hash(agent: RecurrentPPO) -> str:
    flat = torch.cat([p.detach().reshape(-1) for p in agent.policy.parameters()])
    return hashlib.sha256(flat.numpy().tobytes()).hexdigest()


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"), timeout_s=30)
    agent = RecurrentPPO("rlmem/RepeatPreviousEasy-v0", n_envs=8, n_steps=16, n_minibatches=2, device="cpu",
                         seed=3, verbose=0, target_kl=0.002)
    first_obs = hashlib.sha256(agent._start()["obs"].numpy().tobytes()).hexdigest()
    record = {"initial": weights_hash(agent), "hashes": [], "epochs": [], "first_obs": first_obs,
              "steps": []}

    def note(a: RecurrentPPO) -> None:
        record["hashes"].append(weights_hash(a))
        record["epochs"].append(a.last_log["losses/epochs"])
        record["steps"].append(a.num_timesteps)

    agent.learn(8 * 16 * 2 * 6, callback=note, progress_bar=False)
    (out / f"rank{distributed.rank()}.json").write_text(json.dumps(record))
    distributed.close()


if __name__ == "__main__":
    main()
