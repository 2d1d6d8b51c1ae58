"""``python -m rlmem.throughput [OPTIONS]``: the same program as ``rlmem throughput``."""

from rlmem.throughput.command import main

if __name__ == "__main__":
    main()
