"""``aisci review PAPER.pdf``: the NeurIPS reviewer as a standalone tool on any PDF.

Prints a readable scorecard and writes the full review (aggregate, every reviewer,
meta-review) as JSON. LLM calls are recorded in the lab's database when the lab
already has one and no other process holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from aisci.engine.cli.common import add_lab_argument, config_from_args, lab_dir
from aisci.engine.doctor import api_key_var
from aisci.engine.errors import AisciError, UsageError
from aisci.engine.lab.layout import DB_NAME
from aisci.engine.lab.store import LabInUse, LabStore
from aisci.engine.llm.base import LLMError
from aisci.engine.llm.client import BudgetExceeded, LLMClient
from aisci.engine.stages.review import ReviewResult, review_pdf, scorecard


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("review", help="review a PDF like a NeurIPS reviewer (ensemble, "
                                      "meta-review, reflections) and print the scorecard")
    p.add_argument("pdf", type=Path, help="the paper to review (PDF)")
    p.add_argument("--model", help="reviewer model as provider:model (default: models.review)")
    p.add_argument("--ensemble", type=int, help="number of reviewers (default: review.ensemble)")
    p.add_argument("--reflections", type=int,
                   help="reflection rounds per reviewer (default: review.reflection_rounds)")
    p.add_argument("--no-meta", action="store_true", help="skip the area-chair meta-review")
    p.add_argument("--out", type=Path, help="where to write the JSON (default: <pdf>.review.json)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the scorecard")
    add_lab_argument(p)
    p.set_defaults(func=_review)


def _review(args: argparse.Namespace) -> int:
    extra: dict[str, Any] = {}
    if args.ensemble is not None:
        if args.ensemble < 1:
            raise UsageError("--ensemble must be at least 1")
        extra["review.ensemble"] = args.ensemble
    if args.reflections is not None:
        extra["review.reflection_rounds"] = args.reflections
    if args.no_meta:
        extra["review.meta_review"] = False
    if args.model:
        if ":" not in args.model:
            raise UsageError(f"--model {args.model!r}: expected provider:model")
        extra["models.review"] = args.model
    settings = config_from_args(args, extra).settings
    pdf = args.pdf.expanduser()
    if not pdf.is_file():
        raise UsageError(f"{pdf}: no such file")
    out = args.out or pdf.with_name(pdf.stem + ".review.json")
    model = settings.models.for_stage("review")
    key = api_key_var(settings, model.partition(":")[0])
    if key and not os.environ.get(key):
        raise UsageError(f"{key} is not set: the review model {model} needs it (set it, or "
                         "choose another model with --model provider:model)")
    store = _optional_store(args)
    client = LLMClient(settings, store, None)

    async def run() -> ReviewResult:  # one event loop for the calls and the providers' cleanup
        try:
            return await review_pdf(client, settings, pdf, lab=lab_dir(args))
        finally:
            await client.aclose()

    try:
        result = asyncio.run(run())
    except BudgetExceeded:
        raise  # its own message and exit code (3), through cli.main()
    except LLMError as exc:
        raise AisciError(f"review failed: {exc}") from None
    finally:
        if store is not None:
            store.close()
    data = result.to_json()
    out.write_text(json.dumps(data, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(scorecard(result))
        print(f"\nreview written to {out}")
    return 0


def _optional_store(args: argparse.Namespace) -> LabStore | None:
    """The lab's store when one exists and is free; reviewing a PDF never creates a lab."""
    lab = lab_dir(args)
    if not (lab / DB_NAME).is_file():
        return None
    try:
        return LabStore(lab)
    except LabInUse as exc:
        print(f"aisci: note: {exc}; this review's cost is not recorded", file=sys.stderr)
        return None


__all__ = ["register"]
