"""The one error root. Every error the engine raises on purpose derives from
:class:`AisciError`: it carries a one-line message for the user (what went wrong and what
was expected), an exit code for the ``aisci`` command, and an optional hint. The CLI and
the TUI report errors through :func:`user_message` and :func:`exit_code`, never by
printing a traceback: the traceback of an unexpected error goes to a file
(:func:`save_traceback`).
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

import platformdirs

# Exit codes of the ``aisci`` command (README: "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran and something it did failed (a stage, a check)."""
EXIT_USAGE = 2
"""Bad input: arguments, configuration, template, file."""
EXIT_BUDGET = 3
"""Stopped cleanly because a budget was reached."""
EXIT_LAB_IN_USE = 4
EXIT_INTERRUPTED = 130


class AisciError(Exception):
    """An error with a message meant for the user. Subclasses set ``exit_code``."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str = "", *, hint: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return one_line(str(self)) or type(self).__name__


class UsageError(AisciError):
    """Bad input from the user: an argument, a setting, a file, a name."""

    exit_code = EXIT_USAGE


class StageError(AisciError):
    """A stage could not finish its work (the pipeline records it as a failed stage)."""


class ExternalServiceError(AisciError):
    """An external service (LLM provider, literature API) failed or refused."""


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def user_message(exc: BaseException) -> str:
    """One line for the user: the message of an AisciError; the type and first line of
    anything else (an unexpected error; the caller logs its traceback)."""
    if isinstance(exc, AisciError):
        return exc.message
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def exit_code(exc: BaseException) -> int:
    return exc.exit_code if isinstance(exc, AisciError) else EXIT_FAILED


def save_traceback(exc: BaseException, context: str = "") -> str:
    """Write the traceback of an unexpected error to a new file in the user log directory
    (``context`` first, e.g. the command line); say where it went, or why it did not."""
    log_dir = Path(platformdirs.user_log_dir("aisci", appauthor=False))
    path = log_dir / f"internal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            if context:
                fh.write(context + "\n")
            traceback.print_exception(exc, file=fh)
    except OSError as err:
        return f"traceback not saved: {err.strerror or err}"
    return f"traceback in {path}"
