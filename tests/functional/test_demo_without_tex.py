"""The README's main job on a machine without TeX (issue 16): the demo still ends in a
reviewed idea. The write stage keeps the LaTeX and says once how to get PDFs; the
review reads the paper's text from the source; the batch exits 0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from aisci.engine.lab.store import LabStore
from aisci.engine.paper.latex import TEX_MISSING_NOTICE

pytestmark = pytest.mark.slow

BWRAP = shutil.which("bwrap")
TEX_TOOLS = ("pdflatex", "latexmk")


def _hide_tex() -> list[str]:
    """bubblewrap arguments that make every TeX compiler on PATH unusable (bound over by
    /dev/null, which is not executable), as on a machine without TeX Live."""
    args: list[str] = []
    for tool in TEX_TOOLS:
        path = shutil.which(tool)
        if path:
            args += ["--ro-bind", "/dev/null", path]
    return args


@pytest.mark.skipif(not BWRAP, reason="needs bubblewrap to hide TeX")
def test_demo_without_tex_ends_reviewed_with_one_notice(tmp_path):
    lab = tmp_path / "lab"
    argv = [BWRAP, "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *_hide_tex(),
            sys.executable, "-c", "import shutil, sys; from aisci.engine.cli import main; "
            "assert not shutil.which('pdflatex'); sys.exit(main(sys.argv[1:]))",
            "run", "--demo", "--lab", str(lab),
            "--set", "ideation.num_ideas=1", "--set", "experiment.max_runs=1"]
    # grokking at a small work size (2 updates, 1 validation batch per dataset): the check
    # is about the paper, not the numbers
    env = {**os.environ, "AISCI_WORK_STEPS": "2", "AISCI_WORK_EVAL": "1"}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                       env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert out.count(TEX_MISSING_NOTICE) == 1, out[-3000:]
    with LabStore(lab, read_only=True) as store:
        reviewed = []
        for idea in store.list_ideas():
            stages = store.stages(idea.id)
            if stages.get("review", {}).get("state") != "done":
                continue
            reviewed.append(idea)
            write = stages["write"]
            assert write["state"] == "done"
            assert write["detail"]["notice"] == TEX_MISSING_NOTICE
            d = lab / "ideas" / f"{idea.id}-{idea.name}"
            review = json.loads((d / "review.json").read_text())
            assert review["source"] == "latex" and review["pdf"] == "latex/template.tex"
            assert isinstance(review["review"]["Overall"], int)
            assert not list((d / "latex").glob("draft-*.pdf"))
    assert reviewed, out[-3000:]
