"""``python -m aisci.engine.cli``: the ``aisci`` command without the console script."""

import sys

from aisci.engine.cli import main

sys.exit(main())
