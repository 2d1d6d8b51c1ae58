"""``python -m rlmem`` runs the ``rlmem`` command."""

import sys

from rlmem.cli import main

sys.exit(main())
