"""`aisci review PAPER.pdf` on a PDF compiled with pdflatex in the test."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from aisci.engine.cli import main

pytestmark = pytest.mark.needs_tex

TEX = r"""\documentclass{article}
\begin{document}
\title{Warm Restarts Delay Grokking}\author{aisci}\maketitle
\begin{abstract}We study learning-rate warm restarts on modular arithmetic.\end{abstract}
\section{Results}
The validation loss rises from 1.00 to 1.12 with warm restarts.
\end{document}
"""

REVIEW = {"Summary": "Studies warm restarts.", "Strengths": ["clear"], "Weaknesses": ["tiny"],
          "Originality": 2, "Quality": 2, "Clarity": 3, "Significance": 1,
          "Questions": ["why?"], "Limitations": ["one task"], "Ethical Concerns": False,
          "Soundness": 2, "Presentation": 3, "Contribution": 2, "Overall": 3,
          "Confidence": 4, "Decision": "Reject"}


@pytest.fixture(scope="module")
def pdf(tmp_path_factory) -> Path:
    if not shutil.which("pdflatex"):
        pytest.skip("pdflatex not installed")
    d = tmp_path_factory.mktemp("paper")
    (d / "paper.tex").write_text(TEX)
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    return d / "paper.pdf"


def cassette(tmp_path: Path, entries: list[dict]) -> str:
    p = tmp_path / "review-cassette.json"
    p.write_text(json.dumps({"responses": entries}))
    return f"scripted:{p}"


def test_review_cli_prints_scorecard_and_writes_16_fields(pdf, tmp_path, capsys):
    model = cassette(tmp_path, [
        {"match": "review/paper/reviewer-*", "text": "THOUGHT: weak. I am done\n```json\n"
         + json.dumps(REVIEW) + "\n```"},
        {"match": "review/paper/meta", "text": "```json\n" + json.dumps(REVIEW) + "\n```"},
    ])
    out = tmp_path / "r.json"
    code = main(["review", str(pdf), "--model", model, "--ensemble", "2", "--out", str(out),
                 "--lab", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Decision: Reject" in printed and "Overall:" in printed
    data = json.loads(out.read_text())
    assert len(data["review"]) == 16 and data["review"]["Ethical Concerns"] is False
    assert data["ensemble"] == 2 and data["meta_review"]["Overall"] == 3
    assert not (tmp_path / "aisci.db").exists()  # reviewing a PDF never creates a lab


def test_review_cli_malformed_twice_is_one_clear_line(pdf, tmp_path, capsys):
    model = cassette(tmp_path, [{"match": "review/paper/*", "text": "no json here"}])
    code = main(["review", str(pdf), "--model", model, "--ensemble", "1", "--no-meta",
                 "--lab", str(tmp_path), "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0 and "gave no valid ReviewForm JSON after 1 repair" in err


def test_review_cli_rejects_a_non_pdf(tmp_path, capsys):
    bad = tmp_path / "notes.pdf"
    bad.write_text("just text")
    code = main(["review", str(bad), "--model", "scripted:none", "--lab", str(tmp_path)])
    assert code == 2 and "notes.pdf" in capsys.readouterr().err
