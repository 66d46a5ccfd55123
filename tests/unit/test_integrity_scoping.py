"""The integrity check on papers it was not tuned on: what a number, a direction word or
a setting is about (its clause, its dataset, its unit), and the leftovers a paper must
not ship (placeholders, file names). Each false-positive test has a flawed twin that
must still be caught."""

from __future__ import annotations

import json
from pathlib import Path

from aisci.engine.paper.integrity_checks import scan
from aisci.engine.paper.integrity_claims import code_constants
from aisci.engine.paper.texscan import body_bounds, strip_comments

# run -> dataset -> (val_loss, train_time_s, tokens_per_second, per-seed val losses)
RUNS = {
    0: {"tinystories_word": (2.3410, 612.0, 950.4, [2.3388, 2.3402, 2.3440]),
        "wikitext": (3.1020, 5410.0, 870.2, None)},
    1: {"tinystories_word": (2.2980, 655.0, 910.8, [2.2901, 2.3011, 2.3028]),
        "wikitext": (3.1150, 5702.0, 835.0, None)},
}
CODE = ("import torch\nbatch_size = 48\nblock_size = 128\nlearning_rate = 6e-4\n"
        "n_layer = 4\nmax_iters = 3000\n\n@torch.no_grad()\ndef evaluate():\n    pass\n")


def folder(tmp_path: Path, body: str, *, notes: str = "") -> Path:
    d = tmp_path / "paper"
    for run, by_ds in RUNS.items():
        info = {}
        for ds, (vl, tt, tps, seeds) in by_ds.items():
            info[ds] = {"means": {"best_val_loss_mean": vl, "total_train_time_mean": tt,
                                  "tokens_per_second_mean": tps}}
            if seeds:
                info[ds]["final_info_dict"] = {"best_val_loss": seeds}
        (d / f"run_{run}").mkdir(parents=True)
        (d / f"run_{run}" / "final_info.json").write_text(json.dumps(info))
    (d / "experiment.py").write_text(CODE)
    if notes:
        (d / "notes.txt").write_text(notes)
    (d / "latex").mkdir()
    (d / "latex" / "template.tex").write_text(
        "\\documentclass{article}\n\\title{A Study}\n\\begin{document}\n" + body
        + "\n\\end{document}\n")
    return d


def findings(tmp_path: Path, body: str, **kw: str) -> list[str]:
    res = scan(folder(tmp_path, body, **kw), "latex/template.tex")
    return [f"{f.kind} {f.quote}" for f in res.findings if f.severity == "error"]


def everything(tmp_path: Path, body: str) -> list[str]:
    res = scan(folder(tmp_path, body), "latex/template.tex")
    return [f"{f.kind} {f.quote}" for f in res.findings]


TABLE = r"""
\begin{table}[t]
\caption{Best validation loss (lower is better).}
\begin{tabular}{lcc}
\toprule
Method & %s & WikiText \\
\midrule
Baseline & %s & %s \\
Ours & %s & %s \\
\bottomrule
\end{tabular}
\end{table}
"""


def test_methods_by_datasets_table_with_the_metric_in_the_caption(tmp_path):
    for header in ("TinyStories", "tinystories\\_word"):
        body = TABLE % (header, "2.3410", "3.1020", "2.2980", "3.1150")
        assert everything(tmp_path / header[:4], body) == []
    # A wrong cell, and the baseline row holding the method's values, are still caught.
    wrong = findings(tmp_path / "w", TABLE % ("TinyStories", "2.3410", "3.1020", "2.2780",
                                              "3.1150"))
    assert wrong == ["unmatched_number 2.2780"]
    swapped = findings(tmp_path / "s", TABLE % ("TinyStories", "2.2980", "3.1150", "2.2980",
                                                "3.1150"))
    assert [f.split()[0] for f in swapped] == ["intermediate_result"]


def test_each_number_is_tied_to_the_dataset_named_in_its_clause(tmp_path):
    ok = ("Our method lowers the validation loss on TinyStories from 2.3410 to 2.2980, and "
          "on WikiText it is 3.1150 against 3.1020. The validation loss is 1.84\\% lower "
          "on TinyStories and 0.42\\% higher on WikiText.")
    assert findings(tmp_path / "ok", ok) == []
    swapped = "Our validation loss is 3.1150 on TinyStories and 2.2980 on WikiText."
    assert sorted(findings(tmp_path / "bad", swapped)) == [
        "unmatched_number 2.2980", "unmatched_number 3.1150"]


def test_direction_words_govern_their_own_clause_and_a_cost_is_no_improvement(tmp_path):
    ok = ("The gains cost about 7\\% more training time on TinyStories. "
          "The price of this improvement is a 4.2\\% lower throughput on TinyStories. "
          "On TinyStories the validation loss drops from 2.3410 to 2.2980, while the "
          "throughput is worse. Our method gives consistent gains in validation loss on "
          "TinyStories at a small cost in training time.")
    assert findings(tmp_path / "ok", ok) == []
    bad = ("Our method reduces the training time on TinyStories by 7\\%.\n"
           "On TinyStories the throughput improves by 4.2\\%.")
    assert [f.split()[0] for f in findings(tmp_path / "bad", bad)] == [
        "wrong_direction", "wrong_direction"]


def test_times_printed_in_minutes_or_hours(tmp_path):
    ok = ("A WikiText run of our method takes 1.58 hours, about 95 minutes; one TinyStories "
          "run takes 10.9 minutes instead of 10.2 minutes.")
    assert findings(tmp_path / "ok", ok) == []
    assert findings(tmp_path / "bad", "A WikiText run of our method takes 1.75 hours.") == [
        "unmatched_number 1.75"]


def test_seed_lists_and_cited_numbers_are_not_claims(tmp_path):
    body = ("We use three seeds (2024, 2025 and 2026) on TinyStories. A larger model "
            "reaches 1.93 bits per token on a similar corpus \\citep{other2023}.")
    assert everything(tmp_path, body) == []
    # Without the citation the same number is still reported as untied.
    assert everything(tmp_path / "u", "A larger model reaches 1.93 bits per token.") == [
        "untied_number 1.93"]


def test_code_constants_do_not_explain_doubled_or_halved_settings(tmp_path):
    consts = code_constants("batch_size = 48\nblock_size = 128\nmult = 2\nlr = 6e-4\n")
    assert 48 * 128 in consts  # tokens per batch: two sizes
    assert 96 not in consts and 3e-4 not in consts and 24 not in consts  # x2, /2
    ok = ("We train for 3000 iterations with a batch size of 48, a context of 128 tokens, "
          "a learning rate of $6 \\times 10^{-4}$ and 4 layers; a batch holds 6144 tokens.")
    assert findings(tmp_path / "ok", ok) == []
    bad = ("We train for 6000 iterations with a batch size of 96, a learning rate of "
           "$1.2 \\times 10^{-3}$ and 8 layers.")
    assert len(findings(tmp_path / "bad", bad)) == 4
    # A variant the sentence describes as one, or a value the notes record, is not a claim
    # about the final code; a factor the sentence names is.
    variants = ("Increasing the batch size to 96 did not help. The learning rate is halved "
                "to $3 \\times 10^{-4}$ after warm-up.")
    assert findings(tmp_path / "v", variants) == []
    assert findings(tmp_path / "n", "We use a batch size of 64.",
                    notes="Run 1: batch size 64 instead of 48\n") == []


def test_an_ablation_needs_runs_that_show_one(tmp_path):
    body = "We performed an ablation removing the gating, which raised the loss."
    assert [f.split()[0] for f in findings(tmp_path / "a", body)] == ["unsupported_analysis"]
    shown = findings(tmp_path / "b", body, notes="Run 1: ablation without the gating\n")
    assert shown == []


def test_a_mean_over_seeds_is_not_one_seed(tmp_path):
    assert findings(tmp_path / "ok", "Averaged over three seeds, our method reaches a "
                    "validation loss of 2.2980 on TinyStories.") == []
    assert findings(tmp_path / "bad", "Averaged over three seeds, our method reaches a "
                    "validation loss of 2.2901 on TinyStories.") == ["unmatched_number 2.2901"]
    assert findings(tmp_path / "seed", "Our best seed reaches a validation loss of 2.2901 "
                    "on TinyStories.") == []


def test_pipeline_file_names_in_any_spelling(tmp_path):
    body = ("Numbers come from final\\_info.json and\n\\texttt{final\\_info.json}, the code "
            "from experiment.py.")
    got = findings(tmp_path, body)
    assert got == ["process_jargon final\\_info.json", "process_jargon final\\_info.json",
                   "process_jargon experiment.py"]


def test_placeholders_and_independent_runs(tmp_path):
    body = ("TODO: describe WikiText. Our method improves the loss by XX\\% (Table ??). "
            "Lorem ipsum dolor sit amet. All results are averaged over 5 independent runs.")
    got = findings(tmp_path, body)
    assert [g for g in got if g.startswith("placeholder")] == [
        "placeholder TODO", "placeholder XX\\%", "placeholder ??", "placeholder Lorem ipsum"]
    assert "unmatched_number 5 independent runs" in got
    assert findings(tmp_path / "ok", "All results are averaged over 3 independent runs. "
                    "We ran 2 runs of the method after the baseline.") == []


def test_settings_in_other_units_words_or_papers(tmp_path):
    ok = ("We train for 3000 steps with a learning rate of 0.06\\% and train for 2 epochs of "
          "warm-up data. A 12-layer model with 16 heads reaches 1.93 bits per token "
          "\\citep{big2023}.")
    assert findings(tmp_path / "ok", ok) == []
    assert findings(tmp_path / "bad", "We train for 4000 steps.") == [
        "unmatched_number train for 4000"]


def test_datasets_listed_apart_from_their_numbers_pair_in_order(tmp_path):
    ok = ("On TinyStories and WikiText our method reaches a validation loss of 2.2980 and "
          "3.1150. Averaged over "
          "seeds the loss on TinyStories is 2.2980, with seeds ranging from 2.2901 to 2.3028.")
    assert findings(tmp_path / "ok", ok) == []
    swapped = ("On TinyStories and WikiText our method reaches a validation loss of 3.1150 "
               "and 2.2980.")
    assert len(findings(tmp_path / "bad", swapped)) == 2


def test_numbers_defined_in_macros_are_read_where_they_are_printed(tmp_path):
    ok = ("\\newcommand{\\ourloss}{2.2980}\\def\\gain{0.043}Our method reaches a validation "
          "loss of \\ourloss{} on TinyStories, \\gain{} below the baseline.")
    assert findings(tmp_path / "ok", ok) == []
    bad = "\\newcommand{\\ourloss}{2.2811}Our method reaches a validation loss of \\ourloss."
    assert findings(tmp_path / "bad", bad) == ["unmatched_number 2.2811"]


def test_a_factor_is_a_ratio_of_two_runs(tmp_path):
    ok = ("On TinyStories our method takes 1.07$\\times$ the baseline's training time. "
          "We use $64 \\times 64$ tiles.")
    assert findings(tmp_path / "ok", ok) == []
    assert findings(tmp_path / "bad", "Our method trains 2.5$\\times$ faster than the "
                    "baseline on TinyStories.") == ["unmatched_number 2.5"]
    assert findings(tmp_path / "times", "Our method trains 2.5 times faster.") == [
        "unmatched_number 2.5"]


def test_figure_and_table_numbers_beyond_the_paper(tmp_path):
    floats = ("\\begin{figure}\\caption{Loss.}\\end{figure}"
              "\\begin{table}\\caption{Loss.}\\end{table}")
    ok = floats + "Figure 1 and Table 1 show it; Figure 4 of \\citet{other} shows theirs."
    assert findings(tmp_path / "ok", ok) == []
    bad = floats + "As Figure 2 shows, and Table~3 lists, the loss falls."
    assert findings(tmp_path / "bad", bad) == ["missing_figure Figure 2", "missing_table Table~3"]


def test_cite_keys_must_be_in_the_bibliography(tmp_path):
    body = "Warm restarts help \\citep{loshchilov2017, made2024up}.\n\\bibliography{refs}"
    d = folder(tmp_path, body)
    assert [f.kind for f in scan(d, "latex/template.tex").findings] == []  # no .bib to read
    (d / "latex" / "refs.bib").write_text("@inproceedings{loshchilov2017,\n title={SGDR}}\n")
    got = [f"{f.kind} {f.quote}" for f in scan(d, "latex/template.tex").findings]
    assert got == ["missing_citation made2024up"]
    # biblatex resources and a hand-written thebibliography count as well
    (d / "latex" / "template.tex").write_text(
        "\\documentclass{article}\n\\addbibresource{refs.bib}\n\\begin{document}\n"
        "See \\cite{loshchilov2017,hand2020,ghost}.\n\\begin{thebibliography}{9}\n"
        "\\bibitem{hand2020} A. Hand. 2020.\n\\end{thebibliography}\n\\end{document}\n")
    got = [f"{f.kind} {f.quote}" for f in scan(d, "latex/template.tex").findings]
    assert got == ["missing_citation ghost"]


def test_claims_about_every_dataset(tmp_path):
    assert findings(tmp_path / "ok", "Our method lowers the validation loss on TinyStories; "
                    "we evaluate on both datasets.") == []
    assert findings(tmp_path / "count", "We evaluate on all three datasets.") == [
        "overclaim all three datasets"]
    # the sentence names one dataset, but "all datasets" covers WikiText too
    assert findings(tmp_path / "all", "Our method lowers the validation loss on TinyStories "
                    "and, consistently, on all datasets.") == ["overclaim consistently"]


def test_two_claims_about_every_case_in_one_sentence_are_judged_apart(tmp_path):
    ok = ("Our method consistently lowers the validation loss on TinyStories and always "
          "needs more training time.")
    assert findings(tmp_path / "ok", ok) == []
    # the first claim holds; it must not carry the second, which fails on both datasets
    bad = ("Our method consistently lowers the validation loss on TinyStories and also "
           "always needs less training time.")
    assert findings(tmp_path / "bad", bad) == ["overclaim always"]
    assert findings(tmp_path / "inv", "Our method invariably lowers the training time.") == [
        "overclaim invariably"]
    assert findings(tmp_path / "cases", "In all cases our method raises the training "
                    "time.") == []
    assert findings(tmp_path / "cases2", "In all cases our method lowers the training "
                    "time.") == ["overclaim In all cases"]


def test_a_change_given_from_the_method_to_the_baseline(tmp_path):
    assert findings(tmp_path / "ok", "On WikiText our method raises the validation loss from "
                    "3.1020 to 3.1150.") == []
    assert findings(tmp_path / "rev", "Without our method the validation loss on WikiText "
                    "falls from 3.1150 to 3.1020.") == []
    got = findings(tmp_path / "bad", "On WikiText our method lowers the validation loss from "
                   "3.1150 to 3.1020.")
    assert got == ["wrong_direction 3.1150 .. 3.1020"]


def test_significance_needs_more_than_one_seed_and_a_clear_gap(tmp_path):
    d = folder(tmp_path, "Our method lowers the validation loss on TinyStories, a "
               "statistically significant gain ($p < 0.01$). On WikiText it is significantly better "
               "too, while evaluation takes a significant share of the time.")
    for run, (ts_se, wt_se, ts_mean) in {0: (0.004, 0.0, 2.3410), 1: (0.003, 0.0, 2.2980)}.items():
        info = json.loads((d / f"run_{run}" / "final_info.json").read_text())
        info["tinystories_word"]["means"]["best_val_loss_mean"] = ts_mean
        info["tinystories_word"]["stderrs"] = {"best_val_loss_stderr": ts_se}
        info["wikitext"]["stderrs"] = {"best_val_loss_stderr": wt_se,
                                       "total_train_time_stderr": 0.0,
                                       "tokens_per_second_stderr": 0.0}
        (d / f"run_{run}" / "final_info.json").write_text(json.dumps(info))
    got = [(f.kind, f.quote) for f in scan(d, "latex/template.tex").findings]
    assert got == [("unsupported_analysis", "significantly")], got  # WikiText: one seed
    # TinyStories within two standard errors of the baseline
    info = json.loads((d / "run_1" / "final_info.json").read_text())
    info["tinystories_word"]["means"]["best_val_loss_mean"] = 2.3360
    (d / "run_1" / "final_info.json").write_text(json.dumps(info))
    (d / "latex" / "template.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\nOn TinyStories the gain in validation "
        "loss is statistically significant.\n\\end{document}\n")
    got = [(f.kind, f.quote) for f in scan(d, "latex/template.tex").findings]
    assert got == [("unsupported_analysis", "statistically significant")], got


def test_the_new_checks_stay_quiet_on_correct_prose(tmp_path):
    """Statements the factor, float-number, citation, dataset-count, from/to and
    significance checks must not flag (each was once a false positive)."""
    body = (
        "\\begin{sidewaysfigure}\\caption{Loss.}\\end{sidewaysfigure}"
        "\\begin{table}\\begin{minipage}{.5\\linewidth}\\caption{A.}\\end{minipage}"
        "\\begin{minipage}{.5\\linewidth}\\caption{B.}\\end{minipage}\\end{table}\n"
        "Table 2 lists the losses and Figure 1 plots them. ResNets \\citep[Table~5]{he2016} "
        "and Figure 3 of the SGDR paper show more; see Supplementary Figure 7 of "
        "\\citet{he2016} too.\n\\iffalse \\cite{draft2020} \\fi\n"
        "GLUE \\citep{glue} has nine tasks. A model must solve all nine tasks at once. "
        "In future work we will evaluate on all 9 tasks of GLUE.\n"
        "Replacing our method by the baseline raises the validation loss on WikiText from "
        "3.1150 to 3.1020 at a lower cost. Evaluation takes a significant fraction of the "
        "time. A t-test on TinyStories gives $p = 0.41$, so the gain is not yet "
        "statistically established. All tests use a significance level of 0.05.\n"
        "Our sequences hold 2.67$\\times$ as many items as a batch holds, with $3 \\times 3$ "
        "kernels.\n"
        "\\bibliography{refs}")
    d = folder(tmp_path, body)
    (d / "latex" / "refs.bib").write_text(
        "@string{jmlr = \"JMLR\"}\n@comment{by hand}\n@article(he2016,\n title={ResNet})\n"
        "@article{glue, title={GLUE}}\n")
    assert [f.render() for f in scan(d, "latex/template.tex").findings] == []


def test_switched_off_blocks_are_not_read_but_a_draft_switch_is_no_block():
    text = ("\\documentclass{article}\n\\let\\ifdraft\\iffalse\n\\begin{document}\n"
            "A \\ifdraft x\\fi B\n\\iffalse draft\\else 91.2\\%\\fi\n\\iffalse\nold \\cite{x}\n"
            "\\fi\nC\n\\end{document}\n")
    masked = strip_comments(text)
    assert masked.count("\n") == text.count("\n")
    assert body_bounds(masked)[0] == text.index("\\begin{document}") + len("\\begin{document}")
    assert "91.2" in masked and "old" not in masked and "C" in masked
