"""aisci: a terminal workbench for the AI Scientist research loop.

The repository root is this package; the engine lives in ``aisci.engine`` (headless)
and the Textual application in ``aisci.tui``.
"""

__version__ = "0.1.0"
