"""Numbers tied to what they claim: the metric and dataset a sentence, a table column or
a caption names; relative changes against the baseline (or the pair the sentence
states); direction claims on explicit pairs; run attribution; "consistently" claims.

Used by :mod:`aisci.engine.paper.integrity_checks` (the entry point of the checks).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from itertools import combinations, combinations_with_replacement
from typing import Any

from aisci.engine.paper.findings import SEVERITY_LOW, Finding
from aisci.engine.paper.run_facts import RunFacts
from aisci.engine.paper.texscan import TexText

MAX_CONSTANTS = 150
"""Distinct numbers of the experiment code that are read (and paired, see
:func:`code_constants`)."""

# -- metric direction -------------------------------------------------------------------

# Precedence matters: a step count or a time is lower-is-better even when the metric's
# name also says what it counts (step_val_acc_99: steps until 99% accuracy).
_LOWER_TOKENS = ("step", "iter", "epoch", "time", "latency", "runtime", "duration", "clock",
                 "ms", "loss", "kl", "divergence",
                 "error", "err", "perplexity", "ppl", "mse", "nll", "bpc", "wer", "cer")
_HIGHER_TOKENS = ("acc", "f1", "reward", "elbo", "likelihood", "loglik", "throughput", "tokens", "bleu", "auc", "score",
                  "precision", "recall", "return", "success")
_AFFIXES = ("mean", "avg", "average", "stderr", "std", "se", "final", "best", "last")


_COUNT_UNTIL = re.compile(r"(?:^|_)(?:episodes?|steps?|iters?|iterations?|epochs?|samples?|"
                          r"updates?|time|tokens?|trials?)_(?:to|until|before)_")


def metric_tokens(name: str) -> list[str]:
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^a-z0-9]+", s.lower()) if t]


def base_metric(name: str) -> str:
    """``final_train_loss_mean`` -> ``final_train_loss``; ``..._stderr`` likewise."""
    return re.sub(r"_(?:mean|avg|stderr|std|se)$", "", name)


def _token_hit(tokens: list[str], hint: str) -> bool:
    return any(t == hint or (t.startswith(hint) and len(hint) >= 3) for t in tokens)


def metric_lower_is_better(metric: str, lower: list[str] | tuple[str, ...] = (),
                           higher: list[str] | tuple[str, ...] = ()) -> bool | None:
    """True (lower is better), False (higher is better) or None (unknown). Template
    metadata first (tolerant of prefixes and suffixes such as ``_mean``), then the name:
    steps/time/loss/KL/error/perplexity before accuracy/F1/reward."""
    base = base_metric(metric)
    for names, verdict in ((lower, True), (higher, False)):
        for n in names:
            if n in (metric, base) or _affixed(base, base_metric(n)):
                return verdict
    tokens = metric_tokens(base)
    if _COUNT_UNTIL.search("_".join(tokens)):  # episodes_to_threshold, time_to_solve
        return True
    if any(_token_hit(tokens, h) for h in _LOWER_TOKENS):
        return True
    if any(_token_hit(tokens, h) for h in _HIGHER_TOKENS):
        return False
    return None


def _affixed(metric: str, listed: str) -> bool:
    """``listed`` is ``metric`` up to affixes such as final_/best_/_mean."""
    a, b = metric_tokens(metric), metric_tokens(listed)
    strip = [t for t in a if t not in _AFFIXES]
    return bool(b) and (strip == [t for t in b if t not in _AFFIXES])


# -- recorded values ----------------------------------------------------------------------

_CONTAINERS = {"means", "mean", "stderrs", "stderr", "std", "stds", "se", "final_info_dict",
               "final_info", "results", "metrics"}


@dataclass(frozen=True)
class Value:
    run: int
    dataset: str | None
    metric: str
    """Base name (``_mean``/``_stderr`` suffix removed)."""
    value: float
    kind: str
    """mean | stderr | seed | average (the mean over datasets)"""


@dataclass
class Recorded:
    values: list[Value] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    baseline: int = 0
    final: int = 0
    constants: list[float] = field(default_factory=list)
    plain_constants: list[float] = field(default_factory=list)
    lower: list[str] = field(default_factory=list)
    higher: list[str] = field(default_factory=list)

    def lib(self, metric: str) -> bool | None:
        return metric_lower_is_better(metric, self.lower, self.higher)

    def get(self, run: int, dataset: str | None, metric: str) -> float | None:
        for v in self.values:
            if v.run == run and v.dataset == dataset and v.metric == metric and v.kind in (
                    "mean", "average"):
                return v.value
        return None


def _walk(obj: Any, path: list[str], out: list[tuple[list[str], float]], depth: int = 0) -> None:
    if depth > 6 or len(out) > 20_000:
        return
    if isinstance(obj, bool):
        return
    if isinstance(obj, int | float):
        if obj == obj and abs(obj) != float("inf"):
            out.append((path, float(obj)))
    elif isinstance(obj, dict):
        for k, v in list(obj.items())[:2000]:
            _walk(v, [*path, str(k)], out, depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2000]):
            _walk(v, [*path, str(i)], out, depth + 1)


_FINAL_RUN_RES = (
    re.compile(r"\b(?:final|best|chosen|selected)\s+(?:run|configuration|method|model|version|"
               r"variant|experiment)\b[^.\n]{0,40}?\bruns?[\s_:#]*(\d+)", re.I),
    re.compile(r"\bruns?[\s_:#]*(\d+)\b[^.\n]{0,40}?\b(?:is|as|was|becomes)\s+(?:the|our)\s+"
               r"(?:final|best|chosen|selected)\b", re.I),
)


def final_run_from_notes(notes: str, runs: list[int]) -> int | None:
    for rx in _FINAL_RUN_RES:
        found = [int(m.group(1)) for m in rx.finditer(notes) if int(m.group(1)) in runs]
        if found:
            return found[-1]
    return None


def recorded(facts: RunFacts, notes: str, code: str, lower: list[str],
             higher: list[str]) -> Recorded:
    rec = Recorded(lower=list(lower), higher=list(higher))
    for run in facts.runs:
        if not isinstance(run.final_info, dict):
            continue
        rec.runs.append(run.index)
        flat: list[tuple[list[str], float]] = []
        _walk(run.final_info, [], flat)
        for keys, value in flat:
            names = [k for k in keys if not k.isdigit()]
            if not names:
                continue
            kind = ("seed" if "final_info_dict" in keys or keys[-1].isdigit() else
                    "stderr" if any(k in ("stderrs", "stderr", "std", "stds", "se")
                                    for k in keys) or re.search(r"_(stderr|std|se)$",
                                                                names[-1]) else "mean")
            metric_keys = [k for k in names if k not in _CONTAINERS]
            if not metric_keys:
                continue
            metric = base_metric(metric_keys[-1])
            dataset = metric_keys[0] if len(metric_keys) > 1 else None
            rec.values.append(Value(run.index, dataset, metric, value, kind))
    rec.runs.sort()
    rec.metrics = sorted({v.metric for v in rec.values})
    rec.datasets = sorted({v.dataset for v in rec.values if v.dataset})
    per: dict[tuple[int, str], list[float]] = {}
    for v in rec.values:
        if v.kind == "mean" and v.dataset:
            per.setdefault((v.run, v.metric), []).append(v.value)
    for (index, metric), vals in per.items():
        if len(vals) > 1:
            rec.values.append(Value(index, "*", metric, sum(vals) / len(vals), "average"))
    if rec.runs:
        rec.baseline = rec.runs[0]
        rec.final = final_run_from_notes(notes, rec.runs) or rec.runs[-1]
    rec.constants = code_constants(code)
    rec.plain_constants = code_constants(code, products=False)
    return rec


_CODE_NUM = re.compile(r"(?<![A-Za-z_0-9.])(\d+\.\d*|\.\d+|\d+)(?:[eE]([-+]?\d+))?")
MIN_SIZE_FACTOR = 16
"""Products of two code constants are accepted only when both are integer sizes at
least this large (tokens per batch = batch x context, examples = p x p, samples =
steps x batch): a small factor (2, 0.5) would make any doubled or halved setting of
the paper "explained" by the code."""


def code_constants(code: str, *, products: bool = True) -> list[float]:
    """The numbers of the experiment code (bounded) and, with ``products``, the
    products of two integer sizes (see :data:`MIN_SIZE_FACTOR`); never ratios, never a
    constant times a small factor."""
    base: list[float] = []
    for m in _CODE_NUM.finditer(code):
        try:
            v = float(m.group(0))
        except ValueError:
            continue
        if v not in base:
            base.append(v)
        if len(base) >= MAX_CONSTANTS:
            break
    out = set(base)
    if not products:
        return sorted(out)
    sizes = [v for v in base if v >= MIN_SIZE_FACTOR and v == int(v)]
    for a, b in combinations_with_replacement(sizes, 2):
        out.add(a * b)
    return sorted(out)


# -- the text: sentences, concepts, datasets ------------------------------------------------

_CONCEPTS: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...] = (
    ("steps", re.compile(r"\b(?:steps?|iterations?|updates?|epochs?|episodes?)\b", re.I),
     ("step", "iter", "epoch", "update", "episode")),
    ("time", re.compile(r"(?<!\\)\b(?:time|times|seconds?|minutes?|hours?|wall-?clock|runtime|"
                        r"latency)\b", re.I), ("time", "latency", "seconds", "s", "ms", "duration",
                                   "runtime", "clock")),
    ("throughput", re.compile(r"throughput|tokens?\s*(?:per|/)\s*s|tok/s|per\s+second", re.I),
     ("throughput", "tokens", "tok")),
    ("loss", re.compile(r"\blosses\b|\bloss\b|\bNLL\b|cross-entropy|\bMSE\b", re.I),
     ("loss", "nll", "mse")),
    ("kl", re.compile(r"\bKL\b|divergence", re.I), ("kl", "divergence")),
    ("acc", re.compile(r"accura\w*|\bacc\b", re.I), ("acc",)),
    ("error", re.compile(r"\berrors?\b", re.I), ("error", "err")),
    ("ppl", re.compile(r"perplexit\w*|\bPPL\b", re.I), ("perplexity", "ppl")),
    ("f1", re.compile(r"\bF1\b", re.I), ("f1",)),
    ("reward", re.compile(r"\brewards?\b|\breturns?\b", re.I), ("reward", "return")),
)
_QUALIFIERS = (
    ("train", re.compile(r"\btrain(?:ing)?\b", re.I), ("train", "training")),
    ("val", re.compile(r"\b(?:val(?:idation)?|held-out|eval(?:uation)?|test)\b", re.I),
     ("val", "valid", "validation", "eval", "evaluation", "test")),
    ("inference", re.compile(r"\binference\b|\bsampling\b|\bgeneration\b", re.I),
     ("inference", "sampling", "generation")),
)
_SENTENCE_RE = re.compile(r"(?:[^.!?]|\.(?=\d)|\.(?=\w)|(?<=\be\.g)\.|(?<=\bi\.e)\.|"
                          r"(?<=\bvs)\.|(?<=\bFig)\.|(?<=\bEq)\.|(?<=\bet al)\.)+(?:[.!?]|$)")


def sentences(tex: TexText) -> list[tuple[int, int]]:
    text = tex.masked
    return [(m.start(), m.end()) for m in _SENTENCE_RE.finditer(text) if m.group(0).strip()]


def concept_metrics(rec: Recorded, concept: str) -> list[str]:
    hints = next(h for c, _, h in _CONCEPTS if c == concept)
    out = []
    for m in rec.metrics:
        toks = metric_tokens(m)
        if concept == "time" and _token_hit(toks, "step"):
            continue
        if any(_token_hit(toks, h) for h in hints):
            out.append(m)
    return out


def _qualify(rec: Recorded, metrics: list[str], text: str) -> list[str]:
    """Narrow by train/validation/inference when the text says one (and only one)."""
    said = [(name, hints) for name, rx, hints in _QUALIFIERS if rx.search(text)]
    if len(said) != 1:
        return metrics
    _, hints = said[0]
    narrowed = [m for m in metrics if any(_token_hit(metric_tokens(m), h) for h in hints)]
    return narrowed or metrics


def metrics_named(rec: Recorded, text: str) -> list[str]:
    """Every metric the text names (no qualifier narrowing across several concepts)."""
    out: list[str] = []
    for concept, rx, _ in _CONCEPTS:
        for m in rx.finditer(text):
            qual = text[max(0, m.start() - 30): m.end()]
            for metric in _qualify(rec, concept_metrics(rec, concept), qual):
                if metric not in out:
                    out.append(metric)
    for _, _, metrics in sorted(_own_word_hits(rec, text), key=lambda h: h[0]):
        for metric in _qualify(rec, metrics, text):
            if metric not in out:
                out.insert(0, metric)
    # A metric named by its own identifier (final\_val\_loss).
    plain = text.replace("\\_", "_")
    for metric in rec.metrics:
        if re.search(r"(?<![A-Za-z_])" + re.escape(metric) + r"(?![A-Za-z])", plain) and (
                metric not in out):
            out.append(metric)
    return out


_DATASET_SUFFIXES = {"char", "chars", "character", "word", "words", "bpe", "tok", "tokens",
                     "small", "tiny", "mini", "full", "large", "base", "data", "dataset",
                     "train", "test", "val", "v1", "v2", "raw", "clean"}


def _dataset_forms(name: str) -> list[str]:
    """How a paper may spell a dataset: its name with _ as space or hyphen, and without
    a suffix such as _char (``shakespeare_char`` is "Shakespeare")."""
    forms = {name, name.replace("_", " "), name.replace("_", "-")}
    parts = [t for t in re.split(r"[_\-\s]+", name) if t]
    while len(parts) > 1 and parts[-1].lower() in _DATASET_SUFFIXES:
        parts = parts[:-1]
    if len(parts) < len([t for t in re.split(r"[_\-\s]+", name) if t]):
        stem = " ".join(parts)
        forms |= {stem, stem.replace(" ", "_"), stem.replace(" ", "-")}
    return [f for f in forms if len(f) >= 3]


_DATASET_RX_CACHE: dict[str, re.Pattern[str]] = {}


def _dataset_rx(name: str) -> re.Pattern[str]:
    rx = _DATASET_RX_CACHE.get(name)
    if rx is None:
        alts = sorted((re.escape(f).replace("_", r"\\?_") for f in _dataset_forms(name)),
                      key=len, reverse=True)
        rx = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alts) + r")(?![A-Za-z0-9])", re.I)
        if len(_DATASET_RX_CACHE) < 512:
            _DATASET_RX_CACHE[name] = rx
    return rx


def dataset_mentions(rec: Recorded, text: str) -> list[tuple[int, str]]:
    """(offset, dataset) of every dataset the text names (LaTeX-escaped underscores
    read as underscores; offsets stay those of ``text``)."""
    out = []
    for d in rec.datasets:
        out += [(m.start(), d) for m in _dataset_rx(d).finditer(text)]
    return sorted(out)


def datasets_named(rec: Recorded, text: str) -> list[str]:
    out: list[str] = []
    for _, d in dataset_mentions(rec, text):
        if d not in out:
            out.append(d)
    return [d for d in rec.datasets if d in out]


_CLAUSE_SPLIT = re.compile(r"[,;:()]|\b(?:and|while|whereas|but|although|though|yet)\b", re.I)
_RESPECTIVELY = re.compile(r"\brespectively\b", re.I)


def nearest_datasets(rec: Recorded, text: str, sent: tuple[int, int], c: Claim,
                     claims: list[Claim]) -> list[str]:
    """The dataset a number of a sentence speaks of: with several datasets named, the
    one named in the number's own clause (nearest to it), else the nearest one named
    before it, else after it; "respectively" pairs numbers and datasets in order."""
    mentions = [(sent[0] + o, d) for o, d in dataset_mentions(rec, text[sent[0]:sent[1]])]
    named = list(dict.fromkeys(d for _, d in mentions))
    if len(named) <= 1:
        return named
    ordered = [d for _, d in mentions]
    apart = (all(o < claims[0].start for o, _ in mentions)
             or all(o >= claims[-1].end for o, _ in mentions)) if claims else False
    if _RESPECTIVELY.search(text, sent[0], sent[1]) or apart:
        # "on A, B and C we reach x, y and z (respectively)": in order, or all of them.
        if c in claims and len(claims) == len(ordered):
            return [ordered[claims.index(c)]]
        return named
    lo, hi = sent[0], sent[1]
    for m in _CLAUSE_SPLIT.finditer(text, sent[0], sent[1]):
        if m.end() <= c.start:
            lo = m.end()
        elif m.start() >= c.end:
            hi = m.start()
            break
    inside = [(min(abs(o - c.start), abs(o - c.end)), d) for o, d in mentions if lo <= o < hi]
    if inside:
        return [min(inside)[1]]
    before = [(c.start - o, d) for o, d in mentions if o < c.start]
    if before:
        return [min(before)[1]]
    return [min((o - c.end, d) for o, d in mentions)[1]]


# -- numbers --------------------------------------------------------------------------------


@dataclass
class Claim:
    """A number of the paper and what it was tied to."""

    raw: str
    value: float
    tolerance: float
    percent: bool
    start: int
    end: int
    metrics: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    stderr_context: bool = False
    pct_context: bool = False
    runs: set[int] = field(default_factory=set)
    """Runs whose recorded mean this number is (set by the check)."""
    average: bool = False
    """The text speaks of a mean over datasets."""
    mean_only: bool = False
    """The text presents the number as a mean (over seeds): one seed's value is not it."""
    scales: tuple[float, ...] = (1.0,)
    """Factors from the recorded unit to the printed one (seconds shown as minutes)."""
    factors: tuple[float, ...] = ()
    """Factors the text applies to a setting ("halved" 0.5, "doubled" 2)."""
    factor: bool = False
    """The number is itself a factor ("2.5$\\times$ faster"), not a value to pair."""


def _close(x: float, tol: float, v: float) -> bool:
    """``x`` as printed is ``v``; a change may be printed with or without its sign."""
    return abs(abs(v) - abs(x)) <= tol or abs(v - x) <= tol


def _as_shown(c: Claim, v: float, allow_pct: bool) -> bool:
    if _close(c.value, c.tolerance, v) and not (c.percent and abs(v) <= 1 < c.value * 100):
        return True
    return allow_pct and abs(v) <= 1.0 and _close(c.value, c.tolerance, v * 100)


def value_pool(rec: Recorded, metrics: list[str], datasets: list[str],
               kinds: tuple[str, ...], average: bool = True) -> list[Value]:
    ds = set(datasets) | ({"*"} if datasets and average else set())
    return [v for v in rec.values if v.metric in metrics and v.kind in kinds
            and (not datasets or v.dataset in ds or v.dataset is None)]


def derived_changes(rec: Recorded, metrics: list[str], datasets: list[str],
                    percent: bool = False, average: bool = True,
                    absolute: bool = False) -> list[float]:
    """Changes of every run against the baseline on one (dataset, metric): absolute,
    percentage points, relative (%) and ratios. The mean over datasets only when
    ``average`` (the text speaks of one) or no dataset is named."""
    out: list[float] = []
    means = value_pool(rec, metrics, datasets, ("mean", "average"), average)
    base = {(v.dataset, v.metric): v.value for v in means if v.run == rec.baseline}
    for v in means:
        b = base.get((v.dataset, v.metric))
        if b is None or v.run == rec.baseline:
            continue
        out += [abs(v.value - b)] if absolute else _changes(b, v.value, percent)
    return out


def _changes(a: float, b: float, percent: bool = False) -> list[float]:
    """|b - a|, percentage points, relative change (%) of either, ratios; only the
    percentages when the claim is one."""
    out = [] if percent else [abs(b - a)]
    if abs(a) <= 1 and abs(b) <= 1:
        out.append(abs(b - a) * 100)
    if a:
        out.append(abs(b - a) / abs(a) * 100)
        if not percent:
            out.append(abs(b / a))
    if b:
        out.append(abs(b - a) / abs(b) * 100)
        if not percent:
            out.append(abs(a / b))
    return out


_PM_BEFORE = re.compile(r"(?:\\pm|±|\+/-|\+-)\s*\$?\s*\{?\s*$")
_STDERR_WORDS = re.compile(r"standard\s+errors?|std\.?\s*err|stderr|standard\s+deviations?|"
                           r"\bs\.e\.|\bSE\b|confidence interval|\bCI\b", re.I)
_APPROX_BEFORE = re.compile(r"(?:\babout|\bapprox\w*|\baround|\broughly|\bnearly|\balmost|"
                            r"\\sim|\\approx|≈)\s*\$?\s*$", re.I)
APPROX_TOLERANCE = 0.1
"""A number said to be "about" a value may be 10% off it."""
_MEANS_ALSO = re.compile(r"\b(?:average|mean|across|over all|overall)\b", re.I)


@dataclass
class ClaimContext:
    claims: list[Claim]
    sentence_of: dict[int, tuple[int, int]]


def tie_claim(rec: Recorded, tex: TexText, c: Claim, sent: tuple[int, int],
              neighbours: tuple[int, int], fallback: str = "",
              claims: list[Claim] | None = None) -> None:
    """Set the claim's metrics/datasets from the words around it (the clause before it,
    the words right after it within its clause, then the sentence, then ``fallback`` (a
    table column or caption)); the dataset named nearest to it in its clause."""
    text = tex.masked
    before = text[neighbours[0]: c.start]
    after = text[c.end: neighbours[1]]
    stop = _AFTER_STOP.search(after)
    if stop:
        after = after[:stop.start()]
    window = text[max(sent[0], c.start - 12): c.start]
    if _APPROX_BEFORE.search(window):
        c.tolerance = max(c.tolerance, abs(c.value) * APPROX_TOLERANCE)
    c.stderr_context = bool(_PM_BEFORE.search(window)) or bool(
        _STDERR_WORDS.search(text[max(sent[0], c.start - 40): min(sent[1], c.end + 40)]))
    metrics = (_nearest(rec, after[:25], from_end=False)
               or _nearest(rec, before, from_end=True)
               or _nearest(rec, text[sent[0]:c.start], from_end=True)
               or _nearest(rec, after[:60], from_end=False))
    if not metrics:
        metrics = metrics_named(rec, text[sent[0]:sent[1]])
    if not metrics and fallback:
        metrics = metrics_named(rec, fallback)
    c.metrics = metrics
    sentence = text[sent[0]:sent[1]]
    c.average = bool(_MEANS_ALSO.search(sentence))
    c.mean_only = bool(_MEAN_WORDS.search(sentence)) and not _NOT_MEAN.search(sentence)
    c.datasets = nearest_datasets(rec, text, sent, c, claims or [c]) or (
        datasets_named(rec, fallback) if fallback else [])
    c.scales = unit_scales(metrics, sentence)
    c.factors = tuple(f for rx, f in _FACTOR_WORDS if rx.search(sentence))


_FACTOR_WORDS = (
    (re.compile(r"\b(?:halv\w*|half)\b", re.I), 0.5),
    (re.compile(r"\b(?:doubl\w*|twice)\b", re.I), 2.0),
    (re.compile(r"\b(?:quarter\w*)\b", re.I), 0.25),
    (re.compile(r"\b(?:tripl\w*|thrice)\b", re.I), 3.0),
    (re.compile(r"\b(?:ten\s*fold|tenth|ten\s+times)\b", re.I), 10.0),
)
"""A setting of the code changed by a factor the sentence names is derived from it; no
other product of a constant is (see :func:`code_constants`)."""


_AFTER_STOP = re.compile(r"[,;:]|\b(?:and|while|whereas|but|although|though)\b", re.I)
_MEAN_WORDS = re.compile(r"\b(?:mean|averaged?|averaging)\b", re.I)
_NOT_MEAN = re.compile(r"\b(?:best|worst|single|each|every|individual|per|one|min\w*|max\w*)"
                       r"[\s-]+(?:seeds?|runs?)\b|\brang\w*|\bbetween\b|\bfrom\b", re.I)
_TIME_UNITS = (
    (re.compile(r"\bminutes?\b|\bmins?\b", re.I), 1 / 60),
    (re.compile(r"\bhours?\b|\bhrs?\b|\bh\b", re.I), 1 / 3600),
    (re.compile(r"\bdays?\b", re.I), 1 / 86400),
    (re.compile(r"\bms\b|\bmilliseconds?\b", re.I), 1000.0),
)


def unit_scales(metrics: list[str], sentence: str) -> tuple[float, ...]:
    """A time metric (recorded in seconds, or in ms when its name says so) printed in
    the unit the sentence names: minutes, hours, days, milliseconds."""
    if not metrics or not all(concept_of_time(m) for m in metrics):
        return (1.0,)
    ms = any("ms" in metric_tokens(m) for m in metrics)
    out = [1.0]
    for rx, factor in _TIME_UNITS:
        if rx.search(sentence):
            out.append(factor / 1000 if ms else factor)
    if ms and re.search(r"\bseconds?\b|\bsec\b", sentence, re.I):
        out.append(1 / 1000)
    return tuple(out)


def concept_of_time(metric: str) -> bool:
    toks = metric_tokens(metric)
    return not _token_hit(toks, "step") and any(
        _token_hit(toks, h) for h in ("time", "latency", "duration", "runtime", "clock",
                                      "seconds", "ms"))


_GENERIC_TOKENS = {*_AFFIXES, "test", "val", "valid", "validation", "train", "training",
                   "eval", "evaluation", "per", "total", "num", "rate", "term", "value",
                   "metric", "overall", "inference", "model", "run"}


def own_word_metrics(rec: Recorded) -> dict[str, list[str]]:
    """Words of the metrics' own names that no concept covers (``elbo`` of ``test_elbo``,
    ``bleu``...): the text may name a metric by them."""
    hints = [h for _, _, hs in _CONCEPTS for h in hs]
    out: dict[str, list[str]] = {}
    for metric in rec.metrics:
        for t in metric_tokens(metric):
            if len(t) < 3 or t.isdigit() or t in _GENERIC_TOKENS or any(
                    _token_hit([t], h) for h in hints):
                continue
            out.setdefault(t, [])
            if metric not in out[t]:
                out[t].append(metric)
    return out


def _own_word_hits(rec: Recorded, part: str) -> list[tuple[int, int, list[str]]]:
    hits = []
    for word, metrics in own_word_metrics(rec).items():
        for m in re.finditer(r"(?<![A-Za-z])" + re.escape(word) + r"(?![A-Za-z])", part, re.I):
            hits.append((m.start(), m.end(), metrics))
    return hits


def _nearest(rec: Recorded, part: str, *, from_end: bool) -> list[str]:
    hits: list[tuple[int, int, str]] = []
    for concept, rx, _ in _CONCEPTS:
        for m in rx.finditer(part):
            hits.append((m.start(), m.end(), concept))
    own = _own_word_hits(rec, part)
    if own:
        own.sort(key=lambda h: h[0])
        o = own[-1] if from_end else own[0]
        if not hits or (o[0] > max(h[0] for h in hits) if from_end
                        else o[0] < min(h[0] for h in hits)):
            return _qualify(rec, o[2], part[max(0, o[0] - 30): o[1] + 12])
    if not hits:
        return []
    hits.sort()
    start, end, concept = hits[-1] if from_end else hits[0]
    qual = part[max(0, start - 30): end + 12]
    metrics = _qualify(rec, concept_metrics(rec, concept), qual)
    if not metrics:
        # The concept names no metric of these runs (e.g. "steps" of a setup).
        return []
    return metrics


def claim_matches(rec: Recorded, c: Claim, sentence_claims: list[Claim]) -> bool:
    """Whether the tied claim is a recorded value, a change against the baseline, a
    change between two numbers of its sentence, or a constant of the code."""
    allow_pct = c.percent or c.pct_context or any(
        abs(v.value) <= 1 for v in value_pool(rec, c.metrics, c.datasets, ("mean",)))
    kinds: tuple[str, ...] = ("mean", "average") if c.mean_only else (
        "mean", "average", "seed")
    if c.stderr_context:
        kinds = (*kinds, "stderr")
    pool = value_pool(rec, c.metrics, c.datasets, kinds, c.average)
    hit_runs = {v.run for v in pool if v.kind in ("mean", "average")
                and any(_as_shown(c, v.value * k, allow_pct) for k in c.scales)}
    c.runs = hit_runs
    if hit_runs or any(_as_shown(c, v.value * k, allow_pct) for v in pool for k in c.scales):
        return True
    changes = derived_changes(rec, c.metrics, c.datasets, c.percent, c.average)
    if any(_close(c.value, c.tolerance, d) for d in changes):
        return True
    if len(c.scales) > 1 and not c.percent:  # an absolute change in the printed unit
        absolute = derived_changes(rec, c.metrics, c.datasets, True, c.average, absolute=True)
        if any(_close(c.value, c.tolerance, d * k) for d in absolute for k in c.scales[1:]):
            return True
    if _pair_change(c, sentence_claims):
        return True
    return _constant(rec, c)


def _pair_change(c: Claim, sentence_claims: list[Claim]) -> bool:
    others = [o for o in sentence_claims if o is not c and not o.percent]
    for a, b in combinations(others, 2):
        for d in _changes(a.value, b.value, c.percent):
            slack = c.tolerance + abs(d) * 0.02 + 1e-9
            if abs(d - abs(c.value)) <= slack:
                return True
    return False


def scaled_constant(rec: Recorded, c: Claim) -> bool:
    """The claim is a constant of the code changed by a factor its sentence names."""
    factors = [*c.factors, *(1 / f for f in c.factors)]
    return not c.percent and any(_close(c.value, c.tolerance, k * f)
                                 for k in rec.plain_constants for f in factors)


def _constant(rec: Recorded, c: Claim) -> bool:
    if not c.percent and any(_close(c.value, c.tolerance, k) for k in rec.constants):
        return True
    if scaled_constant(rec, c):
        return True
    if c.percent or c.pct_context:  # a constant fraction as a percentage (not products)
        return any(abs(k) <= 1 and _close(c.value, c.tolerance, k * 100)
                   for k in rec.plain_constants)
    return False


def describe_values(rec: Recorded, c: Claim, limit: int = 6) -> str:
    pool = value_pool(rec, c.metrics, c.datasets, ("mean",))
    shown = [f"{v.value:.4g} (run {v.run}{', ' + v.dataset if v.dataset else ''})"
             for v in pool[:limit]]
    more = f", ... {len(pool) - limit} more" if len(pool) > limit else ""
    return ", ".join(shown) + more


def unmatched_finding(tex: TexText, rec: Recorded, c: Claim) -> Finding:
    where = f"{tex.path_name}:{tex.line_of(c.start)}"
    what = "/".join(c.metrics[:3]) + (f" on {', '.join(c.datasets)}" if c.datasets else "")
    return Finding(
        "unmatched_number",
        f"'{c.raw}' is not a recorded value of {what} in any run, nor a change against the "
        f"baseline (recorded: {describe_values(rec, c)})",
        where, tex.context(c.start, c.end), c.raw)


def untied_finding(tex: TexText, c: Claim) -> Finding:
    return Finding(
        "untied_number",
        f"'{c.raw}' names no metric the check could tie it to and matches no value in the "
        "runs, logs or experiment code", f"{tex.path_name}:{tex.line_of(c.start)}",
        tex.context(c.start, c.end), c.raw, SEVERITY_LOW)


# -- direction claims on explicit pairs -------------------------------------------------------

_UP = re.compile(r"\b(increas\w*|higher|rais\w*|rises?|rose|grew|grows?|larger|more|greater)\b",
                 re.I)
_DOWN = re.compile(r"\b(reduc\w*|decreas\w*|lower\w*|drops?|dropped|fell|falls?|fewer|smaller|"
                   r"declin\w*|cuts?|shrink\w*|less)\b", re.I)
_GOOD = re.compile(r"\b(improv\w*|better|outperform\w*|gains?|boost\w*|speed-?ups?|faster|"
                   r"superior|surpass\w*|beats?|advantage|benefit\w*)\b", re.I)
_BAD = re.compile(r"\b(wors\w*|degrad\w*|hurts?|deteriorat\w*|slower|regress\w*|inferior|"
                  r"underperform\w*|penalty)\b", re.I)
_NEGATION = re.compile(r"\b(not|no|never|fails?|failed|without|neither|nor|cannot|"
                       r"\w+n't)\b", re.I)
_FROM_BEFORE = re.compile(r"\bfrom\s*\$?\s*$", re.I)
_TO_BETWEEN = re.compile(r"^[\s$]*(?:\)|\})?[\s$]*(?:to|\\to|\\rightarrow|→|->)[\s$~]*"
                         r"(?:only\s+|just\s+|about\s+|around\s+)?$", re.I)
_COMPARE_BETWEEN = re.compile(r"\b(?:compared\s+(?:to|with)|vs\.?|versus|relative\s+to|"
                              r"against|than|over|instead\s+of)\b", re.I)


_CLAUSE_BREAK = re.compile(r";|,\s*(?:and|but|while|whereas|although|though|yet)\b|"
                           r"\b(?:while|whereas|but|although|though|however)\b", re.I)
_CONTRAST = re.compile(r"\b(?:while|whereas|but|although|though|however|yet)\b", re.I)
_COST = re.compile(r"\b(?:cost(?:s|ing)?|price|expense|overhead|penalty|trade-?offs?)\b", re.I)
"""A number described as the price paid (more time, lower throughput) is not a claimed
improvement: only its explicit up/down words are checked."""


def clause_span(text: str, sent: tuple[int, int], start: int, end: int) -> tuple[int, int]:
    """The clause of ``text[start:end]`` within the sentence: up to the nearest ";",
    ", and", "while", "but"... on either side."""
    lo, hi = sent
    for m in _CLAUSE_BREAK.finditer(text, sent[0], sent[1]):
        if m.end() <= start:
            lo = m.end()
        elif m.start() >= end:
            hi = m.start()
            break
    return lo, hi


@dataclass(frozen=True)
class Direction:
    up: bool
    down: bool
    good: bool
    bad: bool
    text: str
    """The words the direction was read from (the clause, or the sentence up to it)."""

    def any(self) -> bool:
        return self.up or self.down or self.good or self.bad


def direction_of(text: str, sent: tuple[int, int], start: int, end: int,
                 inherit: bool = True) -> Direction:
    """The direction words that govern ``text[start:end]``: those of its clause; with
    ``inherit``, a clause without any (the elided verb of "and on enwik8 from 1.00 to
    0.99") shares the words of the clauses before it unless a contrast ("while", "but")
    separates them. In a clause that speaks of a cost, "better"/"worse" words describe
    something else."""
    lo, hi = clause_span(text, sent, start, end)
    part = text[lo:hi]

    def read(t: str) -> Direction:
        cost = bool(_COST.search(t))
        return Direction(bool(_UP.search(t)), bool(_DOWN.search(t)),
                         not cost and bool(_GOOD.search(t)), not cost and bool(_BAD.search(t)),
                         t)

    d = read(part)
    if inherit and not d.any() and lo > sent[0] and not _CONTRAST.search(text, sent[0], lo):
        d = read(text[sent[0]:hi])
    return d


@dataclass(frozen=True)
class Pair:
    first: Claim
    second: Claim
    kind: str
    """change (from first to second) | compare (first against second)"""


def explicit_pairs(tex: TexText, claims: list[Claim]) -> list[Pair]:
    text = tex.masked
    out: list[Pair] = []
    claims = [c for c in claims if not c.factor]
    for a, b in zip(claims, claims[1:], strict=False):
        between = text[a.end:b.start]
        if len(between) > 80 or a.percent != b.percent:
            continue
        if _FROM_BEFORE.search(text[max(0, a.start - 12):a.start]) and _TO_BETWEEN.match(
                between):
            out.append(Pair(a, b, "change"))
        elif _COMPARE_BETWEEN.search(between) and "," not in between.split("than")[0][-3:]:
            out.append(Pair(a, b, "compare"))
    return out


def pair_direction_findings(tex: TexText, rec: Recorded, sent: tuple[int, int],
                            claims: list[Claim]) -> list[Finding]:
    sentence = tex.masked[sent[0]:sent[1]]
    if _NEGATION.search(sentence):
        return []
    for p in explicit_pairs(tex, claims):
        d = direction_of(tex.masked, sent, p.first.start, p.second.end,
                         inherit=p.kind == "change")
        up, down, good, bad = d.up, d.down, d.good, d.bad
        if not d.any():
            continue
        metrics = (p.first.metrics or p.second.metrics or metrics_named(rec, d.text)
                   or _metrics_holding(rec, p.first, p.second))
        dirs = {rec.lib(m) for m in metrics}
        lib = dirs.pop() if len(dirs) == 1 else None
        a, b = p.first.value, p.second.value
        # "new" is the value the claim is about: the second of a change, the first of a
        # comparison.
        new, old = (b, a) if p.kind == "change" else (a, b)
        problem = ""
        if up != down:
            if up and not new > old:
                problem = f"claims an increase but {_fmt(new)} is not above {_fmt(old)}"
            elif down and not new < old:
                problem = f"claims a decrease but {_fmt(new)} is not below {_fmt(old)}"
        if not problem and good != bad and lib is not None:
            better = new < old if lib else new > old
            if good and not better:
                problem = (f"claims an improvement but {_fmt(new)} is not better than "
                           f"{_fmt(old)} ({'lower' if lib else 'higher'} is better for "
                           f"{'/'.join(metrics[:2])})")
            elif bad and better:
                problem = (f"claims a degradation but {_fmt(new)} is better than {_fmt(old)} "
                           f"({'lower' if lib else 'higher'} is better)")
        if not problem and p.kind == "change" and _OURS.search(sentence) and not \
                _FROM_BASELINE.search(sentence):
            problem = _swapped(rec, p, metrics)
        if problem:
            return [Finding("wrong_direction", problem,
                            f"{tex.path_name}:{tex.line_of(p.first.start)}",
                            " ".join(sentence.split())[:300],
                            f"{p.first.raw} .. {p.second.raw}")]
    return []


_FROM_BASELINE = re.compile(r"\b(?:baseline|revert\w*|remov\w*|without|ablat\w*|replac\w*|"
                            r"switch\w*|disabl\w*|going\s+back|instead|plain|vanilla)\b", re.I)
"""Words of a sentence whose change may well run from the method to another run."""


def _swapped(rec: Recorded, p: Pair, metrics: list[str]) -> str:
    """The method's change given from its own value to the baseline's ("our schedule
    reduces the loss from 0.9823 to 0.9801" where 0.9801 is the baseline's)."""
    if rec.final == rec.baseline:
        return ""
    datasets: list[str | None] = [*rec.datasets] or [None]
    for d in datasets:
        for metric in metrics or rec.metrics:
            mine, base = rec.get(rec.final, d, metric), rec.get(rec.baseline, d, metric)
            if mine is None or base is None or mine == base:
                continue
            a, b = p.first, p.second
            if (_close(a.value, a.tolerance, mine) and _close(b.value, b.tolerance, base)
                    and not _close(a.value, a.tolerance, base)
                    and not _close(b.value, b.tolerance, mine)):
                return (f"the change runs from the final run's {metric}"
                        + (f" on {d}" if d else "") + f" ({_fmt(mine)}) to the baseline's "
                        f"({_fmt(base)}): the method went from {_fmt(base)} to {_fmt(mine)}")
    return ""


def _metrics_holding(rec: Recorded, a: Claim, b: Claim) -> list[str]:
    """The metrics of which both numbers are recorded means (a pair that names no metric:
    "1.466 compared to the baseline's 1.465")."""
    out = []
    for metric in rec.metrics:
        means = [v.value for v in rec.values if v.metric == metric and v.kind == "mean"]
        if any(_close(a.value, a.tolerance, v) for v in means) and any(
                _close(b.value, b.tolerance, v) for v in means):
            out.append(metric)
    return out


def _fmt(v: float) -> str:
    return f"{v:.6g}"


# -- run attribution ---------------------------------------------------------------------------

_OURS = re.compile(r"\b(?:our|ours|proposed|we\s+achieve|achieves?|final\s+(?:method|model|"
                   r"results?|configuration)|full\s+(?:method|model))\b", re.I)
_NOT_OURS = re.compile(r"\b(?:baseline|ablat\w*|variant|without|intermediate|earlier|initial|"
                       r"first|preliminary|previous|prior|original|default|standard|vanilla|"
                       r"compared|versus|vs|than|from|instead|against|relative)\b", re.I)
_BEST = re.compile(r"\bbest[\s-]+(?:run|configuration|variant|setting|model|results?|performing)\b",
                   re.I)


def attribution_findings(tex: TexText, rec: Recorded, sent: tuple[int, int],
                         claims: list[Claim]) -> list[Finding]:
    sentence = tex.masked[sent[0]:sent[1]]
    if len(rec.runs) < 2 or not _OURS.search(sentence) or _NOT_OURS.search(sentence):
        return []
    allowed = {rec.final}
    if _BEST.search(sentence):
        allowed |= set(rec.runs)
    for c in claims:
        if c.metrics and c.runs and not (c.runs & allowed):
            return [Finding(
                "intermediate_result",
                f"'{c.raw}' is presented as the method's result but is the value of run "
                f"{', '.join(map(str, sorted(c.runs)))}, not of the final run {rec.final}",
                f"{tex.path_name}:{tex.line_of(c.start)}", tex.context(c.start, c.end), c.raw)]
    return []


# -- "consistently" claims -----------------------------------------------------------------

_CONSISTENT = re.compile(r"\b(?:consistent(?:ly)?|always|uniformly|invariably|without\s+exception|"
                         r"(?:in|on|across|for)\s+(?:all|every|each)(?:\s+of)?(?:\s+the)?"
                         r"(?:\s+\w+)?\s+(?:datasets?|tasks?|benchmarks?|settings?|"
                         r"distributions?|operations?|environments?|games?|domains?|"
                         r"problems?|splits?|languages?|corpora|cases))\b", re.I)
_EVERY_DATASET = re.compile(r"\b(?:all|every|each)(?:\s+of)?(?:\s+the)?(?:\s+(?P<n>\d+|two|three|"
                            r"four|five|six|seven|eight|nine|ten))?(?:\s+\w+)?\s+(?:datasets?|"
                            r"tasks?|benchmarks?|environments?|domains?|corpora)\b", re.I)
"""A claim about every dataset ("on all three datasets"): it covers the ones it does
not name, and its number must be the number of datasets the runs recorded."""
_OF_NAME = re.compile(r"\s*(?:of|in|from)\s+(?:the\s+)?[A-Z]")
_COUNT_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10}
_UNIVERSAL_JOIN = re.compile(
    r"\band\s+(?:also\s+)?(?=(?:consistently|always|uniformly|invariably)\b)", re.I)
"""Where a second claim about every case starts ("... and also always needs ...")."""
_ALL_OTHERS = re.compile(r"\ball\s+(?:other\s+)?(?:variants|methods|configurations|runs|"
                         r"alternatives|settings|approaches)\b", re.I)


# -- significance ----------------------------------------------------------------------------

P_VALUE = re.compile(r"(?:(?<![A-Za-z])p|\\alpha)\s*\$?\s*(?P<op><|\\leq?|\\le|≤|=|>|\\geq?|≥)\s*\$?"
                     r"\s*(?P<p>0?\.\d+)|\bsignificance\s+(?:level|threshold)\s+(?:of\s+)?\$?\s*"
                     r"(?:\\alpha\s*=\s*)?(?P<level>0?\.\d+)", re.I)
"""A p-value or significance level ("p < 0.01", "a significance level of 0.05"): a test's
number, not a recorded result."""
_FUTURE = re.compile(r"\b(?:future|will|would|could|should|plan(?:s|ned)?|left|leave|intend)\b",
                     re.I)
_SIGNIFICANCE = re.compile(
    r"\b(?:statistically\s+significant(?:ly)?|significan(?:t|tly)|significance\s+tests?|"
    r"p[\s-]*values?|t-tests?|"
    r"Wilcoxon|Mann[\s-]+Whitney)\b|(?<![A-Za-z])p\s*\$?\s*(?:<|\\leq?|\\le|≤|=)\s*\$?\s*0?\.\d+",
    re.I)
_LOOSE_SIGNIFICANCE = re.compile(r"^significan(?:t|tly)$", re.I)
"""A bare "significantly" may only mean "by much"; with more than one seed it is not
held to a test, and it is a claim at all only next to a comparison."""
_COMPARED = re.compile(
    r"\s*(?:\w+\s+){0,2}?(?:better|worse|outperform\w*|improv\w*|lower\w*|higher|faster|"
    r"slower|reduc\w*|increas\w*|decreas\w*|gains?|drops?|differ\w*|boost\w*|degrad\w*|"
    r"surpass\w*|beats?|exceed\w*)\b", re.I)
_COMPARED_BEFORE = re.compile(r"\b(?:outperform\w*|improv\w*|reduc\w*|lower\w*|increas\w*|"
                              r"decreas\w*|better|worse|differ\w*|beats?)\s+(?:\w+\s+){0,3}$",
                              re.I)
SIGNIFICANCE_SE = 2.0
"""A difference within this many standard errors (of the two means combined) is not a
statistically significant one."""


def significance_findings(tex: TexText, rec: Recorded, sent: tuple[int, int]) -> list[Finding]:
    """A significance claim the runs cannot carry: one seed per result (no variance to
    test against: one value per seed list, or every standard error 0), or, for an explicit
    test ("statistically significant", "p < 0.01"), a difference within two standard
    errors."""
    sentence = tex.masked[sent[0]:sent[1]]
    if len(rec.runs) < 2 or _NEGATION.search(sentence) or _FUTURE.search(sentence) or \
            "cite" in tex.original[sent[0]:sent[1]]:
        return []
    if any(float(p.group("p")) >= 0.05 and p.group("op") in ("=", ">", "\\geq", "\\ge", "≥")
           for p in P_VALUE.finditer(tex.original, sent[0], sent[1]) if p.group("p")):
        return []  # the text reports a test that found no significance ("p = 0.41")
    for m in _SIGNIFICANCE.finditer(sentence):
        if _LOOSE_SIGNIFICANCE.match(m.group(0)) and not (
                _COMPARED.match(sentence, m.end())
                or _COMPARED_BEFORE.search(sentence[:m.start()])):
            continue  # "a significant fraction of the time": not a comparison
        a, b = clause_span(tex.masked, sent, sent[0] + m.start(), sent[0] + m.end())
        clause = tex.masked[a:b]
        datasets: list[str | None] = [*(datasets_named(rec, clause)
                                         or datasets_named(rec, sentence) or rec.datasets)]
        datasets = datasets or [None]
        metrics = (metrics_named(rec, clause) or metrics_named(rec, sentence)
                   or [mm for mm in rec.metrics if rec.lib(mm) is not None])
        loose = bool(_LOOSE_SIGNIFICANCE.match(m.group(0)))
        # Of the datasets and metrics the words leave open, the claim holds if any could
        # carry it: it is judged only when none can.
        judged = [(d, problem) for d in datasets for metric in metrics
                  if (problem := _significance_problem(rec, d, metric, loose)) is not None]
        if judged and all(problem for _, problem in judged):
            d, problem = judged[0]
            return [Finding(
                "unsupported_analysis", f"'{m.group(0)}'" + (f" on {d}" if d else "")
                + f" but {problem}", f"{tex.path_name}:{tex.line_of(sent[0] + m.start())}",
                " ".join(sentence.split())[:300], m.group(0))]
    return []


def _significance_problem(rec: Recorded, dataset: str | None, metric: str,
                          loose: bool) -> str | None:
    """Why the final run's difference from the baseline cannot be significant ("" when
    it can be; None when the runs do not record both means)."""
    runs = (rec.final, rec.baseline)

    def of(run: int, kind: str) -> list[float]:
        return [v.value for v in rec.values
                if v.run == run and v.dataset == dataset and v.metric == metric and v.kind == kind]

    means = [rec.get(r, dataset, metric) for r in runs]
    if None in means or means[0] == means[1]:
        return None
    seeds = [len(of(r, "seed")) for r in runs]
    ses = [of(r, "stderr") for r in runs]
    if all(seeds) and min(seeds) == 1:
        return f"{metric} has one seed per run: there is no variance to test a difference against"
    if not any(seeds) and all(ses) and not any(x for s in ses for x in s):
        return (f"every standard error of {metric} is 0 (one seed per run): there is no "
                "variance to test a difference against")
    if loose or not all(ses):
        return ""
    se = math.sqrt(ses[0][0] ** 2 + ses[1][0] ** 2)
    diff = abs(means[0] - means[1])  # type: ignore[operator]
    if se and diff < SIGNIFICANCE_SE * se:
        return (f"the difference in {metric} ({diff:.4g}) is within {SIGNIFICANCE_SE:g} "
                f"standard errors ({se:.4g}) of the final run and the baseline")
    return ""


def dataset_count_findings(tex: TexText, rec: Recorded, sent: tuple[int, int]) -> list[Finding]:
    """"On all four datasets" when the runs recorded three (a sentence citing another
    paper may speak of that paper's datasets)."""
    sentence = tex.masked[sent[0]:sent[1]]
    before = tex.original[max(0, sent[0] - 400):sent[0]].rstrip().removesuffix(".")
    if not rec.datasets or "\\cite" in tex.original[sent[0]:sent[1]] or _FUTURE.search(
            sentence) or "\\cite" in before[before.rfind(".") + 1:]:
        return []  # about another paper (cited here or just before), or planned work
    for m in _EVERY_DATASET.finditer(sentence):
        if _OF_NAME.match(sentence, m.end()):
            continue  # "all nine tasks of GLUE"
        word = (m.group("n") or "").lower()
        n = int(word) if word.isdigit() else _COUNT_WORDS.get(word, 0)
        if n > len(rec.datasets):
            return [Finding(
                "overclaim", f"'{m.group(0)}' but the runs recorded {len(rec.datasets)} "
                f"dataset(s): {', '.join(rec.datasets[:6])}",
                f"{tex.path_name}:{tex.line_of(sent[0] + m.start())}",
                " ".join(sentence.split())[:300], m.group(0))]
    return []


def consistency_findings(tex: TexText, rec: Recorded, sent: tuple[int, int]) -> list[Finding]:
    """A claim that holds everywhere ("consistently", "always", "on all datasets") judged
    on every dataset. Two such claims joined by "and" ("consistently improves accuracy
    and also always needs fewer epochs") are judged apart: one that holds does not carry
    the other."""
    bounds = [sent[0], *(sent[0] + j.start() for j in
                         _UNIVERSAL_JOIN.finditer(tex.masked[sent[0]:sent[1]])), sent[1]]
    for piece in itertools.pairwise(bounds):
        found = _consistency_in(tex, rec, piece)
        if found:
            return found
    return []


def _consistency_in(tex: TexText, rec: Recorded, sent: tuple[int, int]) -> list[Finding]:
    sentence = tex.masked[sent[0]:sent[1]]
    m = _CONSISTENT.search(sentence)
    if not m or len(rec.datasets) < 2 or len(rec.runs) < 2 or _NEGATION.search(sentence):
        return []
    cost = _COST.search(sentence, m.end())
    if cost:  # "consistent gains ... at a modest cost in training time": the cost is apart
        sentence = sentence[:cost.start()]
    good, bad = bool(_GOOD.search(sentence)), bool(_BAD.search(sentence))
    up, down = bool(_UP.search(sentence)), bool(_DOWN.search(sentence))
    if good == bad and up == down:
        return []
    metrics = metrics_named(rec, sentence) or [mm for mm in rec.metrics
                                                if rec.lib(mm) is not None]
    if good != bad:
        metrics = [mm for mm in metrics if rec.lib(mm) is not None]
    if not metrics:
        return []
    others = ([r for r in rec.runs if r != rec.final] if _ALL_OTHERS.search(sentence)
              else [rec.baseline])
    others = [r for r in others if r != rec.final]
    # "consistently ... on all three datasets" covers the ones the sentence does not name
    a, b = clause_span(tex.masked, sent, sent[0] + m.start(), sent[0] + m.end())
    every = _EVERY_DATASET.search(tex.masked, a, b)
    named = [] if every else datasets_named(rec, sentence)
    for d in named or rec.datasets:
        for other in others:
            verdicts = []
            for metric in metrics:
                mine, theirs = rec.get(rec.final, d, metric), rec.get(other, d, metric)
                if mine is None or theirs is None:
                    continue
                if good != bad:
                    lib = rec.lib(metric)
                    better = mine < theirs if lib else mine > theirs
                    verdicts.append(better == good)
                else:
                    verdicts.append((mine > theirs) == up)
            if verdicts and not any(verdicts):
                return [Finding(
                    "overclaim",
                    f"'{m.group(0)}' but on {d} the final run {rec.final} is not "
                    f"{'better' if good else 'worse' if bad else 'higher' if up else 'lower'}"
                    f" than run {other} on {'/'.join(metrics[:2])}",
                    f"{tex.path_name}:{tex.line_of(sent[0] + m.start())}",
                    " ".join(sentence.split())[:300], m.group(0))]
    return []
