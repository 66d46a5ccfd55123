"""Plots and paper pane: figures and PDF pages inline via textual-image."""
