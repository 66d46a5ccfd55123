"""The Textual application for aisci (``aisci-tui``)."""
