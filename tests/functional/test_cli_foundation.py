"""The ``aisci`` command as a user runs it: help, config show, config errors (exit 2 with
``file:key: problem``) and doctor from an unrelated directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aisci.engine.cli import EXIT_USAGE, main


def _aisci() -> list[str]:
    script = Path(sys.executable).parent / "aisci"
    if script.exists():
        return [str(script)]
    found = shutil.which("aisci")
    assert found, "the aisci console script is not installed"
    return [found]


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "AISCI_USER_CONFIG": str(cwd / "no-user-config.toml"), **env}
    return subprocess.run(_aisci() + args, cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=full_env)


def test_help_from_an_unrelated_directory(tmp_path):
    r = _run(["--help"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "usage: aisci" in r.stdout and "config" in r.stdout and "doctor" in r.stdout


def test_config_show_lists_values_and_origins(tmp_path):
    (tmp_path / "aisci.toml").write_text("[experiment]\nmax_runs = 2\n")
    r = _run(["config", "show", "--lab", str(tmp_path), "--set", "plot.max_attempts=3"],
             tmp_path)
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.strip()}
    assert "2" in lines["experiment.max_runs"] and "aisci.toml" in lines["experiment.max_runs"]
    assert "(command line)" in lines["plot.max_attempts"]
    assert "(default)" in lines["review.ensemble"]


@pytest.mark.parametrize(("text", "expected"), [
    ("[experiment]\nmax_runz = 3\n", "aisci.toml:experiment.max_runz: unknown key"),
    ("[experiment]\nmax_runs = \"five\"\n", "aisci.toml:experiment.max_runs: "),
    ("[experiment\n", "aisci.toml: invalid TOML"),
])
def test_config_errors_exit_2_with_file_key_problem(tmp_path, text, expected):
    (tmp_path / "aisci.toml").write_text(text)
    r = _run(["config", "show"], tmp_path)
    assert r.returncode == EXIT_USAGE == 2
    assert r.stdout == ""
    [line] = r.stderr.strip().splitlines()
    assert expected in line and str(tmp_path / "aisci.toml") in line


def test_bad_override_exits_2_in_process(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "none.toml"))
    code = main(["config", "show", "--lab", str(tmp_path), "--set", "budget.lab_usd=cheap"])
    assert code == 2
    assert "command line:budget.lab_usd:" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: aisci" in capsys.readouterr().out


def test_doctor_from_an_unrelated_directory_never_prints_keys(tmp_path):
    secret = "sk-ant-very-secret-value-123"
    r = _run(["doctor", "--set", "models.default=scripted:demo"], tmp_path,
             ANTHROPIC_API_KEY=secret)
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr
    out = r.stdout
    names = [ln[7:].split()[0] for ln in out.splitlines() if ln.startswith("[")]
    for check in ("python", "torch", "git", "pdflatex", "isolation", "ANTHROPIC_API_KEY",
                  "graphics", "lab"):
        assert check in names, out
    assert secret not in out and secret not in r.stderr
    [key_line] = [ln for ln in out.splitlines() if " ANTHROPIC_API_KEY " in ln]
    assert "present" in key_line.split()
    # Exit status follows the checks: non-zero exactly when a check FAILed.
    assert (r.returncode == 1) == ("[FAIL]" in out)


def test_doctor_fails_when_a_needed_key_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env["AISCI_USER_CONFIG"] = str(tmp_path / "none.toml")
    r = subprocess.run(_aisci() + ["doctor", "--set", "models.default=anthropic:claude-haiku-4-5"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1
    assert "[FAIL] ANTHROPIC_API_KEY" in r.stdout and "needed by the configured models" in r.stdout


@pytest.mark.parametrize("module,args,expect", [
    ("aisci", ["--version"], "aisci "),
    ("aisci.engine.cli", ["--help"], "usage: aisci"),
    ("aisci.tui", ["--help"], "usage: aisci-tui"),
])
def test_python_dash_m_entry_points(tmp_path, module, args, expect):
    r = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert expect in r.stdout
