"""Modal screens of the aisci TUI."""
