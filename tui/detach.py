"""The in-process engine outlives its UI: detach on request, on a hang-up, on a dead tty.

``aisci-tui`` in a terminal forks once at start (:func:`supervise`): the parent only
waits, so the shell keeps its job; the child runs the engine and the UI. When the user
detaches (the ``d`` key, the palette, "leave it running" on quit) the UI ends, the
terminal is restored, the child tells the parent, which exits (the shell prompt comes
back), and leaves the terminal's session; when the terminal goes away (SIGHUP) the same
happens without the goodbye. Either way the child carries on headless: its experiments
(children of this process, each in its own session) never notice, output keeps going to
the run logs, engine messages to ``engine.log`` in the lab, and nothing is written to
the terminal again. ``aisci-tui --lab L`` attaches to it; ``aisci stop`` (or SIGTERM)
stops it cleanly.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from aisci.engine.lab import layout
from aisci.tui.app import EXIT_DETACHED, EXIT_LEFT, EXIT_STOPPED, AisciApp

if TYPE_CHECKING:  # the engine is loaded after the app's first frame (aisci.tui.launch)
    from aisci.tui.engine_thread import EngineThread

OPEN_WAIT_S = 180.0
"""How long the launcher waits, after the UI ended, for a lab that was still opening."""
_parent_pipe: int | None = None
"""Write end of the pipe to the waiting parent (in the forked child), or None."""
_forked = False
_watching = False


def supervise() -> int | None:
    """Fork once. In the child (which runs the engine and the UI) return None; in the
    parent, wait until the child detaches (exit 0) or exits (its exit code)."""
    global _parent_pipe, _forked
    if _forked:
        return None
    _forked = True
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _parent_pipe = w
        return None
    os.close(w)
    # The terminal's Ctrl+C / hang-up are the child's to handle; a `kill` of this pid
    # (what the shell knows) reaches the child as a clean stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, lambda *_: os._exit(0))
    signal.signal(signal.SIGTERM, lambda *_: _forward(pid, signal.SIGTERM))
    try:
        data = os.read(r, 1)
    except OSError:
        data = b""
    if data == b"D":
        return 0
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status) % 256
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def _forward(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def release_terminal() -> None:
    """Never touch the terminal again: stdin, stdout and stderr become /dev/null, and
    this process leaves the terminal's session (no more hang-ups or job-control stops).
    """
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        with contextlib.suppress(OSError):
            os.dup2(fd, target)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.setsid()  # fails for a session leader, which the hang-up already detached


def tell_parent_detached() -> None:
    global _parent_pipe
    if _parent_pipe is not None:
        with contextlib.suppress(OSError):
            os.write(_parent_pipe, b"D")
            os.close(_parent_pipe)
        _parent_pipe = None


class InProcess:
    """The engine this process runs, once the app's opener started it (None while the lab
    opens, and for an attached or read-only viewer). Whoever comes second of the opener
    and the app's end decides: an engine started after the app closed is stopped."""

    def __init__(self) -> None:
        self.runner: EngineThread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def keep(self, runner: EngineThread) -> bool:
        """Record ``runner``; False when the app has already closed (stop it then)."""
        with self._lock:
            if self._closed:
                return False
            self.runner = runner
            return True

    def close(self) -> EngineThread | None:
        """The app has ended: the engine it leaves behind, if any."""
        with self._lock:
            self._closed = True
            return self.runner


def run(app: AisciApp, held: InProcess) -> str | None:
    """Run the app; an engine this process starts (``held``, on its own thread) outlives
    the UI when it ends without stopping it (detach, hang-up, a dead tty, a UI crash),
    headless, until it is asked to stop (``aisci stop``, SIGTERM); then the process ends.
    A UI stuck on a vanished terminal cannot hold the engine up."""
    hung_up = False

    def stop_engine(signum: int, _frame: object) -> None:
        runner = held.runner
        if runner is not None:
            runner.request_stop(f"signal {signal.Signals(signum).name}")
        else:  # the lab is still opening, or another process's engine: the UI ends
            threading.Thread(target=_end_ui, args=(app, EXIT_LEFT), daemon=True).start()

    def hangup(_signum: int, _frame: object) -> None:
        nonlocal hung_up
        if hung_up:
            return
        hung_up = True
        release_terminal()  # before Textual restores the (dead) terminal
        tell_parent_detached()
        runner = held.runner
        if runner is not None:
            runner.exit_when_stopped = True
        # the UI ends from its own loop; asked from a thread (this handler runs on the
        # UI's thread, and that loop may never come back if the terminal blocks it)
        threading.Thread(target=_end_ui, args=(app, EXIT_DETACHED), daemon=True).start()

    signal.signal(signal.SIGHUP, hangup)
    signal.signal(signal.SIGTERM, stop_engine)  # `kill`: a clean stop, the UI follows
    try:
        result = app.run(mouse=True)
    except Exception:  # the UI failed; the engine and its runs must not
        result = None
    # a lab still opening (the user quit at once) is opened, then dealt with below
    app.wait_opened(OPEN_WAIT_S)
    runner = held.close()
    if hung_up and (runner is None or runner.finished.is_set()):
        # The terminal is gone and nothing of the lab runs here: end now. Textual's input
        # thread may spin on the dead terminal forever and would hold the exit (a viewer
        # left burning a core until someone killed it).
        os._exit(0)
    if runner is None:  # nothing of the lab runs here
        return result
    if runner.finished.is_set():
        return result or EXIT_STOPPED
    if result == EXIT_STOPPED:
        runner.request_stop("the user")
        runner.finished.wait(runner.stop_timeout_s)
        return EXIT_STOPPED
    runner.exit_when_stopped = True
    gc.unfreeze()  # the app froze what it loaded at start; nothing of the UI is kept now
    if not hung_up:
        lab = runner.lab
        print(f"aisci-tui: detached. The engine (pid {os.getpid()}) keeps running lab {lab}.\n"
              f"  attach again:  aisci-tui --lab {lab}\n"
              f"  stop it:       aisci stop --lab {lab}\n"
              f"  its messages:  {lab / layout.ENGINE_LOG}", flush=True)
        tell_parent_detached()
        release_terminal()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_engine)
    signal.signal(signal.SIGINT, stop_engine)
    while not runner.finished.wait(1.0):
        pass
    return EXIT_DETACHED


def watch_terminal(interval_s: float = 1.0) -> None:
    """Treat a terminal that went away as a hang-up even when no SIGHUP comes (a
    process that is not the terminal's session leader, a pty whose other end closed):
    once stdin reports POLLHUP, this process gets SIGHUP (the in-process engine then
    detaches; a viewer ends). Without it Textual would spin on the dead terminal."""
    global _watching
    if _watching or not sys.stdin.isatty():
        return
    _watching = True

    def watch() -> None:
        poller = select.poll()
        poller.register(0, select.POLLIN)
        while True:
            time.sleep(interval_s)
            try:
                events = poller.poll(0)
            except OSError:
                return
            if any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _fd, ev in events):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(os.getpid(), signal.SIGHUP)
                return

    threading.Thread(target=watch, name="aisci-terminal-watch", daemon=True).start()


def _end_ui(app: AisciApp, how: str) -> None:
    with contextlib.suppress(Exception):
        app.call_from_thread(app.shutdown, how)
