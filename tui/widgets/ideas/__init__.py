"""Idea archive pane: the triage table, the detail view and the triage dialogs."""
