"""The integrity check on the planted-flaw corpus: recall and false-flag floors, and the
pieces the corpus leans on (metric direction precedence, code constants)."""

from __future__ import annotations

from aisci.engine.paper.integrity_checks import extract_numbers
from aisci.engine.paper.integrity_claims import code_constants, metric_lower_is_better
from aisci.engine.paper.texscan import prose_text
from support.integrity_corpus import ACCEPTED, papers, score

RECALL_FLOOR = 0.93
FALSE_FLAG_CEILING = 0.04


def test_recall_and_false_flags_on_the_corpus():
    s = score(papers(held_out=False))
    assert sum(s.flaws.values()) >= 60
    assert s.recall >= RECALL_FLOOR, s.missed
    assert s.false_rate <= FALSE_FLAG_CEILING, [f.render() for _, f in s.false]


def test_corpus_size_and_classes():
    everything = score(papers())
    assert len(papers()) >= 8 and len(papers(held_out=True)) >= 2
    assert sum(everything.flaws.values()) >= 80
    assert set(everything.flaws) == set(ACCEPTED)  # every class planted


def test_clean_control_paper_has_no_findings():
    clean = [d for d in papers() if d.name.startswith("clean_")]
    assert len(clean) >= 2
    s = score(clean)
    assert s.findings == 0, [f.render() for _, f in s.false]


def test_metric_direction_precedence_and_affixes():
    assert metric_lower_is_better("step_val_acc_99") is True  # steps, not accuracy
    assert metric_lower_is_better("final_loss_mean") is True
    assert metric_lower_is_better("final_val_acc") is False
    assert metric_lower_is_better("avg_inference_tokens_per_second_mean") is False
    assert metric_lower_is_better("total_train_time") is True
    assert metric_lower_is_better("mystery") is None
    # Template metadata first, tolerant of the reference system's _mean suffix.
    assert metric_lower_is_better("best_val_score_mean", ["best_val_score"], []) is True
    assert metric_lower_is_better("val_acc", [], ["final_val_acc"]) is False


def test_setup_numbers_from_code_constants():
    consts = code_constants("p = 97\nlr = 1e-3\nfactor = 0.5\n")
    # Two sizes multiply (p x p examples); a constant times a small factor does not (a
    # halved rate is accepted only where the sentence says "halved").
    assert 9409 in consts and not any(abs(c - 5e-4) < 1e-12 for c in consts)


def test_negative_numbers_keep_their_sign():
    tex = prose_text("p.tex", "\\begin{document}\nfrom $-98.3$ to -104.2 and GPT-2 and "
                              "10-20 and 3{,}000\n\\end{document}\n")
    values = [c.value for c in extract_numbers(tex)]
    assert -98.3 in values and -104.2 in values and 20 in values and -20 not in values
