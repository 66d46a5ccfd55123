"""Runs and diffs pane."""
