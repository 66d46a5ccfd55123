"""Activity and cost pane."""
