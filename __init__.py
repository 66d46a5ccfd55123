"""aisci: a terminal workbench for the AI Scientist research loop.

The repository root is this package; the engine lives in ``aisci.engine`` (headless)
and the Textual application in ``aisci.tui``.
"""

import os

# GitPython runs `git --version` when it is imported and, by default, raises ImportError
# when no git executable is found; every command imports the engine's git workspace, so
# on a machine without git even `aisci --help` and `aisci doctor` would die in a
# traceback. Set here, before any `import git` in the package: the import then always
# succeeds, `aisci doctor` reports git as missing and an engine refuses to start without
# it in one line (aisci.engine.engine.GitNotFound).
os.environ["GIT_PYTHON_REFRESH"] = "quiet"

__version__ = "0.1.0"
