"""A real terminal for the TUI tests: a private tmux server with one window running a
command; keys go in with send-keys, the screen comes out with capture-pane."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class Terminal:
    """One tmux server (socket named after ``name`` and this pid) whose one window runs
    ``command`` in ``cwd`` with ``env`` added; COLUMNS/LINES from the calling
    environment are dropped (they would override the window size)."""

    def __init__(self, name: str, command: str, cwd: Path, *, size: tuple[int, int],
                 env: dict[str, str], key_gap_s: float = 0.15) -> None:
        self.socket = f"aisci-test-{os.getpid()}-{name}"
        self.key_gap_s = key_gap_s
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(size[0]),
                  "-y", str(size[1]), f"cd {cwd} && env -u COLUMNS -u LINES {exports} {command}")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=20).stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "t", key)
            time.sleep(self.key_gap_s)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, check: Callable[[str], bool], timeout: float, what: str) -> str:
        end = time.monotonic() + timeout
        text = ""
        while time.monotonic() < end:
            try:
                text = self.screen()
            except subprocess.CalledProcessError:  # the window is gone (its program ended)
                text = "(no pane)"
            if check(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen was:\n{text}")

    def close(self) -> None:
        """Close the terminal: tmux sends SIGHUP to the processes of its window."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=20)
