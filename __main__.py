"""``python -m aisci``: the headless ``aisci`` command."""

import sys

from aisci.engine.cli import main

sys.exit(main())
