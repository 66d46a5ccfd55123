"""The one error root: every exception class the engine defines derives from AisciError,
the exit codes come from it, and ``aisci`` reports it as one line (a bug too, with its
traceback in a file instead of on the terminal)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import aisci.engine
import pytest
from aisci.engine import cli
from aisci.engine.config import ConfigError
from aisci.engine.errors import (
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_LAB_IN_USE,
    EXIT_USAGE,
    AisciError,
    ExternalServiceError,
    StageError,
    UsageError,
    exit_code,
    one_line,
    save_traceback,
    user_message,
)
from aisci.engine.lab.store import LabInUse, StoreError
from aisci.engine.llm.base import LLMError
from aisci.engine.llm.client import BudgetExceeded
from aisci.engine.stages.review import PdfError, ReviewError

# Exception classes that stay outside the root, each with the reason.
OUTSIDE_THE_ROOT = {
    "aisci.engine.run.confine._Refused":
        "raised and caught inside the forked child before exec; the child writes one line "
        "and exits 126, so it never reaches a user or the engine",
}


def _engine_exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(aisci.engine.__path__, "aisci.engine."):
        if info.name.endswith(".__main__"):  # runs the command on import
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_engine_exception_derives_from_the_root():
    classes = _engine_exception_classes()
    assert len(classes) > 25  # the walk found the engine's modules
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, AisciError))
    assert outside == sorted(OUTSIDE_THE_ROOT)


def test_allow_list_names_existing_classes():
    classes = _engine_exception_classes()
    assert set(OUTSIDE_THE_ROOT) <= set(classes)


@pytest.mark.parametrize(("exc", "code"), [
    (ConfigError("aisci.toml", "a.b", "bad"), EXIT_USAGE),
    (StoreError("no lab database here"), EXIT_USAGE),
    (LabInUse(Path("/lab"), 123), EXIT_LAB_IN_USE),
    (BudgetExceeded("lab", None, 2.0, 1.0), EXIT_BUDGET),
    (PdfError("x.pdf: not a PDF document"), EXIT_USAGE),
    (ReviewError("every reviewer failed"), EXIT_FAILED),
    (LLMError("server error"), EXIT_FAILED),
    (AisciError("custom", exit_code=7), 7),
    (KeyError("x"), EXIT_FAILED),
])
def test_exit_codes(exc, code):
    assert exit_code(exc) == code


def test_subclasses_by_kind():
    assert issubclass(ConfigError, UsageError)
    assert issubclass(BudgetExceeded, ExternalServiceError)
    assert issubclass(PdfError, StageError)


def test_user_message_is_one_line():
    assert user_message(UsageError("\n  first line  \nsecond line")) == "first line"
    assert user_message(AisciError()) == "AisciError"
    assert user_message(ConfigError("aisci.toml", "a.b", "bad")) == \
        "config error: aisci.toml:a.b: bad"
    assert user_message(KeyError("x")) == "KeyError: 'x'"
    assert user_message(RuntimeError()) == "RuntimeError"
    assert one_line("\n\n  a\nb") == "a"


def test_builtin_bases_kept_where_code_catches_them():
    from aisci.engine.lab.safe_files import UnsafeFile
    from aisci.engine.run.confine import ConfineError

    refused = UnsafeFile("run_1/x.json", "is a symlink")
    assert isinstance(refused, OSError) and isinstance(refused, ValueError)
    assert str(refused) == user_message(refused) == "run_1/x.json is a symlink: refused"
    assert isinstance(ConfineError("landlock"), OSError)


def _parser_raising(exc: BaseException):
    def build() -> argparse.ArgumentParser:
        def fail(args: argparse.Namespace) -> int:
            raise exc

        parser = argparse.ArgumentParser(prog="aisci")
        parser.add_argument("--flag", action="store_true")
        parser.set_defaults(func=fail)
        return parser
    return build


@pytest.mark.parametrize(("exc", "code", "lines"), [
    (UsageError("--gpus 'x': expected indices\ndetail"), EXIT_USAGE,
     ["aisci: --gpus 'x': expected indices"]),
    (AisciError("budget reached", hint="raise [budget] in aisci.toml", exit_code=EXIT_BUDGET),
     EXIT_BUDGET, ["aisci: budget reached", "  see: raise [budget] in aisci.toml"]),
    (LabInUse(Path("/lab"), 42), EXIT_LAB_IN_USE,
     ["aisci: lab /lab is in use by pid 42; watch it with `aisci status --lab /lab` "
      "(read-only) or stop that process"]),
    (ConfigError("aisci.toml", "x.y", "unknown key"), EXIT_USAGE,
     ["aisci: config error: aisci.toml:x.y: unknown key"]),
])
def test_main_reports_an_aisci_error_in_one_line(monkeypatch, capsys, exc, code, lines):
    monkeypatch.setattr(cli, "build_parser", _parser_raising(exc))
    assert cli.main([]) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == lines


def test_main_reports_a_bug_in_one_line_and_saves_the_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(cli, "build_parser", _parser_raising(KeyError("stage")))
    assert cli.main(["--flag"]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert "Traceback" not in err
    m = re.fullmatch(r"aisci: internal error: KeyError: 'stage' \(traceback in (.+)\)", line)
    assert m, line
    log = Path(m.group(1))
    assert log.is_relative_to(tmp_path / "state")
    text = log.read_text()
    assert "aisci --flag" in text and "Traceback" in text and "KeyError: 'stage'" in text


def test_save_traceback_says_when_it_cannot_write(monkeypatch, tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the log folder would go")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    try:
        raise ValueError("boom")
    except ValueError as exc:
        assert save_traceback(exc).startswith("traceback not saved: ")


def test_main_keeps_interrupt_and_broken_pipe(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", _parser_raising(KeyboardInterrupt()))
    assert cli.main([]) == 130
    assert capsys.readouterr().err.startswith("aisci: interrupted")
