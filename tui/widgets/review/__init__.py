"""Review scorecard pane."""
