"""Writes demo.json, the scripted model of the offline demo (``python make_demo.py``).

The cassette answers the steps the stage modules document (``<stage>/<step>``):
ideation (idea-<k>/round-<r>), novelty (<name>/round-<r>), experiment planning and code
edits through tool calls on the REAL grokking template text, plot edits and figure notes,
the paper (sections, citations, fixes), integrity fixes and the review ensemble with its
meta-review. Answers for ideas 1 and 2 are specific; glob patterns give a generic
answer to any other idea (e.g. one a human approves in the TUI demo).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.literature import Literature
from aisci.engine.literature.bibtex import make_key

OUT = Path(__file__).with_name("demo.json")
BASELINE_NOTE = "Description: the unmodified template (baseline).\n"

IDEAS: list[dict[str, Any]] = [
    {
        "Name": "weight_decay_grokking_speed",
        "Title": "Stronger Decoupled Weight Decay Shortens the Memorisation Phase Before "
                 "Grokking",
        "Experiment": "Keep the reference setup (2-layer transformer, AdamW, 50 warm-up "
                      "steps) and raise the decoupled weight decay from 0.5 (baseline) to "
                      "1.0 and then 2.0. Compare, per dataset, the step at which validation "
                      "accuracy first exceeds 99%, the final validation accuracy and the "
                      "compressed-weight complexity curve.",
        "Interestingness": 7, "Feasibility": 9, "Novelty": 5,
        "novelty": ("grokking weight decay", True,
                    "Omnigrok and the effective-theory paper relate grokking to weight norm "
                    "and weight decay, but none of the retrieved papers reports a controlled "
                    "sweep of decoupled weight decay on the reference datasets measuring the "
                    "onset step together with a compression-based complexity estimate. A "
                    "small, careful replication-style study is still useful."),
        "runs": [
            ("increase weight decay from 0.5 to 1.0",
             [("experiment.py", "WEIGHT_DECAY = 0.5", "WEIGHT_DECAY = 1.0")]),
            ("increase weight decay further to 2.0",
             [("experiment.py", "WEIGHT_DECAY = 1.0", "WEIGHT_DECAY = 2.0")]),
        ],
        "labels": {"run_1": "Weight decay 1.0", "run_2": "Weight decay 2.0"},
    },
    {
        "Name": "label_smoothing_grokking",
        "Title": "Label Smoothing as an Implicit Regulariser for Grokking on Modular "
                 "Arithmetic",
        "Experiment": "Add label smoothing (0.1) to the cross-entropy training loss of the "
                      "reference setup, leaving the optimiser and weight decay unchanged, "
                      "and compare the generalisation step, final validation accuracy and "
                      "weight complexity with the baseline on all four datasets.",
        "Interestingness": 6, "Feasibility": 9, "Novelty": 6,
        "novelty": ("label smoothing grokking generalization", True,
                    "The retrieved grokking papers study weight decay, representation "
                    "formation and data size; none tests label smoothing as the "
                    "regulariser. The question is narrow but open."),
        "runs": [
            ("add label smoothing 0.1 to the training loss",
             [("experiment.py", "WARMUP_STEPS = 50\n",
               "WARMUP_STEPS = 50\nLABEL_SMOOTHING = 0.1  # run 1: smoothed targets\n"),
              ("experiment.py", "        loss = F.cross_entropy(logits, y_tr[idx])",
               "        loss = F.cross_entropy(logits, y_tr[idx], "
               "label_smoothing=LABEL_SMOOTHING)")]),
        ],
        "labels": {"run_1": "Label smoothing 0.1"},
    },
    {
        "Name": "weight_norm_grokking",
        "Title": "Initial Weight Norm Controls When Grokking Happens",
        "Experiment": "Scale the initial weights of the reference transformer by 0.5x, 1x "
                      "and 2x and measure how the generalisation step moves.",
        "Interestingness": 6, "Feasibility": 8, "Novelty": 3,
        "novelty": ("grokking weight norm initialization", False,
                    "Omnigrok (Liu et al., 2023) studies exactly this: grokking as a "
                    "function of the initial weight norm, including on the modular "
                    "arithmetic tasks. The idea is not novel."),
    },
]


def tool(name: str, **arguments: object) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    add = out.append
    # -- ideation: draft, then one reflection that ends with "I am done" -------------------
    for k, idea in enumerate(IDEAS, 1):
        data = {key: idea[key] for key in ("Name", "Title", "Experiment", "Interestingness",
                                           "Feasibility", "Novelty")}
        draft = dict(data, Novelty=min(10, data["Novelty"] + 1))
        add({"match": f"ideate/idea-{k}/round-1",
             "text": "(scripted demo model) A first draft of the idea:\n```json\n"
                     + json.dumps(draft, indent=1) + "\n```"})
        add({"match": f"ideate/idea-{k}/round-2",
             "text": "Reflection: the novelty score was optimistic; lowered it. "
                     "I am done.\n```json\n" + json.dumps(data, indent=1) + "\n```"})
    # -- novelty: one query, then a decision ----------------------------------------------
    for idea in IDEAS:
        query, novel, why = idea["novelty"]
        add({"match": f"novelty/{idea['Name']}/round-1",
             "text": "```json\n" + json.dumps({"Thought": "Search the closest prior work "
                                               "first.", "Query": query}) + "\n```"})
        add({"match": f"novelty/{idea['Name']}/round-2",
             "text": "```json\n" + json.dumps({
                 "Thought": "The results above are enough to decide.",
                 "Decision": "novel" if novel else "not novel", "Rationale": why}) + "\n```"})
    add({"match": "novelty/*/round-*",
         "text": '```json\n{"Decision": "novel", "Rationale": "(scripted) no retrieved paper '
                 'runs this exact experiment."}\n```'})
    # -- experiments: plan, edits via tools, ALL_COMPLETED ----------------------------------
    for idea in IDEAS[:2]:
        name = idea["Name"]
        plan = "\n".join(f"Run {i}: {item}" for i, (item, _) in enumerate(idea["runs"], 1))
        add({"match": f"experiment/{name}/plan/turn-1",
             "text": f"(scripted) The plan, one change per run:\n{plan}"})
        note_anchor = BASELINE_NOTE
        for i, (item, edits) in enumerate(idea["runs"], 1):
            note = f"{note_anchor}\n## Run {i}: {item}\nDescription: {item}.\n"
            calls = [tool("replace_text", path=p, old_text=old, new_text=new)
                     for p, old, new in edits]
            calls.append(tool("replace_text", path="notes.txt", old_text=note_anchor,
                              new_text=note))
            add({"match": f"experiment/{name}/run-{i}/attempt-1/turn-1",
                 "text": f"Implementing run {i}: {item}.", "tool_calls": calls})
            add({"match": f"experiment/{name}/run-{i}/attempt-*/turn-2",
                 "text": f"Run {i} is ready."})
            note_anchor = f"## Run {i}: {item}\nDescription: {item}.\n"
        nxt = len(idea["runs"]) + 1
        add({"match": f"experiment/{name}/run-{nxt}/attempt-*/turn-1",
             "text": "The planned runs answer the question. ALL_COMPLETED"})
        labels = "".join(f'    "{k}": "{v}",\n' for k, v in idea["labels"].items())
        add({"match": f"plot/{name}/plot/attempt-1/turn-1",
             "text": "Naming the runs in the legend.",
             "tool_calls": [tool("replace_text", path="plot.py",
                                 old_text='    "run_0": "Baseline",\n}',
                                 new_text='    "run_0": "Baseline",\n' + labels + "}")]})
        add({"match": f"plot/{name}/plot-notes/turn-1",
             "text": "Describing the figures.",
             "tool_calls": [tool("replace_text", path="notes.txt", old_text=note_anchor,
                                 new_text=note_anchor + (
                                     "\n## Figures\n"
                                     "val_acc_<dataset>.png: validation accuracy over training "
                                     "steps for every run (mean and standard error across "
                                     "seeds).\ntrain_loss_<dataset>.png / val_loss_<dataset>"
                                     ".png: training and validation loss (log scale).\n"
                                     "complexity_<dataset>.png: compressed size of the "
                                     "quantised weights over training.\n"
                                     "steps_to_val_acc_99.png: the first step at which "
                                     "validation accuracy exceeds 99%, per dataset and run.\n"
                                     "In this smoke-scale demo no run reaches 99% validation "
                                     "accuracy, so the figures show early training only.\n"))]})
    # Generic answers for any other idea (scripted: a warm-up change, then stop).
    add({"match": "experiment/*/plan/turn-1",
         "text": "(scripted) Run 1: double the learning-rate warm-up to 100 steps"})
    add({"match": "experiment/*/run-1/attempt-1/turn-1", "text": "Longer warm-up.",
         "tool_calls": [tool("replace_text", path="experiment.py",
                             old_text="WARMUP_STEPS = 50", new_text="WARMUP_STEPS = 100")]})
    add({"match": "experiment/*/run-*/attempt-*/turn-*",
         "text": "Nothing more to change. ALL_COMPLETED"})
    add({"match": "plot/*/plot/attempt-*/turn-*", "text": "plot.py already plots every run."})
    add({"match": "plot/*/plot-notes/turn-*", "text": "The figures are described by plot.py."})
    for idea in IDEAS[:2]:
        out.extend(paper_entries(idea))
    out.extend(review_entries())
    # Generic writeup answers (other ideas): no edits; compile-fix rounds end at once.
    add({"match": "write/*/fix-*", "text": "(scripted) No further changes; the remaining "
                                           "warnings are stylistic."})
    add({"match": "write/*/cite-*/insert/turn-*", "text": "Citations are in place."})
    add({"match": "write/*/cite-*", "text": '```json\n{"done": true}\n```'})
    add({"match": "write/*", "text": "(scripted) Section left as is."})
    add({"match": "integrity/*", "text": "(scripted) The flagged statements were checked."})
    add({"match": "improve/*", "text": "(scripted) No revision."})
    return out


def _search_index(query: str, title_start: str, limit: int = 5) -> tuple[int, str]:
    """Where the offline literature ranks a paper for a query (the demo searches it), and
    the citation key the bibliography code will give it."""
    settings = Settings()
    settings.literature.sources = ["offline"]  # as in the demo lab's aisci.toml
    papers = asyncio.run(Literature(settings, None, None).search(query, limit=limit))
    for i, p in enumerate(papers):
        if p.title.startswith(title_start):
            return i, p.cite_key or make_key(p)
    raise SystemExit(f"offline literature: {title_start!r} not in the results for {query!r}")


def paper_entries(idea: dict[str, Any]) -> list[dict[str, Any]]:
    name, title = idea["Name"], idea["Title"]
    p = PAPERS[name]
    edits = {
        "title-abstract": [("TITLE HERE", title), ("ABSTRACT HERE\n", p["abstract"] + "\n")],
        "introduction": [("INTRO HERE\n", p["intro"] + "\n")],
        # Every anchor is consumed by its edit, so a step re-run after a crash finds
        # nothing to replace instead of inserting the text twice.
        "background": [("the Transformer and AdamW.\n",
                        "the Transformer and AdamW (see the background below).\n\n"
                        "\\section{Background}\n\\label{sec:background}\n"
                        + p["background"] + "\n")],
        "method": [("METHOD HERE\n", p["method"] + "\n")],
        "experimental-setup": [("EXPERIMENTAL SETUP HERE\n", SETUP + "\n")],
        "results": [("RESULTS HERE\n", p["results"] + "\n" + TABLE + "\n" + FIGURE + "\n")],
        "conclusion": [("CONCLUSIONS HERE\n", p["conclusion"] + "\n")],
        "related-work": [("RELATED WORK HERE\n", p["related"] + "\n")],
    }
    out: list[dict[str, Any]] = []
    for slug, pairs in edits.items():
        out.append({"match": f"write/{name}/section-{slug}/draft/turn-1",
                    "text": f"Writing the {slug.replace('-', ' ')} from the notes and results.",
                    "tool_calls": [tool("replace_text", path="latex/template.tex",
                                        old_text=o, new_text=n) for o, n in pairs]})
        out.append({"match": f"write/{name}/section-{slug}/draft/turn-2",
                    "text": "Done with this section."})
    query, title_start, anchor = p["cite"]
    idx, key = _search_index(query, title_start)
    out.append({"match": f"write/{name}/cite-1",
                "text": "```json\n" + json.dumps({"done": False, "query": query,
                                                   "reason": "support the related work"})
                        + "\n```"})
    out.append({"match": f"write/{name}/cite-1/insert/turn-1", "text": "Adding the paper.",
                "tool_calls": [tool("add_citations", indices=[idx])]})
    out.append({"match": f"write/{name}/cite-1/insert/turn-2", "text": "Citing it.",
                "tool_calls": [tool("replace_text", path="latex/template.tex",
                                    old_text=anchor,
                                    new_text=anchor[:-1] + f"~\\citep{{{key}}}.")]})
    out.append({"match": f"write/{name}/cite-1/insert/turn-3", "text": "Done."})
    out.append({"match": f"write/{name}/cite-2",
                "text": '```json\n{"done": true, "reason": "the key prior work is cited"}\n```'})
    out.append({"match": f"write/{name}/refine-paper/turn-1",
                "text": "(scripted) Read the whole paper again: it reports only what the runs "
                        "show. No changes."})
    return out


REVIEW_SCORES = [  # one row per reviewer: (Originality, Quality, Clarity, Significance,
    #              Soundness, Presentation, Contribution, Overall, Confidence, Decision)
    (2, 2, 3, 2, 2, 3, 2, 4, 4, "Reject"),
    (2, 3, 3, 2, 3, 3, 2, 5, 3, "Reject"),
    (3, 2, 3, 2, 2, 3, 2, 4, 4, "Reject"),
    (2, 2, 2, 1, 2, 2, 1, 3, 4, "Reject"),
    (3, 3, 3, 2, 3, 3, 2, 5, 3, "Reject"),
]


def review_json(name: str, row: tuple[Any, ...], summary: str) -> dict[str, Any]:
    keys = ("Originality", "Quality", "Clarity", "Significance", "Soundness",
            "Presentation", "Contribution", "Overall", "Confidence", "Decision")
    data = dict(zip(keys, row, strict=True))
    data.update({
        "Summary": summary,
        "Strengths": ["A clear, controlled change to a well-known setup.",
                      "Figures show every run against the baseline with standard errors."],
        "Weaknesses": ["Smoke-scale training: no run reaches the grokking regime, so the "
                       "central question is not answered.",
                       "Only one seed per dataset at this scale."],
        "Questions": ["How do the results change with the full 7500 updates and 3 seeds?"],
        "Limitations": ["The demo configuration is far too short to observe grokking."],
        "Ethical Concerns": False,
    })
    return data


def review_entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for idea in IDEAS[:2]:
        name = idea["Name"]
        summary = f"The paper studies: {idea['Title']}."
        for k, row in enumerate(REVIEW_SCORES, 1):
            text = ("(scripted reviewer) ```json\n" + json.dumps(review_json(name, row, summary))
                    + "\n```")
            out.append({"match": f"review/{name}/reviewer-{k}", "text": text})
            out.append({"match": f"review/{name}/reviewer-{k}/reflect-*",
                        "text": "I am done. " + text})
        meta = review_json(name, (2, 2, 3, 2, 2, 3, 2, 4, 4, "Reject"), summary)
        out.append({"match": f"review/{name}/meta",
                    "text": "(scripted area chair) ```json\n" + json.dumps(meta) + "\n```"})
    generic = review_json("paper", REVIEW_SCORES[0], "(scripted) A generic review.")
    out.append({"match": "review/*/reviewer-*", "text": "I am done. ```json\n"
                + json.dumps(generic) + "\n```"})
    out.append({"match": "review/*/meta", "text": "```json\n" + json.dumps(generic) + "\n```"})
    return out


SETUP = ("We use the reference grokking setup: modular addition, subtraction and division "
         "modulo a prime, and composition in the permutation group $S_5$, each with half of "
         "all pairs used for training and a seeded split. The model is a two-layer causal "
         "Transformer trained with AdamW~\\citep{loshchilov2019adamw} and a linear "
         "warm-up. This demo runs the template's smoke setting on a CPU: a few updates and "
         "one seed per dataset, so all numbers describe early training only. The hardware "
         "and library versions of every run are recorded next to its results.")

FIGURE = ("\\begin{figure}[t]\n  \\centering\n"
          "  \\begin{subfigure}{0.48\\linewidth}\n"
          "    \\includegraphics[width=\\linewidth]{val_acc_x_plus_y.png}\n"
          "    \\caption{Modular addition.}\n  \\end{subfigure}\\hfill\n"
          "  \\begin{subfigure}{0.48\\linewidth}\n"
          "    \\includegraphics[width=\\linewidth]{val_acc_x_div_y.png}\n"
          "    \\caption{Modular division.}\n  \\end{subfigure}\n"
          "  \\caption{Validation accuracy over training for the baseline and each run. "
          "Every curve is a single seed (the demo's smoke setting), so there is no error "
          "band.}\n  \\label{fig:valacc}\n\\end{figure}\n"
          "\\begin{figure}[t]\n  \\centering\n"
          "  \\includegraphics[width=0.6\\linewidth]{complexity_x_plus_y.png}\n"
          "  \\caption{Weight complexity (compressed size of the weights) over training on "
          "modular addition, one seed per run.}\n  \\label{fig:complexity}\n\\end{figure}")

TABLE = ("\\Cref{tab:results} lists the final validation accuracy of every run on each "
         "dataset, as recorded by the runs.\n\\input{results_table}")

PAPERS: dict[str, dict[str, Any]] = {
    "weight_decay_grokking_speed": {
        "abstract": "Grokking, the sudden generalisation long after a network has fitted its "
                    "training set, is known to depend on regularisation. We ask whether "
                    "stronger decoupled weight decay shortens the memorisation phase on the "
                    "standard algorithmic tasks. We compare the reference weight decay with "
                    "two stronger settings under otherwise identical training and report "
                    "validation accuracy, the onset of generalisation and a compression-based "
                    "estimate of weight complexity. At the short training budget of this "
                    "study no setting generalises, so the experiment is inconclusive about "
                    "the onset; it shows how the comparison is set up and measured.",
        "intro": "Power et al. observed that small Transformers trained on algorithmic data "
                 "can generalise long after fitting the training set~\\citep{power2022grokking}. "
                 "Later work explained the phenomenon through the circuits the network forms "
                 "\\citep{nanda2023progress} and through the norm of the "
                 "weights~\\citep{liu2023omnigrok}. Weight decay is the regulariser most often "
                 "linked to grokking, but its strength is rarely varied in isolation. Our "
                 "contribution is a controlled comparison of three weight decay strengths "
                 "with everything else fixed, measured by the onset of generalisation and by "
                 "weight complexity.",
        "background": "A network groks when validation accuracy rises to near perfect long "
                      "after training accuracy did. Decoupled weight decay shrinks the "
                      "weights towards zero independently of the gradient "
                      "step~\\citep{loshchilov2019adamw}; it is believed to favour the "
                      "simpler, generalising solution over memorisation.",
        "method": "We change a single hyperparameter of the reference training script, the "
                  "decoupled weight decay coefficient of AdamW, from its reference value to "
                  "twice and then four times that value. The architecture, data, optimiser "
                  "settings, warm-up and evaluation are unchanged.",
        "results": "\\Cref{fig:valacc} shows validation accuracy over training for the "
                   "baseline and both stronger weight decay settings. Within the short "
                   "training budget of this study none of the runs generalises, and the "
                   "curves of the three settings are close to each other; differences at this "
                   "stage are within the noise of a single seed. Weight complexity "
                   "(\\cref{fig:complexity}) and the other datasets show the same picture. "
                   "This is a "
                   "limitation of the budget, not evidence against the hypothesis.",
        "conclusion": "We set up a controlled comparison of weight decay strengths for "
                      "grokking and measured it end to end. At the budget used here the "
                      "comparison is inconclusive; the next step is to train for the full "
                      "number of updates with several seeds.",
        "related": "Grokking was first reported on algorithmic datasets, and its relation "
                   "to weight norm has been studied directly. An effective theory explains "
                   "grokking as the slow formation of structured representations.",
        "cite": ("grokking effective theory representation learning",
                 "Towards Understanding Grokking",
                 "An effective theory explains grokking as the slow formation of structured "
                 "representations."),
    },
    "label_smoothing_grokking": {
        "abstract": "Grokking is delayed generalisation on small algorithmic datasets, and "
                    "regularisation changes when it happens. We test label smoothing, a "
                    "regulariser on the targets rather than the weights, in the reference "
                    "grokking setup, and compare validation accuracy, the onset of "
                    "generalisation and weight complexity with the baseline. At the short "
                    "training budget of this study neither model generalises, so the result "
                    "is inconclusive; we describe the setup and what a full run must measure.",
        "intro": "Small Transformers trained on modular arithmetic first memorise and only "
                 "much later generalise~\\citep{power2022grokking}. Explanations focus on "
                 "weight norm and weight decay~\\citep{liu2023omnigrok,nanda2023progress}. "
                 "Label smoothing discourages over-confident predictions and acts on the "
                 "targets instead of the parameters. We ask whether it changes the onset of "
                 "grokking, with every other setting of the reference fixed.",
        "background": "Label smoothing replaces the one-hot training target with a mixture of "
                      "the one-hot vector and the uniform distribution, which bounds the "
                      "logits the network needs to fit the training set.",
        "method": "We add label smoothing to the cross-entropy loss used for training, "
                  "leaving evaluation on the unsmoothed loss and every other hyperparameter "
                  "of the reference unchanged.",
        "results": "\\Cref{fig:valacc} compares validation accuracy over training for the "
                   "baseline and the label-smoothed model. Within the short training budget of "
                   "this study neither generalises and the curves are close; with a single "
                   "seed, the differences are not meaningful. A full-length run is needed "
                   "before anything can be said about the onset of grokking.",
        "conclusion": "Label smoothing is a cheap regulariser whose effect on grokking has not "
                      "been measured in the reference setup. Our short run is inconclusive; "
                      "full training with several seeds is the next step.",
        "related": "Classical weight decay improves generalisation in small networks. Work "
                   "on grokking relates it to the weight norm and to representation learning.",
        "cite": ("simple weight decay improve generalization",
                 "A Simple Weight Decay",
                 "Classical weight decay improves generalisation in small networks."),
    },
}


def main() -> None:
    data = {"description": "Scripted model of the aisci offline demo (grokking, smoke mode). "
                           "Every answer here was written by hand; no model is called.",
            "responses": entries()}
    OUT.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(data['responses'])} answers)")


if __name__ == "__main__":
    main()
