"""Processes pane (runaway control)."""
