"""The panes of the aisci TUI, one module each."""
