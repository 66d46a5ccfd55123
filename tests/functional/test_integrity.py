"""Results-integrity checks: numbers, directions, hardware/software, jargon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.paper.integrity_checks import extract_numbers
from aisci.engine.paper.texscan import prose_text
from aisci.engine.run.executor import Executor
from aisci.engine.stages import causality
from aisci.engine.stages.integrity import _causality_finding, run_causality_check, scan_paper

ENV = {"python": "3.11.9", "torch": "2.13.0+cpu", "cuda": None, "cudnn": None, "gpus": [],
       "driver": None, "cpu_model": "AMD EPYC 7B13", "cpu_count": 2, "platform": "Linux",
       "hostname_sha256": "ab", "numpy": "2.1.0", "seeds": [0, 1, 2]}


def make_idea(tmp_path: Path) -> Path:
    idea = tmp_path / "ideas" / "1-warm_restarts"
    runs = {
        0: {"final_train_loss": 0.0123, "final_val_loss": 1.0, "final_val_acc": 0.412,
            "step_val_acc_99": 7500},
        1: {"final_train_loss": 0.0101, "final_val_loss": 1.12, "final_val_acc": 0.389,
            "step_val_acc_99": 4210},
    }
    for i, means in runs.items():
        d = idea / f"run_{i}"
        d.mkdir(parents=True)
        info = {"x_plus_y": {"means": means,
                             "stderrs": {k: 0.01 for k in means},
                             "final_info_dict": {k: [v, v, v] for k, v in means.items()}}}
        (d / "final_info.json").write_text(json.dumps(info))
        (d / "run_env.json").write_text(json.dumps(ENV))
    (idea / "experiment.py").write_text("lr = 1e-3\nnum_steps = 7500\nthreshold = 0.99\n")
    (idea / "latex").mkdir()
    (idea / "val_loss_x_plus_y.png").write_bytes(b"\x89PNG")
    return idea


def paper(idea: Path, body: str) -> Path:
    tex = idea / "latex" / "template.tex"
    tex.write_text("\\documentclass{article}\n\\usepackage{graphicx}\n"
                   "\\begin{document}\n" + body + "\n\\bibliography{references}\n"
                   "\\end{document}\n")
    return tex


FAITHFUL = r"""
\section{Results}
\label{sec:results}
On the modular addition task the baseline reaches a validation loss of 1.00 and a
validation accuracy of 41.2\% (Table~\ref{tab:main}).
With warm restarts, the validation loss increases by 12\% to 1.12, which is worse
than the baseline, while the validation accuracy drops to 38.9\%.
Validation accuracy first exceeds 99\% after 4210 steps instead of 7,500 steps
% a comment with an invented number 123.4 is ignored
with a learning rate of $10^{-3}$ \citep{power2022grokking}.
All experiments ran on a CPU with PyTorch 2.13 in 2024.
\begin{tabular}{lcc}
Method & Val. loss & Val. acc. (\%) \\
Baseline & 1.00 $\pm$ 0.01 & 41.2 \\
Warm restarts & 1.12 $\pm$ 0.01 & 38.9 \\
\end{tabular}
\begin{figure}[t]
\includegraphics[width=0.45\textwidth]{../val_loss_x_plus_y.png}
\caption{Validation loss over 3 seeds.}
\end{figure}
"""

UNFAITHFUL = r"""
\section{Results}
Our method achieves a validation accuracy of 97.3\% on modular addition.
This is a 12\% improvement in validation loss over the baseline.
All models were trained on a V100 GPU.
Run 2 shows that warm restarts speed up grokking.
"""


def test_faithful_text_has_no_findings(tmp_path):
    idea = make_idea(tmp_path)
    report = scan_paper(paper(idea, FAITHFUL), idea)
    assert report.findings == [], [f.message for f in report.findings]
    assert report.numbers_checked >= 6


def test_unfaithful_text_is_flagged_on_all_four(tmp_path):
    idea = make_idea(tmp_path)
    report = scan_paper(paper(idea, UNFAITHFUL), idea)
    kinds = {f.kind: f for f in report.findings}
    assert set(kinds) == {"unmatched_number", "wrong_direction", "hardware_claim",
                          "process_jargon"}, [(f.kind, f.message) for f in report.findings]
    assert "97.3" in kinds["unmatched_number"].message
    assert kinds["unmatched_number"].location == "template.tex:6"
    assert "went up" in kinds["wrong_direction"].message
    assert "V100" in kinds["hardware_claim"].message
    assert "Run 2" in kinds["process_jargon"].message
    assert len(report.findings) == 4


def test_software_and_generic_gpu_claims(tmp_path):
    idea = make_idea(tmp_path)
    body = ("We used PyTorch 2.1 with CUDA 12.1 on a single GPU. "
            "The code ran on an Intel Xeon.")
    kinds = sorted(f.kind for f in scan_paper(paper(idea, body), idea).findings)
    assert kinds == ["hardware_claim", "hardware_claim", "software_claim", "software_claim"]


def test_number_extraction_skips_labels_sizes_and_counts():
    tex = prose_text("p.tex", "\\begin{document}\nWe use 3 seeds, GPT-2, "
                     "\\cite{a2020} and width=0.5\\textwidth, a 1.5$\\times 10^{-4}$ rate, "
                     "12.5\\% and 7.5k steps in Figure~12 and 2023.\n\\end{document}")
    values = sorted(round(c.value, 8) for c in extract_numbers(tex))
    assert values == [0.00015, 12.5, 7500.0]


def test_jargon_variants(tmp_path):
    idea = make_idea(tmp_path)
    body = "As seen in run\\_3 and Run~1, and in \\texttt{run\\_4}."
    found = [f for f in scan_paper(paper(idea, body), idea).findings
             if f.kind == "process_jargon"]
    assert len(found) == 3


CHECKER = ("import json, sys\nprint(json.dumps({'causal': False, 'leak': 0.4}))\n"
           "sys.exit(1)\n")


def _causality_ctx(tmp_path: Path, idea: Path, with_checker: bool):
    settings = Settings()
    settings.sandbox.mode = "none"
    store = LabStore(tmp_path / "lab")
    assert store.add_idea("warm_restarts", "tiny", {"Name": "warm_restarts"}) == 1
    template = None
    if with_checker:
        tpl = tmp_path / "tpl"
        tpl.mkdir()
        (tpl / "check.py").write_text(CHECKER)
        template = SimpleNamespace(check_command=[sys.executable, "check.py"], path=tpl)
    ctx = SimpleNamespace(idea_dir=lambda _id: idea, store=store,
                          executor=Executor(settings, EventBus(), store))
    return ctx, template


async def test_causality_verdict_recorded_by_the_experiment_stage_is_reused(tmp_path):
    """The verdict the experiment stage recorded holds while experiment.py is the code it
    judged; an edited experiment.py is judged again (here: no checker, so no verdict)."""
    idea = make_idea(tmp_path)
    (idea / "experiment.py").write_text("print('model')\n")
    ctx, _ = _causality_ctx(tmp_path, idea, with_checker=False)
    causality.record(ctx.store, 1, causal=False, verdict={"causal": False, "leak": 0.4},
                     source="logs/check_2.log", code=causality.code_digest(idea))
    result = await run_causality_check(ctx, 1, None)
    assert result["causal"] is False and result["source"] == "logs/check_2.log"
    assert json.loads((idea / "causality.json").read_text())["verdict"]["leak"] == 0.4
    [finding] = _causality_finding(result)
    assert finding.kind == "causality" and "future tokens" in finding.message
    (idea / "experiment.py").write_text("print('another model')\n")
    assert await run_causality_check(ctx, 1, None) is None


async def test_files_a_run_can_write_never_become_the_verdict(tmp_path):
    """A run can write anything in its idea folder: a causality.json saying "causal", a
    check log ending in {"causal": true}. The verdict comes from the checker itself."""
    idea = make_idea(tmp_path)
    (idea / "experiment.py").write_text("print('model')\n")
    (idea / "causality.json").write_text(json.dumps({"causal": True, "source": "forged"}))
    (idea / "logs").mkdir()
    for name in ("check_99.log", "check_integrity.log"):  # the last JSON line of each
        (idea / "logs" / name).write_text('12:00:00.000 out {"causal": true}\n')
    ctx, template = _causality_ctx(tmp_path, idea, with_checker=True)
    result = await run_causality_check(ctx, 1, template)
    assert result["causal"] is False and result["verdict"]["leak"] == 0.4
    assert result["source"] == "logs/check_integrity.log"
    # a checker that prints nothing but fails: its exit code decides, not a planted line
    (template.path / "check.py").write_text("import sys\nsys.exit(1)\n")
    (idea / "experiment.py").write_text("print('edited')\n")
    result = await run_causality_check(ctx, 1, template)
    assert result["causal"] is False and "causal" not in result["verdict"]


def _aisci(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aisci.engine.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_aisci_check_on_a_results_folder(tmp_path):
    idea = make_idea(tmp_path)
    paper(idea, UNFAITHFUL)
    res = _aisci("check", str(idea))
    assert res.returncode == 1, res.stderr
    lines = res.stdout.splitlines()
    assert any(line.startswith("template.tex:6  unmatched_number  97.3") and "  ->  " in line
               for line in lines), res.stdout
    data = json.loads(_aisci("check", str(idea), "--json").stdout)
    assert {f["kind"] for f in data["findings"]} >= {"unmatched_number", "hardware_claim"}
    paper(idea, FAITHFUL)
    clean = _aisci("check", str(idea), "--tex", "latex/template.tex")
    assert clean.returncode == 0, clean.stdout


def test_aisci_check_bad_input_is_one_line_exit_2(tmp_path):
    res = _aisci("check", str(tmp_path / "missing"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    (tmp_path / "latex").mkdir()
    (tmp_path / "latex" / "template.tex").write_text("\\begin{document}x\\end{document}")
    res = _aisci("check", str(tmp_path))
    assert res.returncode == 2 and "run_*/final_info.json" in res.stderr, res.stderr


def test_aisci_check_reports_placeholders_and_settings_the_code_contradicts(tmp_path):
    idea = make_idea(tmp_path)
    paper(idea, FAITHFUL + "\nTODO: the sweep. We use a learning rate of $3 \\times 10^{-3}$.\n")
    res = _aisci("check", str(idea))
    assert res.returncode == 1, res.stderr
    kinds = [line.split("  ")[1] for line in res.stdout.splitlines() if "  ->  " in line]
    assert sorted(kinds) == ["placeholder", "unmatched_number"], res.stdout
    assert "sets lr to 0.001" in res.stdout, res.stdout
