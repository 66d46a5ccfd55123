"""Training log pane: a file-backed, Line-API log view."""
