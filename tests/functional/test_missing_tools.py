"""A machine without git or without TeX. Without git every command that does not need it
works (GitPython's import must not fail), ``aisci doctor`` names git as missing with its
fix, and an engine refuses to start in one line (exit 2) instead of failing a stage
later. Without TeX the pipeline runs (papers reviewed from their LaTeX source), so
doctor warns, naming what is lost and how to install it, and its exit status stays 0
unless something else fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aisci.engine import doctor
from aisci.engine.cli import main
from aisci.engine.errors import EXIT_USAGE

TEX_TOOLS = ("pdflatex", "bibtex", "latexmk", "chktex")


def _bin_with(tmp_path: Path, *tools: str) -> Path:
    """A PATH directory holding only ``tools`` (those this machine has)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return bin_dir


def _doctor_lines(capsys: pytest.CaptureFixture[str], lab: Path) -> tuple[int, dict[str, str]]:
    code = main(["doctor", "--lab", str(lab), "--set", "models.default=scripted:demo"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    lines = {ln[7:].split()[0]: ln for ln in out.out.splitlines() if ln.startswith("[")}
    return code, lines


def test_without_git_nothing_crashes_and_an_engine_refuses_in_one_line(tmp_path):
    bin_dir = _bin_with(tmp_path)  # nothing: no git (and no TeX) on PATH
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GIT_PYTHON_REFRESH")}
    env.update(PATH=str(bin_dir), HOME=str(tmp_path / "home"),
               AISCI_USER_CONFIG=str(tmp_path / "none.toml"))
    # a fresh interpreter: GitPython probes git when it is first imported
    tui = subprocess.run([sys.executable, "-m", "aisci.tui", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert tui.returncode == 0 and "usage: aisci-tui" in tui.stdout, tui.stderr
    lab = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "aisci.engine.cli", "run", "--demo", "--lab",
                          str(lab)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == EXIT_USAGE, run.stdout + run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("aisci: git not found") and "apt-get install git" in line
    assert not (lab / "ideas").exists()  # refused before any stage ran


def test_doctor_without_git_fails_on_git_and_setup_would_install_it(tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.setenv("PATH", str(_bin_with(tmp_path, "bwrap")))
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "none.toml"))
    code, lines = _doctor_lines(capsys, tmp_path / "lab")
    assert code == 1
    assert lines["git"].startswith("[FAIL]") and "apt-get install git" in lines["git"]
    assert "git" in doctor.missing_packages()
    root = doctor.plan_setup(which=lambda n: None if n == "git" else f"/usr/bin/{n}",
                             euid=0)
    assert root.packages == ["git"] and root.prefix == []


def test_doctor_without_tex_warns_what_is_lost_and_exits_by_the_other_checks(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(_bin_with(tmp_path, "git", "bwrap")))
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "none.toml"))
    code, lines = _doctor_lines(capsys, tmp_path / "lab")
    for tool in TEX_TOOLS:
        assert lines[tool].startswith("[warn]"), lines[tool]
        assert "apt-get install" in lines[tool] and "aisci setup" in lines[tool]
    assert "LaTeX source" in lines["pdflatex"] and "no PDF" in lines["pdflatex"]
    assert lines["git"].startswith("[ok")
    # missing TeX alone never makes doctor fail: the exit status follows the FAIL lines
    failed = [name for name, ln in lines.items() if ln.startswith("[FAIL]")]
    assert code == (1 if failed else 0), failed
