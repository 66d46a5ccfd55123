"""The recorded facts of an idea's experiments: every run's final_info.json and
run_env.json, the figures and notes, read from the idea directory.

The writeup puts these facts (and nothing else) in front of the model; the integrity
check traces every number of the paper back to them.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.lab import safe_files

RUN_DIR_RE = re.compile(r"^run_(\d+)$")
MAX_NOTES_CHARS = 12_000
MAX_LOG_TAIL_LINES = 200


@dataclass(frozen=True)
class Fact:
    """One recorded number and where it came from (``run_1/x_plus_y/means/val_loss``)."""

    value: float
    source: str
    run: int | None = None
    dataset: str | None = None
    metric: str | None = None


@dataclass
class RunRecord:
    index: int
    path: Path
    final_info: dict[str, Any] | None
    run_env: dict[str, Any] | None


@dataclass
class RunFacts:
    idea_dir: Path
    runs: list[RunRecord] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)

    @property
    def envs(self) -> list[dict[str, Any]]:
        return [r.run_env for r in self.runs if r.run_env]

    def groups(self) -> dict[tuple[str | None, str], list[Fact]]:
        """Per (dataset, metric) the values of the ``means`` of every run, by run index."""
        out: dict[tuple[str | None, str], list[Fact]] = {}
        for f in self.facts:
            if f.metric and f.run is not None and "/means/" in f.source:
                out.setdefault((f.dataset, f.metric), []).append(f)
        for v in out.values():
            v.sort(key=lambda f: f.run or 0)
        return out

    def dataset_groups(self) -> dict[tuple[int, str], list[Fact]]:
        """Per (run, metric) the ``means`` of every dataset: papers compare tasks too."""
        out: dict[tuple[int, str], list[Fact]] = {}
        for f in self.facts:
            if f.metric and f.run is not None and "/means/" in f.source:
                out.setdefault((f.run, f.metric), []).append(f)
        return out


def _read_json(idea_dir: Path, rel: str) -> Any:
    """JSON of a file in the idea folder, or None (missing, invalid, or refused by
    safe_files: a symlink, a hard link, too large)."""
    try:
        return safe_files.read_json(idea_dir, rel)
    except (OSError, ValueError):
        return None


def run_dirs(idea_dir: Path) -> list[tuple[int, Path]]:
    """The run_<i> folders (real directories, not symlinks) of the idea folder."""
    try:
        entries = safe_files.list_dir(idea_dir)
    except OSError:
        return []
    out = []
    for e in entries:
        m = RUN_DIR_RE.match(e.name)
        if m and e.kind == "dir":
            out.append((int(m.group(1)), Path(idea_dir) / e.name))
    return sorted(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _walk(obj: Any, path: list[str], out: list[tuple[list[str], float]], depth: int = 0) -> None:
    if depth > 8 or len(out) > 50_000:  # bounded: a results file is small by contract
        return
    if _is_number(obj):
        out.append((path, float(obj)))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk(v, [*path, str(k)], out, depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:10_000]):
            _walk(v, [*path, str(i)], out, depth + 1)


_NUM_IN_TEXT = re.compile(r"(?<![A-Za-z_])[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")


def numbers_in_text(text: str) -> list[float]:
    out = []
    for m in _NUM_IN_TEXT.finditer(text):
        try:
            v = float(m.group(0))
        except ValueError:
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def load_run_facts(idea_dir: Path, *, include_logs: bool = True,
                   include_code: bool = True) -> RunFacts:
    idea_dir = Path(idea_dir)
    rf = RunFacts(idea_dir)
    for idx, path in run_dirs(idea_dir):
        info = _read_json(idea_dir, f"{path.name}/final_info.json")
        env = _read_json(idea_dir, f"{path.name}/run_env.json")
        rf.runs.append(RunRecord(idx, path, info if isinstance(info, dict) else None,
                                 env if isinstance(env, dict) else None))
        if isinstance(info, dict):
            flat: list[tuple[list[str], float]] = []
            _walk(info, [], flat)
            for keys, value in flat:
                dataset = keys[0] if len(keys) > 1 else None
                metric = keys[2] if len(keys) > 2 and keys[1] in ("means", "stderrs") else (
                    keys[-1] if len(keys) > 1 and not keys[-1].isdigit() else
                    (keys[-2] if len(keys) > 1 else keys[0]))
                rf.facts.append(Fact(value, f"run_{idx}/" + "/".join(keys), idx, dataset, metric))
        if isinstance(env, dict):
            flat = []
            _walk(env, [], flat)
            rf.facts += [Fact(v, f"run_{idx}/run_env.json/" + "/".join(k), idx) for k, v in flat]
    _add_dataset_means(rf)
    if include_logs:
        try:
            logs = [e.name for e in safe_files.list_dir(idea_dir, "logs")
                    if e.kind == "file" and fnmatch.fnmatchcase(e.name, "run_*.log")]
        except OSError:  # no logs/, or refused (a symlink)
            logs = []
        for name in logs:
            for v in numbers_in_text(_tail(idea_dir, f"logs/{name}", MAX_LOG_TAIL_LINES)):
                rf.facts.append(Fact(v, f"logs/{name}"))
    if include_code:
        # The experiment's configuration (learning rate, width, steps) lives in the code.
        for name in ("experiment.py",):
            try:
                code = safe_files.read_text(idea_dir, name, errors="replace")
            except OSError:  # missing, or refused (safe_files.UnsafeFile)
                continue
            rf.facts += [Fact(v, name) for v in numbers_in_text(code)]
    return rf


def _add_dataset_means(rf: RunFacts) -> None:
    """The mean of a metric over datasets, per run: papers often report averages."""
    per: dict[tuple[int, str], list[float]] = {}
    for f in rf.facts:
        if f.run is not None and f.metric and "/means/" in f.source:
            per.setdefault((f.run, f.metric), []).append(f.value)
    for (run, metric), values in per.items():
        if len(values) > 1:
            rf.facts.append(Fact(sum(values) / len(values), f"run_{run}/mean over datasets/{metric}",
                                 run, "*", metric))


def _tail(idea_dir: Path, rel: str, lines: int) -> str:
    try:
        data = safe_files.read_tail(idea_dir, rel, 256 * 1024).decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def figures(idea_dir: Path) -> list[str]:
    """PNG figures produced by plot.py (top level of the idea directory; regular files)."""
    try:
        entries = safe_files.list_dir(idea_dir)
    except OSError:
        return []
    return sorted(e.name for e in entries if e.kind == "file" and e.name.endswith(".png"))


def notes(idea_dir: Path) -> str:
    try:
        text = safe_files.read_text(idea_dir, "notes.txt", truncate=True, errors="replace")
    except FileNotFoundError:
        return "(no notes.txt)"
    except OSError as exc:  # refused (safe_files.UnsafeFile: a symlink, a hard link, ...)
        return f"(no usable notes.txt: {exc})"
    if len(text) > MAX_NOTES_CHARS:
        text = text[:MAX_NOTES_CHARS] + "\n[... notes truncated]"
    return text


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return json.dumps(v) if not isinstance(v, str) else v


def results_summary(rf: RunFacts, max_chars: int = 12_000) -> str:
    """The final results of every run, as compact text for a prompt."""
    lines: list[str] = []
    for run in rf.runs:
        label = "baseline (run 0)" if run.index == 0 else f"experiment {run.index}"
        if not run.final_info:
            lines.append(f"{label}: no final_info.json")
            continue
        lines.append(f"{label}:")
        for dataset, block in run.final_info.items():
            if not isinstance(block, dict):
                lines.append(f"  {dataset}: {_fmt(block)}")
                continue
            means = block.get("means", {})
            errs = block.get("stderrs", {})
            parts = []
            if isinstance(means, dict):
                for metric, value in means.items():
                    err = errs.get(metric) if isinstance(errs, dict) else None
                    parts.append(f"{metric}={_fmt(value)}" + (f" (stderr {_fmt(err)})"
                                                              if err is not None else ""))
            lines.append(f"  {dataset}: " + (", ".join(parts) or json.dumps(block)[:300]))
    text = "\n".join(lines) or "(no runs)"
    return text if len(text) <= max_chars else text[:max_chars] + "\n[... truncated]"


def environment_summary(rf: RunFacts) -> str:
    """The hardware and software the runs actually used (deduplicated over runs)."""
    seen: list[str] = []
    for env in rf.envs:
        gpus = env.get("gpus") or []
        desc = (f"python {env.get('python')}, torch {env.get('torch')}, "
                f"CUDA {env.get('cuda') or 'none'}, "
                f"GPUs: {', '.join(map(str, gpus)) if gpus else 'none (CPU only)'}, "
                f"CPU: {env.get('cpu_model')} x{env.get('cpu_count')}, "
                f"platform {env.get('platform')}")
        if desc not in seen:
            seen.append(desc)
    return "\n".join(seen) or "(no run_env.json recorded: do not state any hardware or versions)"


RESULTS_TABLE = "results_table.tex"
"""The table of recorded results the write stage puts in ``latex/`` for the paper."""
MAX_TABLE_COLUMNS = 6


def _tex_escape(text: str) -> str:
    return "".join("\\" + c if c in "_%&#$" else c for c in text)


def key_metric(rf: RunFacts, preferred: list[str]) -> str | None:
    """The metric the results table shows: the first of ``preferred`` (the template's
    higher/lower-is-better lists) that the runs recorded, else the first recorded one."""
    seen: list[str] = []
    for run in rf.runs:
        for block in (run.final_info or {}).values():
            means = block.get("means") if isinstance(block, dict) else None
            if isinstance(means, dict):
                seen += [m for m in means if m not in seen]
    # A held-out measure (validation, test, eval) is the result a reader looks for first.
    held_out = [m for m in preferred if any(w in m.lower() for w in ("val", "test", "eval"))]
    for m in [*held_out, *preferred]:
        if m in seen:
            return m
    return seen[0] if seen else None


def results_table_tex(rf: RunFacts, preferred: list[str]) -> str:
    """A LaTeX table (label ``tab:results``) of the key metric of every finished run per
    dataset, from the runs' final_info.json, with the seeds' standard error when there is
    one; "" when no run recorded a number. Numbers are the recorded ones (4 significant
    digits), so the table is true by construction."""
    metric = key_metric(rf, preferred)
    runs = [r for r in rf.runs if r.final_info]
    if metric is None or not runs:
        return ""
    datasets: list[str] = []
    for r in runs:
        datasets += [d for d, b in (r.final_info or {}).items()
                     if isinstance(b, dict) and d not in datasets]
    datasets = datasets[:MAX_TABLE_COLUMNS]
    rows = []
    any_err = False
    for r in runs:
        label = "baseline (run 0)" if r.index == 0 else f"run {r.index}"
        cells = [label]
        for d in datasets:
            block = (r.final_info or {}).get(d)
            means = block.get("means", {}) if isinstance(block, dict) else {}
            errs = block.get("stderrs", {}) if isinstance(block, dict) else {}
            v = means.get(metric) if isinstance(means, dict) else None
            e = errs.get(metric) if isinstance(errs, dict) else None
            if isinstance(v, int | float):
                cell = f"{v:.4g}"
                if isinstance(e, int | float) and e > 0:
                    cell += f" $\\pm$ {e:.2g}"
                    any_err = True
            else:
                cell = "--"
            cells.append(cell)
        rows.append(" & ".join(cells) + r" \\")
    head = " & ".join(["Run", *(_tex_escape(d) for d in datasets)]) + r" \\"
    return "\n".join([
        "% generated by aisci from the runs' final_info.json; do not edit by hand",
        r"\begin{table}[t]", r"  \centering",
        f"  \\caption{{{_tex_escape(metric)} of every run per dataset, as each run recorded "
        "it" + ("; $\\pm$ the standard error over seeds.}" if any_err
                else " (no spread over seeds was recorded).}"),
        r"  \label{tab:results}",
        "  \\begin{tabular}{l" + "r" * len(datasets) + "}", r"    \toprule",
        f"    {head}", r"    \midrule", *(f"    {row}" for row in rows),
        r"    \bottomrule", r"  \end{tabular}", r"\end{table}", ""])
