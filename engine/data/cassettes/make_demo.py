"""Writes demo.json, the scripted model of the offline demo (``python make_demo.py``).

The cassette answers the steps the stage modules document (``<stage>/<step>``):
ideation (idea-<k>/round-<r>), novelty (<name>/round-<r>), experiment planning and code
edits through tool calls on the REAL grokking template text, plot edits and figure notes,
the paper (sections, citations, fixes), integrity fixes and the review ensemble with its
meta-review. Answers for ideas 1 and 2 are specific; glob patterns give a generic
answer to any other idea (e.g. one a human approves in the TUI demo).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("demo.json")
BASELINE_NOTE = "Description: the unmodified template (baseline).\n"

IDEAS = [
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


def tool(name: str, **arguments: object) -> dict:
    return {"name": name, "arguments": arguments}


def entries() -> list[dict]:
    out: list[dict] = []
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
    return out


def main() -> None:
    data = {"description": "Scripted model of the aisci offline demo (grokking, smoke mode). "
                           "Every answer here was written by hand; no model is called.",
            "responses": entries()}
    OUT.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(data['responses'])} answers)")


if __name__ == "__main__":
    main()
