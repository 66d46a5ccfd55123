"""The deterministic results-integrity checks of a paper against its runs (no LLM).

(a) every number of the text and tables traces to a recorded value (rounded to the
printed precision, as a percentage, or as a change between two runs of one metric);
(b) a claimed improvement / reduction agrees with the metric's direction;
(c) hardware and software claims agree with the recorded run environment;
(d) process jargon ("Run 2", "run_3", final_info.json) does not leak into the paper;
(e) training settings the prose states (batch size, learning rate, ...) are values the
experiment code gives them; (f) no placeholder (TODO, XX%, ??) is left.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from aisci.engine.lab import safe_files
from aisci.engine.paper import integrity_claims as claims_mod
from aisci.engine.paper import lint
from aisci.engine.paper.findings import SEVERITY_LOW, Finding
from aisci.engine.paper.integrity_claims import metric_lower_is_better
from aisci.engine.paper.run_facts import RunFacts, load_run_facts, numbers_in_text
from aisci.engine.paper.texscan import (
    TexText,
    body_bounds,
    expand_macros,
    mask_spans,
    prose_text,
    strip_comments,
)

__all__ = ["INTEGRITY_FILE", "Finding", "ScanResult", "check_analyses", "check_citations", "check_directions", "check_environment",
           "check_figures", "check_hidden_text", "check_jargon", "check_numbers",
           "check_placeholders", "check_settings",
           "extract_numbers", "format_findings", "load_findings", "metric_lower_is_better",
           "scan"]

INTEGRITY_FILE = "integrity.json"
"""The integrity stage's report in the idea folder (its findings, read by improve)."""


def load_findings(idea_dir: Path) -> list[Finding]:
    """The findings of the idea's integrity report; none when it is missing or unreadable."""
    try:
        data = safe_files.read_json(idea_dir, INTEGRITY_FILE)
        return [Finding(**f) for f in data.get("findings", [])]
    except (OSError, ValueError, TypeError, AttributeError):  # incl. safe_files.UnsafeFile
        return []


def format_findings(findings: list[Finding], limit: int = 40) -> str:
    """The findings as a bullet list for the model (at most ``limit``)."""
    lines = [f"- [{f.kind}{', low severity' if f.severity == SEVERITY_LOW else ''}] "
             f"{f.location}: " + (f"\"{f.quote}\": " if f.quote else "") + f.message
             + (f"\n    context: {f.context}" if f.context else "")
             for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"- ... {len(findings) - limit} more")
    return "\n".join(lines)


# -- numbers -----------------------------------------------------------------------------

_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9_.\\])(?P<sign>-|−|\\textminus\s*|\$-\$\s*)?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+|\.\d+)"
    r"(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?P<sci>\s*\$?\s*(?:\\times|\\cdot|×)\s*10\s*\^\s*\{?\s*(?P<sciexp>[-+]?\d+)\s*\}?)?"
    r"(?P<pct>\s*\\?%)?"
    r"(?P<mult>\s*[kKM](?![A-Za-z]))?")
_POWER_OF_TEN_RE = re.compile(r"^\s*\^\s*\{?\s*([-+−]?\d+)\s*\}?")
_TABULAR_RE = re.compile(r"\\begin\{tabular\*?\}.*?\\end\{tabular\*?\}", re.DOTALL)


@dataclass(frozen=True)
class NumberClaim:
    value: float
    tolerance: float
    percent: bool
    raw: str
    start: int
    end: int
    in_table: bool = False
    """Inside a tabular: columns often hold percentages without a % sign."""


def extract_numbers(tex: TexText) -> list[NumberClaim]:
    """Numbers stated in the prose and tables; counts <= 10 (not given as a factor, "3x
    faster") and years are not claims."""
    text = tex.masked
    tables = [(t.start(), t.end()) for t in _TABULAR_RE.finditer(tex.original)]
    out: list[NumberClaim] = []
    for m in _NUMBER_RE.finditer(text):
        raw_num = m.group("num")
        after = text[m.end(): m.end() + 1]
        if after.isalpha() and after not in "x×":  # "3rd", "2D", unit-less identifiers
            continue
        before = text[max(0, m.start() - 2): m.start()]
        if len(before) == 2 and before[1] == "-" and before[0].isalpha():  # GPT-2, ResNet-50
            continue
        decimals = len(raw_num.split(".")[1]) if "." in raw_num else 0
        value = float(raw_num.replace(",", ""))
        if m.group("sign"):  # a negative value (a reward, a log-likelihood)
            value = -value
        scale = 1.0
        if m.group("exp"):
            scale = 10.0 ** int(m.group("exp"))
        elif m.group("sciexp"):
            scale = 10.0 ** int(m.group("sciexp"))
        elif raw_num == "10" and (p := _POWER_OF_TEN_RE.match(text[m.end():])):
            value, decimals, scale = 10.0 ** int(p.group(1).replace("−", "-")), 0, 1.0
            if value < 1:
                decimals = -int(p.group(1).replace("−", "-"))
        if m.group("mult"):
            scale *= {"k": 1e3, "K": 1e3, "M": 1e6}[m.group("mult").strip()]
        pct = bool(m.group("pct"))
        plain_int = decimals == 0 and scale == 1.0 and not pct and "," not in raw_num
        if plain_int and (value <= 10 or 1900 <= value <= 2100) and not (
                value <= 10 and _RATIO_AFTER.match(tex.original, m.end())):
            continue
        tol = 0.5 * 10.0 ** (-decimals) * scale * (1 + 1e-9) + 1e-12
        in_table = any(a <= m.start() < b for a, b in tables)
        out.append(NumberClaim(value * scale, tol, pct, text[m.start():m.end()].strip(),
                               m.start(), m.end(), in_table))
    return out


@dataclass(frozen=True)
class TableCell:
    start: int
    end: int
    row: int
    col: int
    header: str
    """The column's header text (all header rows) and the caption."""
    row_label: str
    caption: str
    table: int


def table_cells(tex: TexText) -> list[TableCell]:
    """The cells of every tabular (offsets into the text), with their column header, row
    label and the caption of the enclosing table."""
    out: list[TableCell] = []
    text, masked = tex.original, tex.masked
    for t_index, t in enumerate(_TABULAR_RE.finditer(text)):
        if masked[t.start():t.end()].strip() == "":
            continue  # commented out
        body_start = t.start()
        cap = ""
        env_start = text.rfind("\\begin{table", 0, t.start())
        env_end = text.find("\\end{table", t.end())
        if env_start != -1 and env_end != -1 and text.find("\\end{table", env_start) >= t.end():
            window = masked[env_start:env_end]
            cm = re.search(r"\\caption\s*(?:\[[^\]]*\])?\s*\{", window)
            if cm:
                cap = window[cm.end(): _closing_brace(window, cm.end())]
        rows: list[list[tuple[int, int]]] = []
        pos = body_start
        for rm in re.finditer(r"\\\\|\\end\{tabular", text[body_start:t.end()]):
            row_end = body_start + rm.start()
            cells, cstart = [], pos
            for am in re.finditer(r"(?<!\\)&", text[pos:row_end]):
                cells.append((cstart, pos + am.start()))
                cstart = pos + am.end()
            cells.append((cstart, row_end))
            rows.append(cells)
            pos = body_start + rm.end()
        headers: dict[int, str] = {}
        header_done = False
        for r_index, cells in enumerate(rows):
            texts = [masked[a:b] for a, b in cells]
            numeric = any(_NUMBER_RE.search(x) and not re.search(
                r"[A-Za-z]{3}", re.sub(r"\\[A-Za-z]+", "", x))
                          for x in texts[1:])
            if not header_done and not numeric:
                for ci, x in enumerate(texts):
                    headers[ci] = headers.get(ci, "") + " " + x
                continue
            if numeric:
                header_done = True
            label = texts[0] if texts else ""
            for ci, (a, b) in enumerate(cells):
                out.append(TableCell(a, b, r_index, ci, headers.get(ci, ""), label, cap,
                                     t_index))
    return out


MAX_CAPTION = 2000


def _closing_brace(text: str, start: int) -> int:
    """The offset of the brace closing the group opened just before ``start`` (bounded;
    the end of the text when unbalanced)."""
    depth = 1
    limit = min(len(text), start + MAX_CAPTION)
    i = start
    while i < limit:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return limit


_CAPTION_RE = re.compile(r"\\caption\s*(?:\[[^\]]*\])?\s*\{")
_RULES_RE = re.compile(r"\\(?:toprule|midrule|bottomrule|hline|cmidrule(?:\([^)]*\))?"
                       r"(?:\{[^}]*\})?)")


def _caption_spans(tex: TexText) -> list[tuple[int, int]]:
    return [(m.end(), _closing_brace(tex.original, m.end()))
            for m in _CAPTION_RE.finditer(tex.masked)]


def _claims_of(tex: TexText) -> list[claims_mod.Claim]:
    return [claims_mod.Claim(c.raw, c.value, c.tolerance, c.percent, c.start, c.end,
                             factor=not c.percent and bool(_RATIO_AFTER.match(tex.original,
                                                                              c.end)))
            for c in extract_numbers(tex)]


def check_claims(tex: TexText, rec: claims_mod.Recorded, facts: RunFacts) -> tuple[
        list[Finding], int]:
    """Numbers tied to their metric (prose and tables), direction claims on explicit
    pairs, run attribution of the method's results, table rows from one run,
    "consistently" claims."""
    findings: list[Finding] = []
    all_claims = _claims_of(tex)
    cells = table_cells(tex)
    in_cell: dict[int, TableCell] = {}
    for c in all_claims:
        for cell in cells:
            if cell.start <= c.start < cell.end:
                in_cell[c.start] = cell
                break
    untied_pool = [f.value for f in facts.facts] + _derived(facts) + rec.constants
    sents = claims_mod.sentences(tex)
    captions = _caption_spans(tex)
    for s in sents:
        prose = [c for c in all_claims if s[0] <= c.start < s[1] and c.start not in in_cell]
        for i, c in enumerate(prose):
            lo = prose[i - 1].end if i else s[0]
            hi = prose[i + 1].start if i + 1 < len(prose) else s[1]
            # A number of a caption may leave its metric to the caption's first words.
            caption = next((tex.masked[a:b] for a, b in captions if a <= c.start < b), "")
            claims_mod.tie_claim(rec, tex, c, s, (lo, hi), caption, claims=prose)
        # A sentence that cites another paper may quote its numbers: untied ones are not
        # this paper's claims.
        cited = bool(_CITE_RE.search(tex.original, s[0], s[1]))
        for c in prose:
            findings += [f for f in _judge(tex, rec, c, prose, untied_pool)
                         if not (cited and (f.kind == "untied_number" or c.factor))]
        findings += claims_mod.pair_direction_findings(tex, rec, s, prose)
        findings += claims_mod.attribution_findings(tex, rec, s, prose)
        findings += claims_mod.consistency_findings(tex, rec, s)
        findings += claims_mod.dataset_count_findings(tex, rec, s)
        findings += claims_mod.significance_findings(tex, rec, s)
    table_claims = [c for c in all_claims if c.start in in_cell]
    for c in table_claims:
        cell = in_cell[c.start]
        cell_text = tex.masked[cell.start:cell.end]
        c.pct_context = "%" in cell.header or "%" in cell.caption.split("}")[0]
        c.stderr_context = bool(claims_mod._PM_BEFORE.search(
            tex.masked[max(cell.start, c.start - 12):c.start]))
        c.metrics = (claims_mod.metrics_named(rec, cell.header)
                     or claims_mod.metrics_named(rec, cell.row_label)
                     or claims_mod.metrics_named(rec, cell.caption))
        c.datasets = (claims_mod.datasets_named(rec, cell.header + " " + cell.row_label)
                      or claims_mod.datasets_named(rec, cell.caption))
        c.scales = claims_mod.unit_scales(c.metrics, cell.header)
        if cell_text and cell.col == 0 and not c.metrics:
            pass
        findings += _judge(tex, rec, c, [c], untied_pool)
    findings += _row_findings(tex, rec, table_claims, in_cell)
    findings += _bold_findings(tex, rec, table_claims, in_cell)
    return findings, len(all_claims)


_CITE_RE = re.compile(r"\\(?:cite\w*|nocite)\b")
_BOLD_RE = re.compile(r"\\(?:textbf|mathbf|bm|boldsymbol)\s*\{|\\bfseries|\\bf\b")
_HEADER_LOWER = re.compile(r"\\downarrow|↓|lower\s+is\s+better", re.I)
_HEADER_HIGHER = re.compile(r"\\uparrow|↑|higher\s+is\s+better", re.I)


def _bold_findings(tex: TexText, rec: claims_mod.Recorded,
                   table_claims: list[claims_mod.Claim],
                   in_cell: dict[int, TableCell]) -> list[Finding]:
    """A value set in bold (the table's way of saying "best") is the best of its column by
    the metric's direction (an arrow in the header first, then the metric)."""
    findings: list[Finding] = []
    columns: dict[tuple[int, int], list[tuple[claims_mod.Claim, bool]]] = {}
    for c in table_claims:
        cell = in_cell[c.start]
        if c.stderr_context or cell.col == 0:
            continue
        bold = bool(_BOLD_RE.search(tex.original[cell.start:c.start]))
        columns.setdefault((cell.table, cell.col), []).append((c, bold))
    for (_, _), cs in columns.items():
        bolds = [c for c, b in cs if b]
        if not bolds or len(cs) < 2 or len(bolds) == len(cs):
            continue
        header = in_cell[cs[0][0].start].header
        lib: bool | None
        if _HEADER_LOWER.search(header):
            lib = True
        elif _HEADER_HIGHER.search(header):
            lib = False
        else:
            dirs = {rec.lib(m) for m in (cs[0][0].metrics or
                                         claims_mod.metrics_named(rec, header))}
            lib = dirs.pop() if len(dirs) == 1 else None
        if lib is None:
            continue
        values = [c.value for c, _ in cs]
        best = min(values) if lib else max(values)
        for c in bolds:
            if abs(c.value - best) > c.tolerance:
                findings.append(Finding(
                    "wrong_direction",
                    f"'{c.raw}' is set in bold as the best of its column, but {_fmt(best)} "
                    f"is better ({'lower' if lib else 'higher'} is better for "
                    f"{' '.join(header.split())[:40] or 'this metric'})",
                    f"{tex.path_name}:{tex.line_of(c.start)}", tex.context(c.start, c.end),
                    c.raw))
    return findings


def _fmt(v: float) -> str:
    return f"{v:.6g}"


_RATIO_AFTER = re.compile(
    r"\s*(?:\$?\s*\\times\s*\$?|×|x\b|\s+times\s+(?=(?:faster|slower|larger|"
    r"smaller|more|fewer|less|higher|lower|as\b|the\b)))(?!\s*\$?\s*\d)", re.I)
"""A number the text gives as a factor ("2.5$\\times$ faster", "2 times fewer"); not a
size ("64$\\times$64")."""


_OUTCOME_AFTER = re.compile(
    r"\s*(?:\$?\s*\\times\s*\$?|×|x\b|\s+times)\s*(?:faster|slower|quicker|speed|better|worse|"
    r"lower|higher|less\s+(?:loss|error)|more\s+(?:accurate|efficient)|fewer\s+errors|"
    r"improve|reduc|increas)", re.I)
"""A factor about an outcome (speed, quality): only a ratio of results can back it; a
factor about a setting ("20 times more iterations") may be one of the code's constants."""


def _ratio_finding(tex: TexText, rec: claims_mod.Recorded,
                   c: claims_mod.Claim) -> Finding | None:
    """A factor must be the ratio of two recorded means of one (dataset, metric) (of its
    metrics, when the words name them), a recorded value of a metric they name or, when it
    is not about an outcome, a ratio of two constants of the code; None when it is."""
    means = claims_mod.value_pool(rec, c.metrics or rec.metrics, c.datasets,
                                  ("mean", "average"))
    groups: dict[tuple[str | None, str], list[float]] = {}
    for v in means:
        groups.setdefault((v.dataset, v.metric), []).append(v.value)
    ratios = [abs(a / b) for vals in groups.values() for a, b in combinations(vals, 2)
              if a and b]
    ratios += [1 / r for r in ratios]
    # a recorded value only when the words name its metric ("a speed-up of 2.5x")
    candidates = ratios + ([abs(v.value) for v in means] if c.metrics else [])
    if not _OUTCOME_AFTER.match(tex.original, c.end):  # "20 times more iterations"
        consts = sorted({abs(k) for k in rec.plain_constants if k})[:200]
        candidates += [a / b for a in consts for b in consts if a > b]
    if any(abs(r - c.value) <= c.tolerance + abs(r) * 0.02 for r in candidates):
        return None
    near = sorted({round(r, 3) for r in ratios if r >= 1}, key=lambda r: abs(r - c.value))[:4]
    return Finding(
        "unmatched_number", f"'{c.raw}' is given as a factor but no two runs' recorded "
        + ("/".join(c.metrics[:2]) if c.metrics else "values") + " are in that ratio"
        + (f" (nearest: {', '.join(f'{r:g}' for r in near)})" if near else ""),
        f"{tex.path_name}:{tex.line_of(c.start)}", tex.context(c.start, c.end), c.raw)


def _judge(tex: TexText, rec: claims_mod.Recorded, c: claims_mod.Claim,
           sentence_claims: list[claims_mod.Claim], untied_pool: list[float]) -> list[Finding]:
    if c.factor:
        ratio = _ratio_finding(tex, rec, c)
        return [ratio] if ratio else []
    if c.metrics and claims_mod.value_pool(rec, c.metrics, c.datasets, ("mean", "average")):
        if claims_mod.claim_matches(rec, c, sentence_claims):
            return []
        return [claims_mod.unmatched_finding(tex, rec, c)]
    number = NumberClaim(c.value, c.tolerance, c.percent, c.raw, c.start, c.end)
    if (_matches_value(number, untied_pool) or claims_mod._pair_change(c, sentence_claims)
            or claims_mod.scaled_constant(rec, c)):
        return []
    return [claims_mod.untied_finding(tex, c)]


_OURS_ROW = re.compile(r"\b(?:ours|our|proposed|final|full)\b", re.I)
_BASE_ROW = re.compile(r"\bbaseline\b", re.I)


def _row_findings(tex: TexText, rec: claims_mod.Recorded, table_claims: list[claims_mod.Claim],
                  in_cell: dict[int, TableCell]) -> list[Finding]:
    """All numbers of one table row come from one run (one column, when the table lists
    runs as columns: the row labels name metrics, the header neither metrics nor
    datasets); a row labelled as the method's (ours/final) from the final run. Metrics or
    datasets as columns are the usual layout: a row is one run across them."""
    findings: list[Finding] = []
    groups: dict[tuple[int, str, int], list[claims_mod.Claim]] = {}
    for c in table_claims:
        cell = in_cell[c.start]
        if not c.metrics or c.stderr_context:
            continue
        runs_as_columns = (
            bool(claims_mod.metrics_named(rec, cell.row_label))
            and not claims_mod.metrics_named(rec, cell.header)
            and not claims_mod.datasets_named(rec, cell.header))
        key = ((cell.table, "col", cell.col) if runs_as_columns
               else (cell.table, "row", cell.row))
        groups.setdefault(key, []).append(c)
    for (_, how, _), cs in groups.items():
        sets = [c.runs for c in cs if c.runs]
        if len(sets) >= 2 and not set.intersection(*sets):
            first = cs[0]
            findings.append(Finding(
                "mixed_run_row",
                f"the numbers of this table {how} come from different runs "
                f"({'; '.join(c.raw + ': run ' + ','.join(map(str, sorted(c.runs))) for c in cs if c.runs)})",
                f"{tex.path_name}:{tex.line_of(first.start)}",
                tex.context(first.start, cs[-1].end), " ".join(c.raw for c in cs)))
            continue
        label = in_cell[cs[0].start].row_label if how == "row" else in_cell[cs[0].start].header
        if sets and len(rec.runs) >= 2:
            common = set.intersection(*sets)
            want = (rec.final if _OURS_ROW.search(label) else
                    rec.baseline if _BASE_ROW.search(label) else None)
            if want is not None and want not in common:
                findings.append(Finding(
                    "intermediate_result",
                    f"the {how} '{' '.join(_RULES_RE.sub(' ', label).split())[:40]}' shows "
                    "the values of run "
                    f"{', '.join(map(str, sorted(common)))}, not of run {want}",
                    f"{tex.path_name}:{tex.line_of(cs[0].start)}",
                    tex.context(cs[0].start, cs[-1].end), " ".join(c.raw for c in cs)))
    return findings


def _derived(facts: RunFacts) -> list[float]:
    """Changes between two runs of one (dataset, metric), or two datasets of one (run,
    metric): relative (%), absolute, ratio (untied numbers only)."""
    out: list[float] = []
    groups = [*facts.groups().values(), *facts.dataset_groups().values()]
    for group in groups:
        for fa, fb in combinations(group, 2):
            out += claims_mod._changes(fa.value, fb.value)
    return out


def _matches_value(claim: NumberClaim, values: list[float]) -> bool:
    x, tol = abs(claim.value), claim.tolerance
    for v in values:
        v = abs(v)
        if abs(v - x) <= tol:
            return True
        if (claim.percent or claim.in_table) and abs(v * 100 - x) <= tol:
            return True
    return False


def check_numbers(tex: TexText, facts: RunFacts, lower: list[str] | None = None,
                  higher: list[str] | None = None, notes: str = "",
                  code: str = "") -> tuple[list[Finding], int]:
    """Every check of the numbers (see :func:`check_claims`)."""
    rec = claims_mod.recorded(facts, notes, code, lower or [], higher or [])
    return check_claims(tex, rec, facts)


# -- direction of claimed percentage changes ---------------------------------------------

_UP = claims_mod._UP
_DOWN = claims_mod._DOWN
_GOOD = claims_mod._GOOD
_BAD = claims_mod._BAD


def check_directions(tex: TexText, facts: RunFacts, lower: list[str],
                     higher: list[str]) -> list[Finding]:
    """A percentage change claimed as an improvement / a reduction agrees with the change
    of a run against the baseline on the metric the sentence names."""
    findings = []
    rec = claims_mod.recorded(facts, "", "", lower, higher)
    claims = [c for c in extract_numbers(tex) if c.percent]
    for s_start, s_end in claims_mod.sentences(tex):
        sentence = tex.masked[s_start:s_end]
        inside = [c for c in claims if s_start <= c.start < s_end]
        if not inside or claims_mod._NEGATION.search(sentence):
            continue
        for claim in inside:
            # The words of the claim's own clause: "lower loss, while the time is worse".
            d = claims_mod.direction_of(tex.masked, (s_start, s_end), claim.start, claim.end)
            up, down, good, bad = d.up, d.down, d.good, d.bad
            if not d.any():
                continue
            metrics = (claims_mod.metrics_named(rec, d.text)
                       or claims_mod.metrics_named(rec, sentence))
            datasets = (claims_mod.datasets_named(rec, d.text)
                        or claims_mod.datasets_named(rec, sentence))
            if not metrics:
                continue
            means = claims_mod.value_pool(rec, metrics, datasets, ("mean", "average"))
            base = {(v.dataset, v.metric): v.value for v in means if v.run == rec.baseline}
            candidates: list[tuple[float, bool | None]] = []
            for v in means:
                a = base.get((v.dataset, v.metric))
                if a is None or v.run == rec.baseline or v.value == a:
                    continue
                b = v.value
                rels = [abs(b - a) / abs(a) * 100 if a else math.inf,
                        abs(b - a) / abs(b) * 100 if b else math.inf]
                if abs(a) <= 1 and abs(b) <= 1:
                    rels.append(abs(b - a) * 100)
                if any(abs(r - claim.value) <= claim.tolerance for r in rels):
                    candidates.append((math.copysign(1, b - a), rec.lib(v.metric)))
            if not candidates:
                continue
            if any(_consistent(sign, lib, up, down, good, bad) for sign, lib in candidates):
                continue
            sign, lib = candidates[0]
            went = "went up" if sign > 0 else "went down"
            better = ("" if lib is None else
                      " (lower is better)" if lib else " (higher is better)")
            findings.append(Finding(
                "wrong_direction",
                f"'{claim.raw}' is claimed as "
                f"{'an improvement' if good else 'a degradation' if bad else 'a change'} "
                f"{'downwards' if down and not up else 'upwards' if up and not down else ''}"
                .rstrip() + f", but the metric {went} against the baseline{better}",
                f"{tex.path_name}:{tex.line_of(claim.start)}", " ".join(sentence.split())[:300],
                claim.raw))
    return findings


def _consistent(sign: float, lower_better: bool | None, up: bool, down: bool, good: bool,
                bad: bool) -> bool:
    ok = True
    if up != down:  # an explicit direction word
        ok = ok and ((sign > 0) == up)
    if good != bad and lower_better is not None:
        improved = (sign < 0) == lower_better
        ok = ok and (improved == good)
    return ok


# -- hardware and software ---------------------------------------------------------------

_GPU_RE = re.compile(
    r"\b(?:NVIDIA\s+|Tesla\s+|GeForce\s+)*(V100|A100|H100|H200|B200|A10G?|A40|A6000|L40S?|L4|T4|"
    r"P100|K80|RTX\s*\d{4}(?:\s*Ti)?|GTX\s*\d{3,4}(?:\s*Ti)?|TITAN\s*[A-Z]+|MI\d{3}X?|TPU\s*v\d)\b")
_GENERIC_GPU_RE = re.compile(
    r"\b(?:on|using|with|across)\s+(?:a|an|one|a single|single|\d+|two|four|eight)?\s*GPUs?\b",
    re.I)
_CPU_ONLY_RE = re.compile(r"\b(?:on|using)\s+(?:a\s+|the\s+)?CPUs?\b|\bCPU[- ]only\b", re.I)
_CPU_MODEL_RE = re.compile(r"\b(Xeon|EPYC|Ryzen|Threadripper|Core\s+i\d|Apple\s+M\d)\b", re.I)
_VERSION_RES = {
    "torch": re.compile(r"\bPy[Tt]orch\s*(?:version\s*)?v?(\d+(?:\.\d+)+)"),
    "cuda": re.compile(r"\bCUDA\s*(?:version\s*)?v?(\d+(?:\.\d+)*)"),
    "cudnn": re.compile(r"\bcuDNN\s*(?:version\s*)?v?(\d+(?:\.\d+)*)", re.I),
    "python": re.compile(r"\bPython\s*(?:version\s*)?v?(3(?:\.\d+)+)"),
    "numpy": re.compile(r"\bNumPy\s*(?:version\s*)?v?(\d+(?:\.\d+)+)", re.I),
}


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "single": 1, "a single": 1, "two": 2, "three": 3,
                "four": 4, "eight": 8, "sixteen": 16}
_GPU_COUNT_RE = re.compile(
    r"\b(?P<n>\d+|a single|single|one|two|three|four|eight|sixteen)\s*(?:x\s*|×\s*)?"
    r"(?:NVIDIA\s+|Tesla\s+|GeForce\s+)?(?:[A-Z]{1,4}\s?\d{2,4}\w*\s+)?GPUs?\b", re.I)
_CPU_CORES_RE = re.compile(r"\b(?P<n>\d+)[\s-]*(?:CPU\s+)?(?:cores?|vCPUs?|CPU\s+threads?)\b",
                           re.I)


def check_environment(tex: TexText, facts: RunFacts) -> list[Finding]:
    """GPU and CPU models and counts, framework and language versions against the
    recorded run_env.json; claims without any recorded environment are unverifiable."""
    envs = facts.envs
    text = tex.masked
    findings: list[Finding] = []

    def add(kind: str, start: int, end: int, message: str) -> None:
        findings.append(Finding(kind, message, f"{tex.path_name}:{tex.line_of(start)}",
                                tex.context(start, end), " ".join(text[start:end].split())))

    if not envs:
        hardware = [*_GPU_RE.finditer(text), *_GENERIC_GPU_RE.finditer(text),
                    *_CPU_MODEL_RE.finditer(text), *_CPU_ONLY_RE.finditer(text),
                    *_GPU_COUNT_RE.finditer(text)]
        seen: set[int] = set()
        for m in sorted(hardware, key=lambda m: m.start()):
            line = tex.line_of(m.start())
            if line in seen:
                continue
            seen.add(line)
            add("unverifiable_hardware_claim", m.start(), m.end(),
                f"unverifiable hardware claim '{m.group(0).strip()}': no run recorded its "
                "environment (run_env.json)")
        for rx in _VERSION_RES.values():
            for m in rx.finditer(text):
                add("unverifiable_software_claim", m.start(), m.end(),
                    f"unverifiable software claim '{m.group(0).strip()}': no run recorded its "
                    "environment (run_env.json)")
        return findings
    gpus = [str(g) for e in envs for g in (e.get("gpus") or [])]
    gpu_counts = {len(e.get("gpus") or []) for e in envs}
    cpu_models = " ".join(str(e.get("cpu_model") or "") for e in envs)
    cpu_counts = {int(e["cpu_count"]) for e in envs if isinstance(e.get("cpu_count"), int)}
    used_gpu = bool(gpus)
    recorded = ", ".join(sorted(set(gpus))) or "no GPU (CPU only)"
    for m in _GPU_RE.finditer(text):
        name = _norm(m.group(1))
        if not any(name in _norm(g) for g in gpus):
            add("hardware_claim", m.start(), m.end(),
                f"the paper names the GPU '{m.group(0).strip()}' but the runs recorded "
                f"{recorded} (run_env.json)")
    if not used_gpu:
        for m in _GENERIC_GPU_RE.finditer(text):
            add("hardware_claim", m.start(), m.end(),
                f"the paper says '{m.group(0).strip()}' but the runs used no GPU (run_env.json)")
    else:
        for m in _CPU_ONLY_RE.finditer(text):
            add("hardware_claim", m.start(), m.end(),
                f"the paper says '{m.group(0).strip()}' but the runs used {recorded}")
        for m in _GPU_COUNT_RE.finditer(text):
            word = m.group("n").lower()
            n = int(word) if word.isdigit() else _COUNT_WORDS.get(word, 0)
            if n and n not in gpu_counts:
                add("hardware_claim", m.start(), m.end(),
                    f"the paper says '{m.group(0).strip()}' but the runs recorded "
                    f"{'/'.join(map(str, sorted(gpu_counts)))} GPU(s) (run_env.json)")
    for m in _CPU_MODEL_RE.finditer(text):
        if _norm(m.group(1)) not in _norm(cpu_models):
            add("hardware_claim", m.start(), m.end(),
                f"the paper names the CPU '{m.group(1)}' but the runs recorded "
                f"'{cpu_models.strip() or 'unknown'}'")
    if cpu_counts:
        for m in _CPU_CORES_RE.finditer(text):
            if int(m.group("n")) not in cpu_counts:
                add("hardware_claim", m.start(), m.end(),
                    f"the paper says '{m.group(0).strip()}' but the runs recorded "
                    f"{'/'.join(map(str, sorted(cpu_counts)))} CPU(s) (run_env.json)")
    for key, rx in _VERSION_RES.items():
        versions = [str(e.get(key)) for e in envs if e.get(key)]
        for m in rx.finditer(text):
            claimed = m.group(1)
            if not any(_version_prefix(claimed, v) for v in versions):
                add("software_claim", m.start(), m.end(),
                    f"the paper states {m.group(0).strip()} but the runs recorded {key} "
                    f"{', '.join(sorted(set(versions))) or 'not available'} (run_env.json)")
    return findings


def _version_prefix(claimed: str, recorded: str) -> bool:
    c = claimed.split(".")
    r = re.split(r"[.+\s-]", recorded)
    return r[: len(c)] == c


# -- figures and hidden text -------------------------------------------------------------

_INCLUDE_RE = re.compile(r"\\includegraphics\s*(?:\[[^\]]*\])?\s*\{([^{}]+)\}")
_GRAPHICSPATH_RE = re.compile(r"\\graphicspath\s*\{((?:\s*\{[^{}]*\})+)\s*\}")
_LABEL_RE = re.compile(r"\\label\s*\{([^{}]+)\}")
_FIGREF_RE = re.compile(r"\\(?:ref|autoref|cref|Cref)\s*\{((?:fig|figure)[:_][^{}]+)\}")
_FIGURE_EXTS = ("", ".png", ".pdf", ".jpg", ".jpeg", ".eps")


_NUMBERED_REF_RE = re.compile(r"\b(?:(?P<fig>Figure|Fig\.)|(?P<tab>Table|Tab\.))[~\s]*(?P<n>\d+)"
                              r"(?![\d.]*\d)")
_FLOAT_ENV_RE = {
    "figure": re.compile(r"\\begin\{(?P<env>figure|wrapfigure|SCfigure|sidewaysfigure)\*?\}"),
    "table": re.compile(r"\\begin\{(?P<env>table|wraptable|SCtable|sidewaystable|longtable)"
                        r"\*?\}")}
_CAPTIONOF_RE = {"figure": re.compile(r"\\captionof\s*\{figure\}"),
                 "table": re.compile(r"\\captionof\s*\{table\}")}
_CAPTION_RE = re.compile(r"\\caption\s*[\[{]")
_SUBFLOAT_RE = re.compile(r"\\begin\{(?P<env>sub(?:figure|table))\*?\}.*?\\end\{(?P=env)\*?\}",
                          re.DOTALL)
_UNKNOWN_FLOATS_RE = re.compile(r"\\(?:input|include|subfile|import)\b|\\setcounter\s*\{"
                                r"(?:figure|table)\}")
_CITE_OPTIONAL_RE = re.compile(r"\\\w*cite\w*\*?\s*(?:\[[^\]]*\]\s*){1,2}", re.I)
_OTHER_PAPER_AFTER_RE = re.compile(
    r"^(?:[^.]{0,60}?(?:\\\w*cite|et\s+al|\[\d|\bpaper\b|\bwork\b)|\s*(?:of|in|from)\s+"
    r"(?:the\s+)?(?:original|supplement|[A-Z][a-z]+(?:\s+and\s+|\s+et\b|\s*~?\\cite)))")
_OTHER_PAPER_BEFORE_RE = re.compile(r"(?:\b(?:their|the\s+original|prior|previous|"
                                    r"supplementary|extended\s+data|supp\.)|\}'s)\s*$", re.I)


def _float_counts(text: str) -> dict[str, int]:
    """Numbered figures and tables: one per float, or one per caption of a float holding
    several (minipages); sub-figures and \\subcaption's do not count."""
    counts = {}
    for kind, rx in _FLOAT_ENV_RE.items():
        n = len(_CAPTIONOF_RE[kind].findall(text))
        for m in rx.finditer(text):
            end = text.find(f"\\end{{{m.group('env')}", m.end())
            body = _SUBFLOAT_RE.sub(" ", text[m.end():end if end != -1 else len(text)])
            n += max(1, len(_CAPTION_RE.findall(body)))
        counts[kind] = n
    return counts


def _numbered_refs(tex: TexText) -> list[Finding]:
    """A "Figure 3" / "Table 2" written by hand when the paper has fewer figures / tables
    (a float whose count cannot be known, through \\input or \\setcounter, is not
    judged; nor is another paper's figure: "Figure 3 of \\cite{...}")."""
    text = strip_comments(tex.original)
    if _UNKNOWN_FLOATS_RE.search(text):
        return []
    counts = _float_counts(text)
    text = mask_spans(text, _CITE_OPTIONAL_RE)  # \citep[Table~5]{he2016}: theirs
    start, end = body_bounds(text)
    out = []
    for m in _NUMBERED_REF_RE.finditer(text, start, end):
        kind = "figure" if m.group("fig") else "table"
        n = int(m.group("n"))
        if n <= counts[kind] or _OTHER_PAPER_AFTER_RE.search(text[m.end():m.end() + 80]) \
                or _OTHER_PAPER_BEFORE_RE.search(text[max(0, m.start() - 20):m.start()]):
            continue
        out.append(Finding(
            f"missing_{kind}", f"the paper refers to {kind} {n} but has "
            f"{counts[kind] or 'no'} {kind}{'s' if counts[kind] != 1 else ''}",
            f"{tex.path_name}:{tex.line_of(m.start())}", tex.context(m.start(), m.end()),
            m.group(0)))
    return out


def check_figures(tex: TexText, paper_dir: Path, tex_rel: str) -> list[Finding]:
    """Included figures that do not exist; references to figure labels never defined;
    a figure or table number beyond the paper's figures or tables."""
    findings: list[Finding] = []
    text = strip_comments(tex.original)
    tex_dir = str(Path(tex_rel).parent)
    bases = [tex_dir, "."]
    gp = _GRAPHICSPATH_RE.search(text)
    if gp:
        for p in re.findall(r"\{([^{}]*)\}", gp.group(1)):
            bases.append(_join(tex_dir, p))
    for m in _INCLUDE_RE.finditer(text):
        name = m.group(1).strip()
        if not any(safe_files.is_file(paper_dir, rel)
                   for b in bases for ext in _FIGURE_EXTS
                   if (rel := _join(b, name + ext))):
            findings.append(Finding(
                "missing_figure", f"the figure file '{name}' does not exist in the paper folder",
                f"{tex.path_name}:{tex.line_of(m.start())}", tex.context(m.start(), m.end()),
                name))
    labels = set(_LABEL_RE.findall(text))
    for m in _FIGREF_RE.finditer(text):
        if m.group(1) not in labels:
            findings.append(Finding(
                "missing_figure", f"the paper refers to the figure '{m.group(1)}' but no "
                "figure has that label", f"{tex.path_name}:{tex.line_of(m.start())}",
                tex.context(m.start(), m.end()), m.group(1)))
    return findings + _numbered_refs(tex)


def check_citations(tex: TexText, paper_dir: Path, tex_rel: str) -> list[Finding]:
    """\\cite keys the paper's bibliography does not hold (a made-up reference); nothing
    when the paper has no bibliography to read (no .bib file, none embedded, no
    \\bibitem)."""
    keys = lint.bibliography(paper_dir, str(Path(tex_rel).parent), tex.original)
    if keys is None:
        return []
    return [Finding("missing_citation", f"\\cite key '{key}' is not in the paper's "
                    "bibliography: a reference that does not exist",
                    f"{tex.path_name}:{tex.line_of(offset)}",
                    tex.context(offset, offset + len(key) + 8), key)
            for offset, key in lint.unknown_cite_keys(strip_comments(tex.original), keys)]


def _join(base: str, name: str) -> str:
    """A path relative to the paper folder ('' when it leaves the folder)."""
    parts: list[str] = []
    for p in [*base.split("/"), *name.split("/")]:
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return ""
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)


_HIDDEN_RE = re.compile(r"(?<=\d)\s?(?<!\\)%(?P<rest>[^\n]*)")


def check_hidden_text(tex: TexText) -> list[Finding]:
    """An unescaped % after a number comments out the rest of the line: text the author
    meant to print is hidden."""
    findings: list[Finding] = []
    start, end = body_bounds(tex.original)
    for m in _HIDDEN_RE.finditer(tex.original, start, end):
        rest = m.group("rest").strip()
        line_start = tex.original.rfind("\n", 0, m.start()) + 1
        if tex.original[line_start:m.start()].lstrip().startswith("%"):
            continue  # inside a comment line
        if "%" in strip_comments(tex.original[line_start:m.start()]) and (
                tex.original[line_start:m.start()].count("%") >
                tex.original[line_start:m.start()].count("\\%")):
            continue  # an earlier % already started a comment
        if len(re.findall(r"[A-Za-z]", rest)) < 3:
            continue
        findings.append(Finding(
            "hidden_text", "an unescaped % after a number comments out the rest of the line "
            f"('{rest[:60]}' is not printed); write \\%",
            f"{tex.path_name}:{tex.line_of(m.start())}", tex.context(m.start(), m.end()),
            tex.original[max(line_start, m.start() - 10):m.end()].strip()[:80]))
    return findings


# -- analyses the runs never produced ---------------------------------------------------

# (what the paper says was done, what in the folder would show it was)
_ANALYSES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    ("an ablation", re.compile(r"\bablat\w*", re.I),
     re.compile(r"ablat|\bwithout\b|w/o|\bno[ _-](?!grad\b|op\b|ne\b|sync\b)\w|remov|disabl|"
                r"\bonly\b", re.I)),
    ("a hyperparameter sweep", re.compile(
        r"\b(?:sweep\w*|grid[\s-]+search\w*|hyper-?parameter\s+(?:search|tuning|study)|"
        r"sensitivity\s+(?:analysis|study))\b", re.I),
     re.compile(r"sweep|grid|sensitiv|search|tuning|\bfor\s+\w+\s+in\s+[\[(]", re.I)),
    ("a scaling study", re.compile(r"\bscaling\s+(?:study|analysis|experiments?|laws?)\b",
                                   re.I), re.compile(r"scal", re.I)),
    ("a visualisation", re.compile(
        r"\b(?:attention\s+maps?|saliency\s+maps?|t-?SNE|UMAP|PCA\s+(?:projection|plot)s?|"
        r"(?:loss\s+)?landscape\s+(?:plot|visuali[sz]ation)s?)\b", re.I),
     re.compile(r"attention|attn|saliency|tsne|t-sne|umap|pca|landscape", re.I)),
)
_DONE_RE = re.compile(r"\b(?:we|our|table|figure|fig|shows?|showed|shown|reveals?|revealed|"
                      r"confirms?|confirmed|indicates?|demonstrates?|performed|conducted|"
                      r"ran|carried\s+out)\b", re.I)
_NOT_DONE_RE = re.compile(r"\b(?:future|could|would|should|might|may|plan|leave|left|not|no|"
                          r"never|beyond|outside)\b", re.I)
_SEEDS_RE = re.compile(r"\b(?P<n>\d+|two|three|four|five|six|seven|eight|nine|ten)\s+"
                       r"(?:random\s+|different\s+|independent\s+)?seeds\b", re.I)
_REPEATS_RE = re.compile(r"\b(?P<n>\d+|two|three|four|five|six|seven|eight|nine|ten)\s+"
                         r"(?:independent|random|repeated|separate)\s+(?:training\s+)?"
                         r"(?:runs|trials|repetitions|restarts|initiali[sz]ations)\b", re.I)
_SEED_LIST_RE = re.compile(r"\bseeds?\s*(?:=\s*|:\s*|of\s+)?[(\[{]?\s*\d+"
                           r"(?:\s*(?:,|and|,\s*and|\\,)\s*\d+)+\s*[)\]}]?", re.I)
"""A list of seed values ("seeds 1337, 1338 and 1339"): identifiers, not results."""
_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10}


def check_analyses(tex: TexText, facts: RunFacts, evidence: str,
                   run_evidence: str | None = None) -> list[Finding]:
    """Analyses the paper says were done (an ablation, a sweep, a scaling study, attention
    maps) of which nothing in the folder (notes, experiment code, run results, figure
    names: ``evidence``; an ablation only by ``run_evidence``, the same without the code)
    speaks; a number of seeds (or of independent runs) the runs did not record."""
    findings: list[Finding] = []
    if run_evidence is None:
        run_evidence = evidence
    text = tex.masked
    for s_start, s_end in claims_mod.sentences(tex):
        sentence = text[s_start:s_end]
        if not _DONE_RE.search(sentence) or _NOT_DONE_RE.search(sentence):
            continue
        for what, claim_rx, evidence_rx in _ANALYSES:
            m = claim_rx.search(sentence)
            # An ablation is shown by the runs (notes, result keys, file names), not by
            # words of the code (torch.no_grad, "remove padding").
            where = run_evidence if what == "an ablation" else evidence
            if m and not evidence_rx.search(where):
                findings.append(Finding(
                    "unsupported_analysis",
                    f"the paper reports {what} ('{m.group(0)}') but no run, note, code or "
                    "figure of the folder records one",
                    f"{tex.path_name}:{tex.line_of(s_start + m.start())}",
                    " ".join(sentence.split())[:300], m.group(0)))
                break
    seed_counts = _seed_counts(facts)
    if seed_counts:
        for m in [*_SEEDS_RE.finditer(text), *_REPEATS_RE.finditer(text)]:
            word = m.group("n").lower()
            n = int(word) if word.isdigit() else _NUMBER_WORDS[word]
            if n not in seed_counts:
                findings.append(Finding(
                    "unmatched_number",
                    f"the paper says '{m.group(0)}' but the runs recorded "
                    f"{'/'.join(map(str, sorted(seed_counts)))} seed(s) per result",
                    f"{tex.path_name}:{tex.line_of(m.start())}", tex.context(m.start(), m.end()),
                    m.group(0)))
    return findings


_SEED_KEYS = ("final_info_dict", "seeds", "per_seed", "all_results")


def _seed_counts(facts: RunFacts) -> set[int]:
    """How many seeds the runs recorded per result (lists of numbers under a per-seed key)."""
    counts: set[int] = set()

    def walk(obj: object, under_seed: bool, depth: int) -> None:
        if depth > 6 or len(counts) > 20:
            return
        if isinstance(obj, dict):
            for k, v in list(obj.items())[:500]:
                walk(v, under_seed or str(k) in _SEED_KEYS, depth + 1)
        elif isinstance(obj, list) and under_seed and obj and all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in obj):
            counts.add(len(obj))

    for run in facts.runs:
        walk(run.final_info, False, 0)
    return counts


def _evidence(paper_dir: Path, facts: RunFacts, notes: str, code: str) -> str:
    """Everything in the folder that can show an analysis was run: notes, code, the keys of
    the run results, the names of the files next to the paper (figures, logs)."""
    parts = [notes, code]
    for run in facts.runs:
        if isinstance(run.final_info, dict):
            parts.append(" ".join(_keys(run.final_info, 0)))
        parts.append(run.path.name)
    try:
        parts += [e.path for e in safe_files.walk(paper_dir, limit=2000, max_depth=3)]
    except OSError:  # an unreadable folder: the names are only extra evidence
        pass
    return "\n".join(parts)


def _keys(obj: object, depth: int) -> list[str]:
    if depth > 4 or not isinstance(obj, dict):
        return []
    out: list[str] = []
    for k, v in list(obj.items())[:200]:
        out.append(str(k))
        out += _keys(v, depth + 1)
    return out


# -- process jargon ----------------------------------------------------------------------

_JARGON_RE = re.compile(r"\b[Rr]uns?(?:\\_|_|[\s~]+)(?:\d{1,3}\b(?![\s~]*(?:steps?|epochs?|"
                        r"iterations?|updates?|times|seconds?|minutes?|hours?|seeds?|trials?|"
                        r"tokens?|samples?|examples?|batches|experiments))|[A-Z]\b)|"
                        r"\bbaseline\\?_run\b|"
                        r"\bfinal(?:\\_|_)info(?:\.json)?\b|\brun(?:\\_|_)env\.json\b|"
                        r"\bexperiment\.py\b|\bnotes\.txt\b")


def check_jargon(tex: TexText) -> list[Finding]:
    findings = []
    # Figure paths are masked already; \texttt{run\_3} is prose and is checked.
    text = mask_spans(tex.masked, re.compile(r"\\includegraphics[^}]*\}"))
    for m in _JARGON_RE.finditer(text):
        findings.append(Finding(
            "process_jargon",
            f"'{m.group(0).strip()}' is the pipeline's internal name; describe the experiment "
            "by what it changes instead",
            f"{tex.path_name}:{tex.line_of(m.start())}", tex.context(m.start(), m.end()),
            m.group(0).strip()))
    return findings


# -- settings of the experiment code ------------------------------------------------------

_OF = r"\s*(?:of|=|is|was|were|:|to)?\s*"
# (what the paper calls it, how it says it (the value follows the match), the names the
# experiment code gives it)
_SETTINGS: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    ("batch size", re.compile(r"\bbatch[\s-]+size" + _OF, re.I),
     re.compile(r"^(?:train_|training_|micro_)?batch_?size$|^bs$")),
    ("minimum learning rate", re.compile(r"\bmin(?:imum|imal)?\.?\s+learning[\s-]+rate" + _OF,
                                         re.I), re.compile(r"^min_(?:lr|learning_rate)$")),
    ("learning rate", re.compile(r"(?<!minimum )(?<!min )(?<!minimal )\blearning[\s-]+rate"
                                 + _OF, re.I),
     re.compile(r"^(?:base_|max_|peak_|init_|initial_)?(?:lr|learning_rate)$")),
    ("weight decay", re.compile(r"\bweight[\s-]+decay" + _OF, re.I),
     re.compile(r"^weight_decay$|^wd$")),
    ("dropout", re.compile(r"\bdropout(?:\s+rate|\s+probability)?" + _OF, re.I),
     re.compile(r"^dropout$|^dropout_(?:rate|p|prob)$")),
    ("embedding dimension", re.compile(
        r"\b(?:embedding|hidden|model)\s+(?:dimension|dimensionality|size|width)" + _OF, re.I),
     re.compile(r"^n_?embd?$|^n_embed$|^d_model$|^hidden_(?:size|dim)$|^embed(?:ding)?_dim$")),
    ("context length", re.compile(
        r"\b(?:context(?:\s+(?:length|window|size))?|block\s+size|sequence\s+length)" + _OF,
        re.I), re.compile(r"^block_size$|^seq_?len$|^context_(?:length|size)$|^max_seq_len$|"
                          r"^ctx_len$")),
    ("number of training iterations", re.compile(
        r"\b(?:train(?:ed|ing)?|run)\s+(?:for|over)\s+(?:a\s+total\s+of\s+)?(?=[\d$])",
        re.I), re.compile(r"^(?:max|num|total|n|train)_(?:iters|steps|iterations|updates)$|"
                          r"^(?:iters|iterations|num_train_steps|max_steps|total_steps)$")),
    ("number of training epochs", re.compile(
        r"\b(?:train(?:ed|ing)?|run)\s+(?:for|over)\s+(?:a\s+total\s+of\s+)?(?=[\d$])",
        re.I), re.compile(r"^(?:max|num|total|n|train)_epochs$|^epochs$")),
)
_LENGTH_UNIT = {"number of training iterations": re.compile(
    r"\s*\$?\s*(?:training\s+|gradient\s+|optimi[sz]ation\s+)?(?:iterations?|steps?|updates?)\b",
    re.I), "number of training epochs": re.compile(r"\s*\$?\s*(?:training\s+)?epochs?\b",
                                                   re.I)}
_LAYERS = (("number of layers", re.compile(r"(?P<n>\d+)[\s-]+layers?\b", re.I),
            re.compile(r"^n_?layers?$|^num_layers$|^depth$")),
           ("number of attention heads",
            re.compile(r"(?P<n>\d+)\s+(?:attention\s+|self-attention\s+)?heads\b", re.I),
            re.compile(r"^n_?heads?$|^num_(?:attention_)?heads$")))
_SETTING_NUM = re.compile(
    r"\$?\s*(?:\\(?:eta|lambda|alpha|gamma)\w*\s*=\s*|[A-Za-z]\s*=\s*)?(?:"
    r"10\s*\^\s*\{?\s*(?P<p>[-+−]?\d+)\s*\}?|"
    r"(?P<num>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)"
    r"(?:[eE](?P<e>[-+]?\d+)|\s*\$?\s*(?:\\times|\\cdot|×)\s*10\s*\^\s*\{?\s*(?P<x>[-+−]?\d+)"
    r"\s*\}?)?(?P<k>\s*[kK](?![A-Za-z]))?)(?P<pct>\s*\$?\s*\\?%)?")
_CODE_NAME = re.compile(r"(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_]*)")
MAX_CODE_LINES = 20_000


def _setting_value(text: str, pos: int) -> tuple[float, float, int] | None:
    """(value, printed tolerance, end) of the number at ``pos`` ("64", "$10^{-3}$",
    "$5 \\times 10^{-4}$", "3e-4", "100,000", "20k")."""
    m = _SETTING_NUM.match(text, pos)
    if not m:
        return None
    pct = 0.01 if m.group("pct") else 1.0
    if m.group("p"):
        v = 10.0 ** int(m.group("p").replace("−", "-")) * pct
        return v, v * 1e-6, m.end()
    raw = m.group("num")
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    scale = 1.0
    if m.group("e"):
        scale = 10.0 ** int(m.group("e"))
    elif m.group("x"):
        scale = 10.0 ** int(m.group("x").replace("−", "-"))
    if m.group("k"):
        scale *= 1e3
    scale *= pct
    value = float(raw.replace(",", "")) * scale
    return value, 0.5 * 10.0 ** (-decimals) * scale * (1 + 1e-9) + 1e-15, m.end()


def code_settings(code: str) -> dict[str, list[float]]:
    """Per name of the experiment code, the numbers written after it on its lines
    (``batch_size = 64 if ... else 32``, ``n_layer: int = 12``, ``"--lr", default=1e-3``):
    every value the code may give it."""
    out: dict[str, list[float]] = {}
    for line in code.splitlines()[:MAX_CODE_LINES]:
        line = line.split("#", 1)[0]
        names = list(_CODE_NAME.finditer(line))
        if not names:
            continue
        for n in names:
            values = out.setdefault(n.group(1), [])
            for num in claims_mod._CODE_NUM.finditer(line, n.end()):
                try:
                    values.append(float(num.group(0)))
                except ValueError:
                    continue
    return {k: v for k, v in out.items() if v}


_VARIANT_WORDS = re.compile(
    r"\b(?:increas|decreas|reduc|vary|varied|varying|sweep|ablat|instead|larger|smaller|"
    r"higher|lower|doubl|halv|compar|alternativ|variant|grid|range|tried|try|trying|values|"
    r"change|chang|replac|without|except|if\b|when\b|previous|prior|other)\w*", re.I)


def check_settings(tex: TexText, code: str, notes: str = "") -> list[Finding]:
    """A training setting the paper states in its prose (batch size, learning rate,
    layers, heads, width, context, dropout, weight decay, training length) that is none of
    the values the experiment code gives it nor a number of the notes (which describe the
    earlier runs); a setting the code does not name, a table (rows of variants) and a
    sentence about a variant ("increasing the batch size to 128") are not judged."""
    if not code.strip():
        return []
    settings = code_settings(code)
    noted = numbers_in_text(notes)
    text = mask_spans(tex.masked, _TABULAR_RE)
    for s_start, s_end in claims_mod.sentences(tex):
        # A variant, or another paper's model (a cited sentence), is not this code's.
        if _VARIANT_WORDS.search(text, s_start, s_end) or _CITE_RE.search(
                tex.original, s_start, s_end):
            text = text[:s_start] + " " * (s_end - s_start) + text[s_end:]
    findings: list[Finding] = []

    def judge(label: str, names_rx: re.Pattern[str], value: float, tol: float,
              start: int, end: int) -> None:
        named = {n: v for n, v in settings.items() if names_rx.search(n)}
        if not named:
            return
        allowed = sorted({x for v in named.values() for x in v})
        if any(abs(value - x) <= tol or abs(value - x) <= 1e-9 * abs(x)
               for x in [*allowed, *noted]):
            return
        quote = " ".join(text[start:end].split())
        findings.append(Finding(
            "unmatched_number",
            f"the paper gives the {label} as {_fmt(value)} but the experiment code sets "
            f"{', '.join(sorted(named))} to {', '.join(_fmt(x) for x in allowed[:6])}",
            f"{tex.path_name}:{tex.line_of(start)}", tex.context(start, end), quote))

    for label, rx, names_rx in _SETTINGS:
        unit = _LENGTH_UNIT.get(label)
        for m in rx.finditer(text):
            got = _setting_value(text, m.end())
            if got is None or (unit is not None and not unit.match(text, got[2])):
                continue  # "trained for 20 minutes" states no iteration count
            judge(label, names_rx, got[0], got[1], m.start(), got[2])
    for label, rx, names_rx in _LAYERS:
        for m in rx.finditer(text):
            judge(label, names_rx, float(m.group("n")), 0.5, m.start(), m.end())
    return findings


# -- text never written ------------------------------------------------------------------

_PLACEHOLDER_RE = re.compile(
    r"\b(?:TODO|TBD|FIXME|TKTK)\b|\bXXX?\b(?:\s*\\?%)?|(?<![?\w])\?\?(?!\?)|"
    r"\b(?i:lorem\s+ipsum)\b|\[\s*(?:INSERT|ADD|CITE|REF|CITATION)\b[^\]\n]{0,80}\]|"
    r"\b[A-Z][A-Z]+(?:\s+[A-Z]+){0,6}\s+HERE\b")


def check_placeholders(tex: TexText) -> list[Finding]:
    """Text left as a placeholder (TODO, XX%, ??, Lorem ipsum, "TITLE HERE", [INSERT
    ...]): in the body and in the title."""
    findings = []
    text = tex.masked
    title = re.search(r"\\title\s*\{", tex.original)
    if title:  # the title is in the preamble, which the masked text blanks
        end = _closing_brace(tex.original, title.end())
        text = text[:title.end()] + tex.original[title.end():end] + text[end:]
    for m in _PLACEHOLDER_RE.finditer(text):
        findings.append(Finding(
            "placeholder", f"'{m.group(0).strip()}' is a placeholder that was never replaced "
            "by text", f"{tex.path_name}:{tex.line_of(m.start())}",
            tex.context(m.start(), m.end()), m.group(0).strip()))
    return findings


# -- the whole check ---------------------------------------------------------------------

CODE_FILES = ("experiment.py",)


@dataclass
class ScanResult:
    findings: list[Finding]
    numbers_checked: int
    tex_sha256: str


def template_directions(paper_dir: Path) -> tuple[list[str], list[str]]:
    """``[metrics]`` lower/higher_is_better of a template.toml in the paper folder (a
    template copied along), else none."""
    try:
        data = tomllib.loads(safe_files.read_text(paper_dir, "template.toml"))
    except (OSError, ValueError):  # missing, refused, or not TOML
        return [], []
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        return [], []
    lower, higher = metrics.get("lower_is_better", []), metrics.get("higher_is_better", [])
    return ([str(x) for x in lower] if isinstance(lower, list) else [],
            [str(x) for x in higher] if isinstance(higher, list) else [])


def _read_optional(paper_dir: Path, rel: str) -> str:
    try:
        return safe_files.read_text(paper_dir, rel, errors="replace")
    except OSError:  # missing, or refused (safe_files.UnsafeFile)
        return ""


def scan(paper_dir: Path, tex_rel: str, *, lower_is_better: list[str] | None = None,
         higher_is_better: list[str] | None = None) -> ScanResult:
    """Every deterministic check of one .tex file (``tex_rel`` inside ``paper_dir``, read
    through safe_files) against the folder's runs, notes and code. No LLM, no writes.
    Template directions, when not given, come from a template.toml in the folder."""
    text = safe_files.read_text(paper_dir, tex_rel, errors="replace")
    tex = prose_text(Path(tex_rel).name, expand_macros(text))
    facts = load_run_facts(paper_dir)
    lower, higher = list(lower_is_better or []), list(higher_is_better or [])
    if not lower and not higher:
        lower, higher = template_directions(paper_dir)
    notes = _read_optional(paper_dir, "notes.txt")
    code = "\n".join(_read_optional(paper_dir, name) for name in CODE_FILES)
    findings = (check_jargon(tex) + check_environment(tex, facts)
                + check_figures(tex, paper_dir, tex_rel) + check_citations(tex, paper_dir, tex_rel)
                + check_hidden_text(tex))
    # Numbers that belong to a hardware/version/jargon claim are judged by those checks.
    claims_masked = tex.masked
    for rx in (_GPU_RE, _GPU_COUNT_RE, _CPU_CORES_RE, _JARGON_RE, _SEED_LIST_RE, claims_mod.P_VALUE,
               *_VERSION_RES.values()):
        claims_masked = mask_spans(claims_masked, rx)
    numbers_tex = TexText(tex.path_name, tex.original, claims_masked)
    number_findings, checked = check_numbers(numbers_tex, facts, lower, higher, notes, code)
    findings += number_findings
    findings += check_directions(numbers_tex, facts, lower, higher)
    findings += check_analyses(tex, facts, _evidence(paper_dir, facts, notes, code),
                               _evidence(paper_dir, facts, notes, ""))
    findings += check_placeholders(tex)
    settings = check_settings(tex, code, notes)
    findings = [f for f in findings if not (f.kind == "untied_number" and any(
        f.location == g.location and f.quote in g.quote for g in settings))] + settings
    findings = _dedupe(findings)
    findings.sort(key=lambda f: (f.severity != "error", f.line()))
    return ScanResult(findings, checked, hashlib.sha256(text.encode()).hexdigest())


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per (line, kind, quote); a wrong direction on a line makes a number
    finding of the same quote redundant."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.location, f.kind, f.quote or f.message)
        if key in seen:
            continue
        seen.add(key)
        out.append(f)
    direction_lines: set[str] = set()
    kept = []
    for f in out:  # one wrong direction per line (a pair and a percentage may both see it)
        if f.kind == "wrong_direction":
            if f.location in direction_lines:
                continue
            direction_lines.add(f.location)
        kept.append(f)
    return kept
