"""Scoring the integrity check on the planted-flaw corpus (tests/support/data/
integrity_corpus): recall per flaw class and the share of findings that are false."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aisci.engine.paper.findings import Finding
from aisci.engine.paper.integrity_checks import scan

CORPUS = Path(__file__).parent / "data" / "integrity_corpus"
TEX = "latex/template.tex"

# Which finding kinds catch each planted flaw class.
ACCEPTED = {
    "invented_number": {"unmatched_number", "untied_number"},
    "wrong_run": {"intermediate_result", "mixed_run_row", "unmatched_number"},
    "mixed_row": {"mixed_run_row"},
    "direction": {"wrong_direction"},
    "environment": {"hardware_claim", "software_claim", "unverifiable_hardware_claim",
                    "unverifiable_software_claim"},
    "missing_figure": {"missing_figure"},
    "hidden_text": {"hidden_text"},
    "overclaim": {"overclaim"},
    "jargon": {"process_jargon"},
    "analysis": {"unsupported_analysis"},
}


@dataclass
class Score:
    flaws: dict[str, int] = field(default_factory=dict)
    caught: dict[str, int] = field(default_factory=dict)
    findings: int = 0
    false: list[tuple[str, Finding]] = field(default_factory=list)
    missed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def recall(self) -> float:
        total = sum(self.flaws.values())
        return sum(self.caught.values()) / total if total else 1.0

    @property
    def false_rate(self) -> float:
        return len(self.false) / self.findings if self.findings else 0.0


def papers(held_out: bool | None = None) -> list[Path]:
    out = []
    for d in sorted(p for p in CORPUS.iterdir() if (p / "manifest.json").is_file()):
        manifest = json.loads((d / "manifest.json").read_text())
        if held_out is None or bool(manifest.get("held_out")) == held_out:
            out.append(d)
    return out


def score(dirs: list[Path]) -> Score:
    s = Score()
    for d in dirs:
        manifest = json.loads((d / "manifest.json").read_text())
        tex = (d / TEX).read_text()
        flaws = []
        for f in manifest["flaws"]:
            line = tex[: tex.index(f["quote"])].count("\n") + 1
            flaws.append((line, f["class"], f["quote"]))
            s.flaws[f["class"]] = s.flaws.get(f["class"], 0) + 1
        findings = scan(d, TEX).findings
        s.findings += len(findings)
        for line, cls, quote in flaws:
            if any(f.line() == line and f.kind in ACCEPTED[cls] for f in findings):
                s.caught[cls] = s.caught.get(cls, 0) + 1
            else:
                s.missed.append((d.name, cls, quote))
        flawed_lines = {line for line, _, _ in flaws}
        for f in findings:
            if f.line() not in flawed_lines:
                s.false.append((d.name, f))
    return s
