"""``aisci template check``: validate a template folder against the template contract.

Checks, in order: the files are present; template.toml (if any) is well-formed;
prompt.json has "system" and "task_description"; seed_ideas.json is a list of ideas in
the idea schema; experiment.py compiles; a smoke run (``AISCI_SMOKE=1``) writes a
well-formed ``run_0/final_info.json``; plot.py turns it into at least one PNG; the
template's check command (if any) passes on the pristine copy; latex/template.tex
compiles when TeX is installed. Each problem is one line plus a fix hint.

Templates written for the reference system are accepted: no template.toml, the
bibliography inside the .tex via filecontents, ``means`` given as a bare number.
Everything runs in a temporary copy; the template folder is never modified.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aisci.engine.lab.idea_schema import IdeaError, validate_idea
from aisci.engine.lab.secret_names import is_secret_name
from aisci.engine.lab.templates import (
    REQUIRED_FILES,
    TemplateError,
    TemplateInfo,
    check_argv,
    load_template_info,
)

SMOKE_TIMEOUT_S = 300.0
PLOT_TIMEOUT_S = 120.0
LATEX_TIMEOUT_S = 180.0
KILL_GRACE_S = 3.0
TAIL_LINES = 3
_COPY_IGNORE = shutil.ignore_patterns("run_*", "logs", "__pycache__", "*.pyc", ".git")


@dataclass(frozen=True)
class TemplateProblem:
    check: str
    """Which check found it: files, toml, prompt, seed_ideas, syntax, smoke, final_info,
    plot, check_command, latex."""
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message} (fix: {self.hint})"


@dataclass
class _Proc:
    returncode: int | None
    timed_out: bool
    log: str

    def tail(self) -> str:
        lines = [ln for ln in self.log.splitlines() if ln.strip()]
        return " | ".join(ln.strip() for ln in lines[-TAIL_LINES:])[-400:]


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env.update({"MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_bounded(argv: list[str], cwd: Path, timeout_s: float, env: dict[str, str] | None = None,
                log_path: Path | None = None) -> _Proc:
    """Run argv in its own session (process group) with a hard time limit; on timeout
    the whole group gets SIGTERM, then SIGKILL after a short grace period."""
    log_path = log_path or cwd / "logs" / "check.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=_child_env(env or {}), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
    text = log_path.read_bytes()[-20000:].decode("utf-8", "replace")
    return _Proc(None if timed_out else proc.returncode, timed_out, text)


# -- static checks --------------------------------------------------------------------------

def _check_files(path: Path) -> list[TemplateProblem]:
    out = []
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            out.append(TemplateProblem("files", f"{name} is missing",
                                       f"add {name} (see templates/README.md for the contract)"))
    return out


def _check_prompt(path: Path) -> list[TemplateProblem]:
    f = path / "prompt.json"
    if not f.is_file():
        return []
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [TemplateProblem("prompt", f"prompt.json is not valid JSON ({exc})",
                                'write {"system": "...", "task_description": "..."}')]
    if not isinstance(data, dict):
        return [TemplateProblem("prompt", "prompt.json must be a JSON object",
                                'write {"system": "...", "task_description": "..."}')]
    out = []
    for key in ("system", "task_description"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            what = "is missing" if key not in data else "must be a non-empty string"
            out.append(TemplateProblem("prompt", f'prompt.json: key "{key}" {what}',
                                       f'add "{key}": "<text>" to prompt.json'))
    return out


def _check_seed_ideas(path: Path) -> list[TemplateProblem]:
    f = path / "seed_ideas.json"
    if not f.is_file():
        return []
    hint = ("a JSON list of ideas with Name (snake_case), Title, Experiment, "
            "Interestingness, Feasibility, Novelty (1-10)")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [TemplateProblem("seed_ideas", f"seed_ideas.json is not valid JSON ({exc})", hint)]
    if not isinstance(data, list) or not data:
        return [TemplateProblem("seed_ideas", "seed_ideas.json must be a non-empty JSON list",
                                hint)]
    out = []
    for i, idea in enumerate(data):
        try:
            validate_idea(idea, f"seed_ideas.json[{i}]")
        except IdeaError as exc:
            out.append(TemplateProblem("seed_ideas", str(exc), hint))
    return out


def _check_syntax(path: Path) -> list[TemplateProblem]:
    out = []
    for name in ("experiment.py", "plot.py"):
        f = path / name
        if not f.is_file():
            continue
        try:
            compile(f.read_bytes(), str(f), "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            where = f" (line {line})" if line else ""
            msg = getattr(exc, "msg", None) or str(exc)
            out.append(TemplateProblem("syntax", f"{name} does not compile: {msg}{where}",
                                       f"fix the syntax error in {name}"))
    return out


# -- final_info ----------------------------------------------------------------------------

def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def final_info_problems(run_dir: Path) -> list[TemplateProblem]:
    """Problems of ``run_dir/final_info.json`` against the contract: an object keyed by
    dataset, each value with "means" (metric -> number, or a bare number as some reference
    templates write) and optionally "stderrs" (metric -> number)."""
    f = run_dir / "final_info.json"
    hint_shape = ('write {"<dataset>": {"means": {"<metric>": <number>}, '
                  '"stderrs": {"<metric>": <number>}}}')
    if not f.is_file():
        return [TemplateProblem(
            "final_info", f"the smoke run exited 0 but wrote no {run_dir.name}/final_info.json",
            "experiment.py must write os.path.join(args.out_dir, 'final_info.json')")]
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [TemplateProblem("final_info", f"final_info.json is not valid JSON ({exc})",
                                "write it with json.dump")]
    if not isinstance(data, dict) or not data:
        return [TemplateProblem("final_info", "final_info.json must be a non-empty object keyed "
                                f"by dataset, got {type(data).__name__}", hint_shape)]
    out = []
    for ds, value in data.items():
        if not isinstance(value, dict) or "means" not in value:
            out.append(TemplateProblem("final_info", f'final_info.json["{ds}"] has no "means"',
                                       hint_shape))
            continue
        means = value["means"]
        if _is_number(means):
            continue  # reference-style bare number
        if not isinstance(means, dict) or not means:
            out.append(TemplateProblem(
                "final_info", f'final_info.json["{ds}"]["means"] must be an object of metric -> '
                f"number, got {json.dumps(means)[:60]}", hint_shape))
            continue
        for metric, num in means.items():
            if not _is_number(num):
                out.append(TemplateProblem(
                    "final_info", f'final_info.json["{ds}"]["means"]["{metric}"] is '
                    f"{json.dumps(num)[:60]}, expected a finite number", hint_shape))
        stderrs = value.get("stderrs")
        if stderrs is not None and not (isinstance(stderrs, dict) and
                                        all(_is_number(v) for v in stderrs.values())):
            out.append(TemplateProblem(
                "final_info", f'final_info.json["{ds}"]["stderrs"] must map metrics to numbers',
                "stderr = std / sqrt(n_seeds) per metric"))
    return out


# -- dynamic checks ------------------------------------------------------------------------

def metric_name_problems(run_dir: Path, info: TemplateInfo) -> list[TemplateProblem]:
    """Metrics that template.toml names (directions, units) but final_info.json lacks."""
    try:
        data = json.loads((run_dir / "final_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    reported: set[str] = set()
    for value in data.values() if isinstance(data, dict) else []:
        means = value.get("means") if isinstance(value, dict) else None
        if isinstance(means, dict):
            reported.update(str(k) for k in means)
    named = set(info.lower_is_better) | set(info.higher_is_better) | set(info.metric_units)
    return [TemplateProblem("toml", f"template.toml names metric {m!r} but the smoke run's "
                            f"final_info.json reports only {sorted(reported)}",
                            "name in [metrics] only metrics experiment.py writes under means")
            for m in sorted(named - reported)]


def _smoke_and_plot(work: Path, smoke_env: dict[str, str], timeout_s: float,
                    plot_timeout_s: float,
                    info: TemplateInfo | None = None) -> list[TemplateProblem]:
    (work / "run_0").mkdir(exist_ok=True)
    res = run_bounded([sys.executable, "experiment.py", "--out_dir=run_0"], work, timeout_s,
                      smoke_env, work / "logs" / "run_0.log")
    if res.timed_out:
        return [TemplateProblem("smoke", f"the smoke run did not finish in {timeout_s:.0f} s",
                                "make AISCI_SMOKE=1 shrink steps and data to seconds")]
    if res.returncode != 0:
        return [TemplateProblem("smoke", f"the smoke run exited with code {res.returncode}: "
                                f"{res.tail()}", "run `AISCI_SMOKE=1 python experiment.py "
                                "--out_dir=run_0` in a copy and fix the error")]
    problems = final_info_problems(work / "run_0")
    if problems:
        return problems
    if info is not None:
        problems = metric_name_problems(work / "run_0", info)
    before = {p.name for p in work.glob("*.png")}
    res = run_bounded([sys.executable, "plot.py"], work, plot_timeout_s, smoke_env,
                      work / "logs" / "plot.log")
    if res.timed_out:
        return [TemplateProblem("plot", f"plot.py did not finish in {plot_timeout_s:.0f} s",
                                "plot.py should only read run_* folders and save figures")]
    if res.returncode != 0:
        return [TemplateProblem("plot", f"plot.py crashed (exit code {res.returncode}): "
                                f"{res.tail()}", "run `python plot.py` next to run_0/ and fix it")]
    made = {p.name for p in work.rglob("*.png") if "latex" not in p.parts} - before
    if not made:
        return [TemplateProblem("plot", "plot.py ran but wrote no PNG figure",
                                "save figures with plt.savefig('<name>.png') in the current "
                                "directory")]
    return problems


def _check_command(work: Path, template: Path, cmd: list[str], env: dict[str, str]
                   ) -> list[TemplateProblem]:
    res = run_bounded(check_argv(cmd, template, work), work, SMOKE_TIMEOUT_S, env, work / "logs" / "check_command.log")
    if res.returncode == 0:
        return []
    return [TemplateProblem("check_command", f"the template's check command failed on the "
                            f"unmodified template ({'timeout' if res.timed_out else 'exit code ' + str(res.returncode)}): "
                            f"{res.tail()}", f"run `{' '.join(cmd)}` and fix the template")]


def _latex_error(log: str) -> str:
    lines = log.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("! "):
            where = next((x for x in lines[i + 1:i + 4] if x.startswith("l.")), "")
            return f"{ln[2:].strip()} {where.strip()}".strip()
    return " | ".join(x.strip() for x in lines[-TAIL_LINES:] if x.strip())[-300:]


def _check_latex(work: Path, timeout_s: float) -> list[TemplateProblem]:
    tex = work / "latex" / "template.tex"
    if not tex.is_file():
        return []
    if not shutil.which("pdflatex"):
        return []
    latex_dir = work / "latex"
    for png in work.glob("*.png"):  # figures plot.py made, as a written paper has them
        shutil.copy2(png, latex_dir / png.name)
    if shutil.which("latexmk"):
        steps = [["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
                  "template.tex"]]
    else:
        pdf = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "template.tex"]
        steps = [pdf, ["bibtex", "template"], pdf, pdf]
    for argv in steps:
        res = run_bounded(argv, latex_dir, timeout_s, None, work / "logs" / "latex.log")
        if res.timed_out:
            return [TemplateProblem("latex", f"LaTeX did not finish in {timeout_s:.0f} s",
                                    "compile latex/template.tex by hand and look for a loop")]
        if res.returncode != 0 and argv[0] != "bibtex":
            tex_log = latex_dir / "template.log"
            detail = _latex_error(tex_log.read_text("utf-8", "replace") if tex_log.is_file()
                                  else res.log)
            return [TemplateProblem("latex", f"latex/template.tex does not compile: {detail}",
                                    "use only packages TeX Live ships and fix the line shown")]
    if not (latex_dir / "template.pdf").is_file():
        return [TemplateProblem("latex", "compiling latex/template.tex produced no PDF",
                                "check latex/template.tex by hand")]
    return []


def check_template(path: Path, run_smoke: bool = True, *, compile_latex: bool = True,
                   timeout_s: float = SMOKE_TIMEOUT_S, plot_timeout_s: float = PLOT_TIMEOUT_S,
                   keep_dir: Path | None = None) -> list[TemplateProblem]:
    """Problems of the template folder ``path``; an empty list means it passes.

    ``keep_dir``: run the smoke copy there (and keep it) instead of a temporary folder.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        return [TemplateProblem("files", f"{path} is not a directory",
                                "pass the template folder (the one holding experiment.py)")]
    problems = _check_files(path)
    smoke_env: dict[str, str] = {"AISCI_SMOKE": "1"}
    check_cmd = None
    info: TemplateInfo | None = None
    try:
        info = load_template_info(path)
        smoke_env = info.smoke_env
        check_cmd = info.check_command
    except TemplateError as exc:
        problems.append(TemplateProblem("toml", str(exc), "fix template.toml or delete it"))
    problems += _check_prompt(path) + _check_seed_ideas(path) + _check_syntax(path)
    if not run_smoke and not compile_latex:
        return problems
    if any(p.check == "syntax" for p in problems) or not (path / "experiment.py").is_file():
        run_smoke = False
    with tempfile.TemporaryDirectory(prefix="aisci-template-check-") as tmp:
        work = Path(keep_dir) if keep_dir else Path(tmp) / path.name
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(path, work, ignore=_COPY_IGNORE, symlinks=True)
        if run_smoke:
            problems += _smoke_and_plot(work, smoke_env, timeout_s, plot_timeout_s, info)
            if check_cmd:
                problems += _check_command(work, path, check_cmd, smoke_env)
        if compile_latex:
            problems += _check_latex(work, LATEX_TIMEOUT_S)
    return problems
