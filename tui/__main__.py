"""``python -m aisci.tui``: the ``aisci-tui`` workbench."""

import sys

from aisci.tui.main import main

sys.exit(main())
