"""``check_template`` / ``aisci template check`` on broken copies of bundled templates and
on a template written for the reference system; ``aisci baseline`` end to end."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from aisci.engine.cli import main
from aisci.engine.lab.template_check import (
    check_template,
    final_info_problems,
    metric_name_problems,
)
from aisci.engine.lab.templates import find_template
from aisci.engine.resources import templates_dir

HAS_TEX = shutil.which("pdflatex") is not None
def copy_of(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(templates_dir() / name, dst,
                    ignore=shutil.ignore_patterns("run_*", "__pycache__", "shakespeare_char"))
    return dst


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def messages(problems) -> list[str]:
    return [str(p) for p in problems]


# -- static problems (no smoke run) ---------------------------------------------------------

def test_missing_prompt_key_is_reported_with_a_fix(tmp_path):
    tpl = copy_of(tmp_path, "grokking")
    data = json.loads((tpl / "prompt.json").read_text())
    del data["task_description"]
    (tpl / "prompt.json").write_text(json.dumps(data))
    problems = check_template(tpl, run_smoke=False, compile_latex=False)
    assert messages(problems) == [
        'prompt: prompt.json: key "task_description" is missing '
        '(fix: add "task_description": "<text>" to prompt.json)']


def test_missing_files_bad_seed_idea_and_syntax_error(tmp_path):
    tpl = copy_of(tmp_path, "diffusion_2d")
    (tpl / "plot.py").unlink()
    ideas = json.loads((tpl / "seed_ideas.json").read_text())
    ideas[1]["Name"] = "Not Snake Case"
    ideas[0]["Novelty"] = 11
    (tpl / "seed_ideas.json").write_text(json.dumps(ideas))
    (tpl / "experiment.py").write_text("def broken(:\n    pass\n")
    (tpl / "template.toml").write_text('datasets = "circle"\n')
    out = messages(check_template(tpl, compile_latex=False))
    assert any(m.startswith("files: plot.py is missing") for m in out)
    assert any("seed_ideas.json[0]: Novelty" in m for m in out)
    assert any("seed_ideas.json[1]: Name" in m and "snake_case" in m for m in out)
    assert any(m.startswith("syntax: experiment.py does not compile") and "line 1" in m
               for m in out)
    assert any("template.toml: datasets: expected a list of strings" in m for m in out)
    assert not any(m.startswith("smoke") for m in out)  # no smoke run of code that can't compile


def test_final_info_schema_problems_name_the_exact_key(tmp_path):
    run = tmp_path / "run_0"
    run.mkdir()
    (run / "final_info.json").write_text(json.dumps({
        "a": {"means": {"loss": "low", "acc": 0.5}},
        "b": {"stderrs": {}},
        "c": {"means": 0.25},  # reference-style bare number: accepted
        "d": {"means": {"x": 1.0}, "stderrs": {"x": None}},
    }))
    out = messages(final_info_problems(run))
    assert len(out) == 3, out
    assert out[0].startswith('final_info: final_info.json["a"]["means"]["loss"] is "low", '
                             "expected a finite number")
    assert out[1].startswith('final_info: final_info.json["b"] has no "means"')
    assert 'final_info.json["d"]["stderrs"]' in out[2]
    (run / "final_info.json").write_text("[1, 2]")
    assert "must be a non-empty object keyed by dataset" in messages(final_info_problems(run))[0]


# -- dynamic problems (real smoke runs of broken copies) ---------------------------------------

# The checks of a smoke run's results do not depend on the template: they run on the toy
# reference-style template below (seconds); every shipped template's own smoke run is
# tested in test_templates.

def test_missing_final_info_is_reported(tmp_path):
    tpl = write_reference_template(tmp_path / "toy")
    edit(tpl / "experiment.py", REFERENCE_WRITE_FINAL, "pass  # forgot final_info.json\n")
    out = messages(check_template(tpl, compile_latex=False))
    assert out == ["final_info: the smoke run exited 0 but wrote no run_0/final_info.json "
                   "(fix: experiment.py must write os.path.join(args.out_dir, "
                   "'final_info.json'))"]


def test_wrong_final_info_schema_is_reported(tmp_path):
    tpl = write_reference_template(tmp_path / "toy")
    edit(tpl / "experiment.py", REFERENCE_WRITE_FINAL, textwrap.dedent("""\
        with open(os.path.join(args.out_dir, "final_info.json"), "w") as f:
            json.dump({"toy": {"mean": losses[-1]}}, f)
        """))
    out = messages(check_template(tpl, compile_latex=False))
    assert len(out) == 1 and out[0].startswith('final_info: final_info.json["toy"] has no "means"')


def test_plot_crash_and_smoke_crash_are_reported(tmp_path):
    tpl = write_reference_template(tmp_path / "toy")
    edit(tpl / "plot.py", 'plt.legend()\n', 'plt.legend()\n1 / 0\n')
    out = messages(check_template(tpl, compile_latex=False))
    assert len(out) == 1 and out[0].startswith("plot: plot.py crashed (exit code 1): ")
    assert "ZeroDivisionError" in out[0] and "fix: run `python plot.py`" in out[0]

    edit(tpl / "experiment.py", "args = parser.parse_args()\n",
         "args = parser.parse_args()\nraise RuntimeError('boom')\n")
    out = messages(check_template(tpl, compile_latex=False))
    assert len(out) == 1 and out[0].startswith("smoke: the smoke run exited with code 1: ")
    assert "RuntimeError: boom" in out[0]


@pytest.mark.slow
def test_a_hanging_smoke_run_is_killed_at_the_limit(tmp_path):
    tpl = copy_of(tmp_path, "grokking")
    (tpl / "experiment.py").write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "time.sleep(600)\n")
    out = messages(check_template(tpl, compile_latex=False, timeout_s=2))
    assert out == ["smoke: the smoke run did not finish in 2 s "
                   "(fix: make AISCI_SMOKE=1 shrink steps and data to seconds)"]


# -- a template written for the reference system -------------------------------------------------

REFERENCE_WRITE_FINAL = """\
with open(os.path.join(args.out_dir, "final_info.json"), "w") as f:
    json.dump({"toy": {"means": losses[-1]}}, f)
"""
REFERENCE_EXPERIMENT = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", type=str, default="run_0")
args = parser.parse_args()
os.makedirs(args.out_dir, exist_ok=True)
losses = [1.0 / (1 + i) for i in range(20)]
""" + REFERENCE_WRITE_FINAL + """\
with open(os.path.join(args.out_dir, "losses.json"), "w") as f:
    json.dump(losses, f)
"""

REFERENCE_PLOT = """\
import json, os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
labels = {"run_0": "Baselines"}
for run in labels:
    with open(os.path.join(run, "losses.json")) as f:
        plt.plot(json.load(f), label=labels[run])
plt.legend()
plt.savefig("loss.png")
"""

REFERENCE_TEX = r"""\documentclass{article}
\begin{filecontents}{references.bib}
@article{power2022grokking,
  title={Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets},
  author={Power, Alethea and Burda, Yuri and Edwards, Harri and Babuschkin, Igor and Misra, Vedant},
  journal={arXiv preprint arXiv:2201.02177},
  year={2022}
}
\end{filecontents}
\usepackage{graphicx}
\title{TITLE HERE}
\begin{document}
\maketitle
\section{Introduction}
Grokking \cite{power2022grokking}.
\includegraphics[width=0.3\textwidth]{loss.png}
\bibliographystyle{plain}
\bibliography{references}
\end{document}
"""


def write_reference_template(root: Path) -> Path:
    (root / "latex").mkdir(parents=True)
    (root / "experiment.py").write_text(REFERENCE_EXPERIMENT)
    (root / "plot.py").write_text(REFERENCE_PLOT)
    (root / "prompt.json").write_text(json.dumps({"system": "You are a scientist.",
                                                  "task_description": "A toy template."}))
    (root / "seed_ideas.json").write_text(json.dumps([{
        "Name": "faster_decay", "Title": "Faster loss decay",
        "Experiment": "Change the decay of the toy loss and compare.",
        "Interestingness": 2, "Feasibility": 10, "Novelty": 1}]))
    (root / "latex" / "template.tex").write_text(REFERENCE_TEX)
    return root


def test_reference_style_template_is_accepted(tmp_path):
    tpl = write_reference_template(tmp_path / "toy_reference")
    assert not (tpl / "template.toml").exists()
    problems = check_template(tpl, compile_latex=HAS_TEX, keep_dir=tmp_path / "work")
    assert problems == [], messages(problems)
    assert (tmp_path / "work" / "loss.png").is_file()
    if HAS_TEX:
        assert (tmp_path / "work" / "latex" / "template.pdf").is_file()
    assert not (tpl / "run_0").exists()  # the template folder itself is never touched


@pytest.mark.skipif(not HAS_TEX, reason="needs pdflatex")
def test_latex_error_is_shown_with_its_line(tmp_path):
    tpl = write_reference_template(tmp_path / "toy_reference")
    edit(tpl / "latex" / "template.tex", r"\section{Introduction}", r"\section{Introduction}\badmacro")
    out = messages(check_template(tpl))
    assert len(out) == 1 and out[0].startswith("latex: latex/template.tex does not compile: "
                                               "Undefined control sequence. l.")


# -- the CLI ------------------------------------------------------------------------------------

def test_cli_template_check_prints_one_line_per_problem(tmp_path, capsys):
    tpl = copy_of(tmp_path, "grokking")
    (tpl / "prompt.json").write_text(json.dumps({"system": "x"}))
    code = main(["template", "check", str(tpl), "--no-smoke", "--no-latex"])
    out = capsys.readouterr().out
    assert code == 1
    assert '  problem: prompt: prompt.json: key "task_description" is missing' in out
    assert "template grokking: 1 problem(s)" in out
    assert main(["template", "check", "no_such_template"]) == 2
    tpl_ok = write_reference_template(tmp_path / "ok")
    assert main(["template", "check", str(tpl_ok), "--no-latex"]) == 0
    assert "template ok: ok" in capsys.readouterr().out


def test_metrics_named_in_template_toml_must_be_reported(tmp_path):
    info = find_template("diffusion_2d")
    run = tmp_path / "run_0"
    run.mkdir()
    means = {"training_time": 1.0, "eval_loss": 0.5, "inference_time": 0.1, "kl_divergence": 0.3}
    (run / "final_info.json").write_text(json.dumps({"circle": {"means": means}}))
    assert metric_name_problems(run, info) == []
    del means["kl_divergence"]
    (run / "final_info.json").write_text(json.dumps({"circle": {"means": means}}))
    [problem] = metric_name_problems(run, info)
    assert str(problem).startswith("toml: template.toml names metric 'kl_divergence' but the "
                                   "smoke run's final_info.json reports only")


def test_cli_baseline_runs_run_0_into_the_lab_at_a_chosen_work_size(tmp_path, capsys):
    """``aisci template baseline``: run_0 of a template (here grokking at a tiny work
    size; every template's smoke run is tested in test_templates) is stored in the lab
    under a name that says the work size, copied out with --out, reused next time."""
    lab = tmp_path / "lab"
    lab.mkdir()
    out_dir = tmp_path / "copy"
    code = main(["baseline", "--template", "grokking", "--smoke", "--steps", "2",
                 "--eval", "1", "--lab", str(lab), "--out", str(out_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "work size of grokking: eval=1, steps=2" in out
    stored = lab / "baselines" / "grokking-smoke-steps2-eval1"
    run0 = stored / "run_0"
    results = json.loads((run0 / "all_results.json").read_text())
    assert {r["train"][-1]["step"] for r in results.values()} == {2}
    info = json.loads((run0 / "final_info.json").read_text())
    assert set(info) == set(find_template("grokking").datasets)
    env = json.loads((run0 / "run_env.json").read_text())
    assert env["torch"] and env["python"]
    assert (stored / "logs" / "run_0.log").is_file()
    assert (out_dir / "run_0" / "final_info.json").is_file()
    assert not (lab / "baselines" / "grokking-smoke").exists()
    # a second call reuses the stored baseline
    assert main(["baseline", "--template", "grokking", "--smoke", "--steps", "2",
                 "--eval", "1", "--lab", str(lab)]) == 0
    assert "already exists" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["baseline", "--template", "grokking", "--steps", "0", "--lab", str(lab)])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err
