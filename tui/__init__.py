"""The Textual application for aisci (``aisci-tui``)."""

import os

# Textual draws a changed screen on a frame timer of 1/TEXTUAL_FPS seconds (60 by
# default): a key press waits up to 16.7 ms for the next frame, often two while a run
# floods the log. At 240 the wait is at most 4.2 ms, and the number of frames stays that
# of the refreshes asked for (measured: key-to-screen p99 during a 100k lines/s flood
# 47 -> 33 ms, the TUI's CPU unchanged). Read once when Textual is imported, so it is set
# here, before any module of this package imports it; a user's own value stands. (Under
# pytest the snapshot plugin imports Textual first: the tests run at Textual's 60.)
os.environ.setdefault("TEXTUAL_FPS", "240")
