"""Throughput benchmark: a runnable wrapper around :mod:`rlmem.throughput`.

The benchmark lives in the package (``rlmem/throughput/``; docs/benchmarks.md says what it
measures and how to read it), so that ``rlmem throughput`` works after a plain ``pip install``.
This file runs the same program from a checkout::

    python scripts/throughput.py --what env --num-envs 1024,4096 --no-popgym
    rlmem throughput --what env --num-envs 1024,4096 --no-popgym      # the same
"""

import sys
from pathlib import Path

# Benchmark the rlmem next to this file (the checkout), not some other installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rlmem.throughput import main  # noqa: E402

if __name__ == "__main__":
    main()
