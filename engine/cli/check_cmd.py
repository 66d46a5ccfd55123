"""``aisci check PAPER_DIR``: the deterministic integrity check of a paper against its
runs, on any folder laid out like an idea folder or a results folder of the reference
system (``run_*/final_info.json``, ``latex/template.tex``, ``experiment.py``,
``notes.txt``). No lab, no store, no LLM.

Prints one line per finding, ``file:line  kind  quote  ->  evidence``; exit 0 when the
paper is clean, 1 with findings, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from aisci.engine.errors import EXIT_FAILED, EXIT_OK, UsageError
from aisci.engine.lab import safe_files
from aisci.engine.paper.integrity_checks import scan
from aisci.engine.paper.run_facts import run_dirs

DEFAULT_TEX = ("latex/template.tex", "template.tex", "paper.tex", "main.tex")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="check a paper's numbers and claims against its run "
                                     "folders (no lab, no LLM)")
    p.add_argument("paper_dir", type=Path, metavar="PAPER_DIR",
                   help="a folder with run_*/final_info.json and the paper's LaTeX")
    p.add_argument("--tex", type=Path, metavar="FILE",
                   help="the .tex file to check (default: latex/template.tex)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=_check)


def _tex_rel(paper_dir: Path, tex: Path | None) -> str:
    if tex is not None:
        path = tex if tex.is_absolute() else (Path.cwd() / tex)
        if not path.exists() and not tex.is_absolute():
            path = paper_dir / tex  # relative to the paper folder
        path = Path(os.path.abspath(path))
        if not path.is_relative_to(paper_dir):
            raise UsageError(f"--tex {tex}: expected a .tex file inside {paper_dir}")
        rel = path.relative_to(paper_dir).as_posix()
        if not safe_files.is_file(paper_dir, rel):
            raise UsageError(f"--tex {tex}: no such file (expected a .tex file)")
        return rel
    for rel in DEFAULT_TEX:
        if safe_files.is_file(paper_dir, rel):
            return rel
    try:
        found = [e.name for e in safe_files.list_dir(paper_dir, "latex")
                 if e.kind == "file" and e.name.endswith(".tex")]
    except OSError:  # no latex/ folder
        found = []
    if len(found) == 1:
        return f"latex/{found[0]}"
    raise UsageError(f"{paper_dir}: no paper found (expected latex/template.tex, or name it "
                     "with --tex FILE)")


def _check(args: argparse.Namespace) -> int:
    paper_dir = Path(os.path.abspath(args.paper_dir.expanduser()))
    if not paper_dir.is_dir():
        raise UsageError(f"{args.paper_dir}: not a folder (expected a paper folder with "
                         "run_*/final_info.json and latex/template.tex)")
    tex_rel = _tex_rel(paper_dir, args.tex)
    runs = [p for _, p in run_dirs(paper_dir)
            if safe_files.is_file(paper_dir, f"{p.name}/final_info.json")]
    if not runs:
        raise UsageError(f"{args.paper_dir}: no run_*/final_info.json (expected the run "
                         "folders of the paper's experiments)")
    try:
        result = scan(paper_dir, tex_rel)
    except (OSError, ValueError) as exc:  # the .tex refused (a symlink, too large)
        raise UsageError(f"{tex_rel}: cannot read the paper: {exc}") from None
    if args.json:
        print(json.dumps({"paper": tex_rel, "numbers_checked": result.numbers_checked,
                          "findings": [f.to_dict() for f in result.findings]}, indent=2))
    else:
        for f in result.findings:
            print(f.render())
        errors = sum(1 for f in result.findings if f.severity == "error")
        print(f"{len(result.findings)} finding(s) ({errors} error, "
              f"{len(result.findings) - errors} low) in {tex_rel}; "
              f"{result.numbers_checked} numbers checked against {len(runs)} run(s)")
    return EXIT_FAILED if result.findings else EXIT_OK


__all__ = ["register"]
