"""The deterministic results-integrity checks of a paper against its runs (no LLM).

(a) every number of the text and tables traces to a recorded value (rounded to the
printed precision, as a percentage, or as a change between two runs of one metric);
(b) a claimed improvement / reduction agrees with the metric's direction;
(c) hardware and software claims agree with the recorded run environment;
(d) process jargon ("Run 2", "run_3") does not leak into the paper.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

from aisci.engine.lab import safe_files
from aisci.engine.paper.run_facts import Fact, RunFacts
from aisci.engine.paper.texscan import TexText, mask_spans

LOWER_HINTS = ("loss", "kl", "error", "err", "time", "perplexity", "ppl", "step", "latency",
               "divergence", "mse", "nll", "bpc")
HIGHER_HINTS = ("acc", "accuracy", "throughput", "tokens_per", "tok_per", "per_s", "f1",
                "score", "auc", "bleu", "reward")


@dataclass(frozen=True)
class Finding:
    kind: str
    """unmatched_number | wrong_direction | hardware_claim | software_claim |
    process_jargon | causality"""
    message: str
    location: str
    """``file:line`` in the paper (or the file the finding is about)."""
    context: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


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
    lines = [f"- [{f.kind}] {f.location}: {f.message}" + (f"\n    context: {f.context}"
                                                           if f.context else "")
             for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"- ... {len(findings) - limit} more")
    return "\n".join(lines)


# -- numbers -----------------------------------------------------------------------------

_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9_.\\])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+|\.\d+)"
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
    """Numbers stated in the prose and tables; counts <= 10 and years are not claims."""
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
        if plain_int and (value <= 10 or 1900 <= value <= 2100):
            continue
        tol = 0.5 * 10.0 ** (-decimals) * scale * (1 + 1e-9) + 1e-12
        in_table = any(a <= m.start() < b for a, b in tables)
        out.append(NumberClaim(value * scale, tol, pct, text[m.start():m.end()].strip(),
                               m.start(), m.end(), in_table))
    return out


def _derived(facts: RunFacts) -> list[float]:
    """Changes between two runs of one (dataset, metric), or two datasets of one (run,
    metric): relative (%), absolute, ratio."""
    out: list[float] = []
    groups = [*facts.groups().values(), *facts.dataset_groups().values()]
    for group in groups:
        for fa, fb in combinations(group, 2):
            a, b = fa.value, fb.value
            out.append(abs(b - a))
            out.append(abs(b - a) * 100)  # percentage points of a fraction
            if a:
                out.append(abs(b - a) / abs(a) * 100)
                out.append(abs(b / a))
            if b:
                out.append(abs(b - a) / abs(b) * 100)
                out.append(abs(a / b))
    return out


def _matches_value(claim: NumberClaim, values: list[float]) -> bool:
    x, tol = claim.value, claim.tolerance
    for v in values:
        v = abs(v)
        if abs(v - x) <= tol:
            return True
        if (claim.percent or claim.in_table) and abs(v * 100 - x) <= tol:
            return True
    return False


def check_numbers(tex: TexText, facts: RunFacts) -> tuple[list[Finding], int]:
    values = [f.value for f in facts.facts]
    derived = _derived(facts)
    findings = []
    claims = extract_numbers(tex)
    for c in claims:
        if _matches_value(c, values) or _matches_value(c, derived):
            continue
        line = tex.line_of(c.start)
        findings.append(Finding(
            "unmatched_number",
            f"'{c.raw}' matches no value in the runs' final_info.json, logs or experiment "
            "configuration (nor a change between two runs)",
            f"{tex.path_name}:{line}", tex.context(c.start, c.end)))
    return findings, len(claims)


# -- direction of claimed changes --------------------------------------------------------

_SENTENCE_RE = re.compile(r"[^.!?]*(?:\.(?!\d)|[!?]|$)", re.DOTALL)
_UP = re.compile(r"\b(increas\w*|higher|rais\w*|rise|rose|grew|grow\w*|larger|more)\b", re.I)
_DOWN = re.compile(r"\b(reduc\w*|decreas\w*|lower\w*|drop\w*|fell|fewer|smaller|declin\w*|"
                   r"cut\w*|shrink\w*)\b", re.I)
_GOOD = re.compile(r"\b(improv\w*|better|outperform\w*|gain\w*|boost\w*|speed-?ups?|faster|"
                   r"superior)\b", re.I)
_BAD = re.compile(r"\b(wors\w*|degrad\w*|hurt\w*|deteriorat\w*|slower|regress\w*|inferior)\b",
                  re.I)
_METRIC_WORDS = {
    "loss": ("loss",), "accuracy": ("acc",), "kl": ("kl",), "divergence": ("kl",),
    "time": ("time",), "error": ("err",), "perplexity": ("ppl", "perplexity"),
    "throughput": ("tokens", "throughput", "per_s"), "steps": ("step",),
}


def metric_lower_is_better(metric: str, lower: list[str], higher: list[str]) -> bool | None:
    if metric in lower:
        return True
    if metric in higher:
        return False
    name = metric.lower()
    if any(h in name for h in HIGHER_HINTS):
        return False
    if any(h in name for h in LOWER_HINTS):
        return True
    return None


def _sentence_groups(sentence: str, facts: RunFacts) -> list[list[Fact]]:
    s = sentence.lower()
    keys = {k for word, ks in _METRIC_WORDS.items() if word in s for k in ks}
    if not keys:
        return []
    groups = [g for (_, metric), g in facts.groups().items()
              if any(k in metric.lower() for k in keys)]
    phase = ("val" if re.search(r"\bval(idation)?\b", s) else
             "train" if re.search(r"\btrain(ing)?\b", s) else None)
    if phase:
        narrowed = [g for g in groups if phase in (g[0].metric or "").lower()]
        groups = narrowed or groups
    return groups


def check_directions(tex: TexText, facts: RunFacts, lower: list[str],
                     higher: list[str]) -> list[Finding]:
    findings = []
    claims = [c for c in extract_numbers(tex) if c.percent]
    for m in _SENTENCE_RE.finditer(tex.masked):
        sentence = m.group(0)
        inside = [c for c in claims if m.start() <= c.start < m.end()]
        if not inside:
            continue
        up, down = bool(_UP.search(sentence)), bool(_DOWN.search(sentence))
        good, bad = bool(_GOOD.search(sentence)), bool(_BAD.search(sentence))
        if not (up or down or good or bad):
            continue
        groups = _sentence_groups(sentence, facts)
        for claim in inside:
            candidates: list[tuple[float, bool | None]] = []  # (sign of change, lower better)
            for g in groups:
                lib = metric_lower_is_better(g[0].metric or "", lower, higher)
                for fa, fb in combinations(g, 2):  # fb is the later run
                    a, b = fa.value, fb.value
                    rels = [abs(b - a) / abs(a) * 100 if a else math.inf,
                            abs(b - a) / abs(b) * 100 if b else math.inf,
                            abs(b - a) * 100]
                    if any(abs(r - claim.value) <= claim.tolerance for r in rels) and b != a:
                        candidates.append((math.copysign(1, b - a), lib))
            if not candidates:
                continue  # untraceable numbers are reported by the number check
            if any(_consistent(sign, lib, up, down, good, bad) for sign, lib in candidates):
                continue
            line = tex.line_of(claim.start)
            sign, lib = candidates[0]
            went = "went up" if sign > 0 else "went down"
            better = ("" if lib is None else
                      " (lower is better)" if lib else " (higher is better)")
            findings.append(Finding(
                "wrong_direction",
                f"'{claim.raw}' is claimed as "
                f"{'an improvement' if good else 'a degradation' if bad else 'a change'} "
                f"{'downwards' if down and not up else 'upwards' if up and not down else ''}"
                .rstrip() + f", but the metric {went} between the runs{better}",
                f"{tex.path_name}:{line}", " ".join(sentence.split())[:300]))
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


def check_environment(tex: TexText, facts: RunFacts) -> list[Finding]:
    envs = facts.envs
    text = tex.masked
    findings: list[Finding] = []
    if not envs:
        return findings
    gpus = [str(g) for e in envs for g in (e.get("gpus") or [])]
    cpu_models = " ".join(str(e.get("cpu_model") or "") for e in envs)
    used_gpu = bool(gpus)

    def add(kind: str, start: int, end: int, message: str) -> None:
        findings.append(Finding(kind, message, f"{tex.path_name}:{tex.line_of(start)}",
                                tex.context(start, end)))

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
    for m in _CPU_MODEL_RE.finditer(text):
        if _norm(m.group(1)) not in _norm(cpu_models):
            add("hardware_claim", m.start(), m.end(),
                f"the paper names the CPU '{m.group(1)}' but the runs recorded "
                f"'{cpu_models.strip() or 'unknown'}'")
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


# -- process jargon ----------------------------------------------------------------------

_JARGON_RE = re.compile(r"\b[Rr]uns?(?:\\_|_|[\s~]+)(?:\d+|[A-Z]\b)|\bbaseline\\?_run\b|"
                        r"\bfinal_info(?:\\_|_)|\bnotes\.txt\b")


def check_jargon(tex: TexText) -> list[Finding]:
    findings = []
    # Figure paths are masked already; \texttt{run\_3} is prose and is checked.
    text = mask_spans(tex.masked, re.compile(r"\\includegraphics[^}]*\}"))
    for m in _JARGON_RE.finditer(text):
        findings.append(Finding(
            "process_jargon",
            f"'{m.group(0).strip()}' is the pipeline's internal name; describe the experiment "
            "by what it changes instead",
            f"{tex.path_name}:{tex.line_of(m.start())}", tex.context(m.start(), m.end())))
    return findings
