"""Repository hygiene: ruff is clean, the engine never imports textual or the TUI (both as
an import-linter contract and at runtime), and the wheel ships the ``aisci.*`` packages
with their data and no top-level ``engine``/``tui`` package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[test]')"
    return found


def test_ruff_is_clean():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise",
                        str(REPO)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_import_linter_contract_is_kept():
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import aisci.engine
names = []
for info in pkgutil.walk_packages(aisci.engine.__path__, "aisci.engine."):
    if info.name.endswith(".__main__"):  # runs the command line when imported
        continue
    importlib.import_module(info.name)
    names.append(info.name)
bad = sorted(m for m in sys.modules
             if m == "textual" or m.startswith(("textual.", "textual_image", "aisci.tui")))
print(json.dumps({"modules": names, "bad": bad}))
"""


def test_importing_every_engine_module_loads_no_textual():
    r = subprocess.run([sys.executable, "-c", _IMPORT_ALL], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    data = json.loads(r.stdout.strip().splitlines()[-1])
    assert "aisci.engine.llm.client" in data["modules"]
    assert "aisci.engine.llm.anthropic_provider" in data["modules"]
    assert data["bad"] == [], f"the engine pulled in {data['bad']}"


def _source_copy(dest: Path) -> Path:
    """The working tree without build outputs, so the build never writes into it."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                    "__pycache__", ".ruff_cache", ".pytest_cache",
                                    "run_[0-9]*", "logs", "tests", "benchmarks", "*.pyc",
                                    "aisci-demo*", "labs")
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


@pytest.mark.slow
def test_wheel_ships_aisci_packages_and_data(tmp_path):
    src = _source_copy(tmp_path / "src")
    out = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [wheel] = list(out.glob("aisci-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert "engine" not in tops and "tui" not in tops and "tests" not in tops
    assert {t for t in tops if not t.endswith(".dist-info")} == {"aisci"}
    for needed in ("aisci/__init__.py", "aisci/engine/__init__.py",
                   "aisci/engine/cli/__init__.py", "aisci/engine/llm/client.py",
                   "aisci/engine/llm/anthropic_provider.py", "aisci/engine/data/prices.toml",
                   "aisci/prompts/json_repair.md", "aisci/tui/__init__.py"):
        assert needed in names, needed
    assert any(n.startswith("aisci/templates/") for n in names)
    assert any(n.startswith("aisci/prompts/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry).decode()
    assert "aisci = aisci.engine.cli:main" in scripts
    assert "aisci-tui = aisci.tui.main:main" in scripts

    # Installed (not editable) into its own directory, the package runs from anywhere and
    # finds its bundled data there rather than in the source tree.
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                        "--target", str(target), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    probe = ("import aisci, json; from aisci.engine import resources as r; "
             "print(json.dumps([aisci.__file__, str(r.templates_dir()), "
             "sorted(p.name for p in r.prompts_dir().iterdir())]))")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    init, templates, prompts = json.loads(r.stdout)
    assert init.startswith(str(target)) and Path(templates).is_dir()
    assert "json_repair.md" in prompts
    for module, args, expect in (
            ("aisci.engine.cli", ["--help"], "usage: aisci "),
            ("aisci.tui.main", ["--help"], "usage: aisci-tui"),
            ("aisci.engine.cli", ["doctor", "--set", "models.default=scripted:demo"],
             "[ok  ] python")):
        code = f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"
        r = subprocess.run([sys.executable, "-c", code, *args], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode in (0, 1) and expect in r.stdout, (module, args, r.stderr[-2000:])
        assert "Traceback" not in r.stderr


def _readme_test_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("Install and run the tests", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert "\n" not in block, "the README's test command must be one line"
    return block


def test_ci_runs_exactly_the_readme_test_command():
    command = _readme_test_command()
    assert "pip install torch==2.13.0" in command and command.endswith("pytest")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci
    assert command in ci.splitlines()
    assert '"$status" -eq 5' in ci
    assert os.access(REPO / ".ci" / "run", os.X_OK)
