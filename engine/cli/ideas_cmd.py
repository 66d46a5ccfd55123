"""``aisci ideas generate|list|show|check|edit|import|export``, ``aisci approve`` and
``aisci veto``: the idea archive and its triage, headless.

``import``/``export`` use the reference system's ideas.json format: a list of idea
objects (Name, Title, Experiment, Interestingness, Feasibility, Novelty, any extra
fields) with an optional boolean ``novel``; a round trip loses nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from aisci.engine.cli.common import (
    add_lab_argument,
    config_from_args,
    find_idea,
    find_idea_read_only,
    lab_dir,
    open_store,
    show_help,
)
from aisci.engine.config import parse_override
from aisci.engine.control.client import ControlClient, engine_serving
from aisci.engine.errors import EXIT_BUDGET, EXIT_FAILED, AisciError, UsageError
from aisci.engine.events import EventBus, LLMRetry, Notice
from aisci.engine.lab.idea_schema import validate_idea
from aisci.engine.lab.store import IdeaRow, LabStore
from aisci.engine.literature import LiteratureUnavailable
from aisci.engine.llm.base import LLMError
from aisci.engine.llm.client import BudgetExceeded, LLMClient
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.stages import approval
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.ideate import generate_ideas
from aisci.engine.stages.novelty import check_novelty


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ideas", help="generate, list, show, import and export ideas")
    isub = p.add_subparsers(dest="ideas_command", metavar="ACTION")
    p.set_defaults(func=show_help(p))

    gen = isub.add_parser("generate", help="propose new ideas with the LLM (with reflection)")
    add_lab_argument(gen)
    gen.add_argument("-n", "--num-ideas", dest="n", type=int, default=None,
                     help="how many new ideas (default: ideation.num_ideas)")
    gen.add_argument("--template", help="research template (default: general.template)")
    gen.add_argument("--model", help="model for ideation, as provider:model")
    gen.set_defaults(func=_generate)

    ls = isub.add_parser("list", help="the idea archive: status, scores, novelty")
    add_lab_argument(ls)
    ls.add_argument("--template", help="only this template's ideas")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_list)

    show = isub.add_parser("show", help="one idea with its novelty evidence and history")
    add_lab_argument(show)
    show.add_argument("idea", help="idea id or name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)

    chk = isub.add_parser("check", help="run the novelty check of one idea")
    add_lab_argument(chk)
    chk.add_argument("idea", help="idea id or name")
    chk.add_argument("--model", help="model for the novelty check, as provider:model")
    chk.set_defaults(func=_check)

    ed = isub.add_parser("edit", help="change fields of an idea (validated)")
    add_lab_argument(ed)
    ed.add_argument("idea", help="idea id or name")
    ed.add_argument("--field", dest="fields", action="append", default=[], metavar="KEY=VALUE",
                    help="a field to set, e.g. --field Title='Better title' (repeatable)")
    ed.set_defaults(func=_edit)

    imp = isub.add_parser("import", help="add ideas from a reference-format ideas.json")
    add_lab_argument(imp)
    imp.add_argument("file", type=Path)
    imp.add_argument("--template", help="template the ideas are for (default: general.template)")
    imp.set_defaults(func=_import)

    exp = isub.add_parser("export", help="write ideas in the reference ideas.json format")
    add_lab_argument(exp)
    exp.add_argument("file", nargs="?", type=Path, help="output file (default: stdout)")
    exp.add_argument("--template", help="only this template's ideas")
    exp.set_defaults(func=_export)

    ap = sub.add_parser("approve", help="approve an idea for experiments")
    add_lab_argument(ap)
    ap.add_argument("idea", help="idea id or name")
    ap.set_defaults(func=_approve)

    ve = sub.add_parser("veto", help="veto an idea, with the reason fed back to ideation")
    add_lab_argument(ve)
    ve.add_argument("idea", help="idea id or name")
    ve.add_argument("--why", required=True, help="the reason (shown to the model)")
    ve.set_defaults(func=_veto)


# -- helpers ---------------------------------------------------------------------------------

def _read_store(args: argparse.Namespace) -> LabStore:
    return open_store(args, read_only=True)


def _verdict(row: IdeaRow) -> str:
    nov = row.novelty or {}
    if not nov.get("complete") and "novel" not in nov:
        return "checking" if nov.get("log") else "-"
    return "novel" if nov.get("novel") else "not novel"


def _context(args: argparse.Namespace, store: LabStore, extra: dict[str, Any]) -> StageContext:
    settings = config_from_args(args, extra).settings
    bus = EventBus()

    def echo(event: Any) -> None:
        if isinstance(event, Notice):
            print(f"  {event.level}: {event.message}", file=sys.stderr)
        elif isinstance(event, LLMRetry):
            print(f"  waiting: {event.summary}", file=sys.stderr, flush=True)

    bus.add_sink(echo)
    return StageContext(lab=lab_dir(args), settings=settings, store=store, bus=bus,
                        llm=LLMClient(settings, store, bus), prompts=PromptLibrary(lab_dir(args)))


def _run_stage(coro_factory: Any) -> Any:
    try:
        return asyncio.run(coro_factory())
    except BudgetExceeded as exc:
        raise AisciError(str(exc), hint="raise [budget] in aisci.toml",
                         exit_code=EXIT_BUDGET) from None
    except LiteratureUnavailable as exc:
        raise AisciError(str(exc), hint="retry later, or run with --skip-novelty-check") from None
    except LLMError as exc:
        raise AisciError(f"{type(exc).__name__}: {exc}") from None


# -- commands --------------------------------------------------------------------------------

def _generate(args: argparse.Namespace) -> int:
    extra = {"models.ideate": args.model} if args.model else {}
    store = open_store(args)
    try:
        ctx = _context(args, store, extra)
        template = args.template or ctx.settings.general.template
        n = args.n if args.n is not None else ctx.settings.ideation.num_ideas
        if n < 1:
            raise UsageError(f"-n {n}: expected 1 or more")

        async def go() -> list[int]:
            try:
                return await generate_ideas(ctx, template, n)
            finally:
                await ctx.llm.aclose()
        ids = _run_stage(go)
        for iid in ids:
            row = store.get_idea(iid)
            assert row is not None
            print(f"{row.id:>4}  {row.name:<40}  {row.data.get('Title', '')}")
        print(f"{len(ids)} new idea(s) for {template}")
        return 0 if ids else EXIT_FAILED
    finally:
        store.close()


def _list(args: argparse.Namespace) -> int:
    store = _read_store(args)
    try:
        rows = [r for r in store.list_ideas() if not args.template or r.template == args.template]
        if args.json:
            print(json.dumps([{"id": r.id, "name": r.name, "template": r.template,
                               "status": r.status, "origin": r.origin, "novelty": _verdict(r),
                               **{k: r.data.get(k) for k in
                                  ("Title", "Interestingness", "Feasibility", "Novelty")}}
                              for r in rows], indent=1))
            return 0
        if not rows:
            print("no ideas yet (`aisci ideas generate` or `aisci ideas import ideas.json`)")
            return 0
        print(f"{'id':>4}  {'name':<32} {'template':<12} {'status':<9} {'novelty':<10} "
              f"{'I/F/N':<8} title")
        for r in rows:
            d = r.data
            scores = "/".join("-" if d.get(k) is None else str(d.get(k))
                              for k in ("Interestingness", "Feasibility", "Novelty"))
            print(f"{r.id:>4}  {r.name[:32]:<32} {r.template[:12]:<12} {r.status:<9} "
                  f"{_verdict(r):<10} {scores:<8} {d.get('Title', '')}")
        return 0
    finally:
        store.close()


def _show(args: argparse.Namespace) -> int:
    store = _read_store(args)
    try:
        row = find_idea(store, args.idea)
        history = store.idea_history(row.id)
        if args.json:
            print(json.dumps({"id": row.id, "name": row.name, "template": row.template,
                              "status": row.status, "origin": row.origin, "idea": row.data,
                              "novelty": row.novelty, "history": history,
                              "stages": store.stages(row.id)}, indent=1, default=str))
            return 0
        d = row.data
        print(f"#{row.id} {row.name}  [{row.status}, {row.origin}, template {row.template}]")
        print(f"Title: {d.get('Title')}")
        print(f"Scores: interestingness {d.get('Interestingness')}, feasibility "
              f"{d.get('Feasibility')}, novelty {d.get('Novelty')}")
        print(f"Experiment: {d.get('Experiment')}")
        extra = {k: v for k, v in d.items() if k not in
                 ("Name", "Title", "Experiment", "Interestingness", "Feasibility", "Novelty")}
        for k, v in extra.items():
            print(f"{k}: {v}")
        nov = row.novelty or {}
        print(f"\nNovelty: {_verdict(row)}"
              + (f" ({nov.get('rounds', 0)} round(s))" if nov.get("rounds") else ""))
        if nov.get("rationale"):
            print(f"  rationale: {nov['rationale']}")
        for q in nov.get("queries", []):
            print(f"  query: {q}")
        for p in nov.get("papers", []):
            authors = ", ".join(p.get("authors", [])[:3]) + (" et al." if len(
                p.get("authors", [])) > 3 else "")
            print(f"  - {p.get('title')} ({authors}; {p.get('venue') or 'n/a'}, "
                  f"{p.get('year') or 'n.d.'}) [{p.get('source')}]")
        print("\nHistory:")
        for h in history:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["ts"]))
            detail = h.get("detail") or {}
            text = detail.get("reason") or ", ".join(
                f"{k}={v}" for k, v in detail.items() if k != "changes")
            if "changes" in detail:
                text = (text + "; " if text else "") + "changed " + ", ".join(detail["changes"])
            print(f"  {when}  {h['action']:<15} {h['source']:<6} {text}")
        return 0
    finally:
        store.close()


def _check(args: argparse.Namespace) -> int:
    store = open_store(args, create=False)
    try:
        row = find_idea(store, args.idea)
        ctx = _context(args, store, {"models.novelty": args.model} if args.model else {})

        async def go() -> Any:
            try:
                return await check_novelty(ctx, row.id)
            finally:
                await ctx.llm.aclose()
        result = _run_stage(go)
        verdict = "novel" if result.novel else "not novel"
        print(f"#{row.id} {row.name}: {verdict} after {result.rounds} round(s), "
              f"{len(result.papers)} paper(s) seen")
        print(f"  {result.rationale}")
        return 0
    finally:
        store.close()


def _edit(args: argparse.Namespace) -> int:
    if not args.fields:
        raise UsageError("nothing to change: give --field KEY=VALUE")
    fields = dict(parse_override(f) for f in args.fields)
    store = open_store(args, create=False)
    try:
        row = find_idea(store, args.idea)
        new = approval.edit(store, None, row.id, fields, source="human")
        print(f"#{new.id} {new.name}: {new.status}")
        return 0
    finally:
        store.close()


def _approve(args: argparse.Namespace) -> int:
    if engine_serving(lab_dir(args)):  # the running engine decides (and starts its runs)
        row = find_idea_read_only(args)
        with ControlClient(lab_dir(args)) as engine:
            engine.call("approve", row.id)
        print(f"#{row.id} {row.name}: approved")
        return 0
    store = open_store(args, create=False)
    try:
        row = find_idea(store, args.idea)
        approval.approve(store, None, row.id, source="human")
        print(f"#{row.id} {row.name}: approved")
        return 0
    finally:
        store.close()


def _veto(args: argparse.Namespace) -> int:
    if engine_serving(lab_dir(args)):
        row = find_idea_read_only(args)
        with ControlClient(lab_dir(args)) as engine:
            engine.call("veto", row.id, args.why)
        print(f"#{row.id} {row.name}: vetoed ({args.why})")
        return 0
    store = open_store(args, create=False)
    try:
        row = find_idea(store, args.idea)
        approval.veto(store, None, row.id, args.why, source="human")
        print(f"#{row.id} {row.name}: vetoed ({args.why})")
        return 0
    finally:
        store.close()


MAX_IDEAS_FILE_BYTES = 64 * 1024 * 1024


def _read_ideas_text(path: Path) -> str:
    """The ideas file as text: bounded, UTF-8 (a BOM is allowed), a one-line error else."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_IDEAS_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_IDEAS_FILE_BYTES:
        raise UsageError(f"{path}: larger than {MAX_IDEAS_FILE_BYTES // 2**20} MB; expected "
                         "an ideas.json list")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}); save the file as UTF-8 JSON") from None


def _import(args: argparse.Namespace) -> int:
    try:
        raw = json.loads(_read_ideas_text(args.file))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{args.file}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, list):
        raise UsageError(f"{args.file}: expected a list of idea objects (ideas.json)")
    for i, obj in enumerate(raw):
        validate_idea(obj, f"{args.file}[{i}]")
        if "novel" in obj and not isinstance(obj["novel"], bool):
            raise UsageError(f"{args.file}[{i}]: novel: expected true or false")
    template = args.template or config_from_args(args).settings.general.template
    store = open_store(args)
    try:
        added = skipped = 0
        for obj in raw:
            if store.find_idea(obj["Name"]) is not None:
                print(f"  skipped {obj['Name']}: an idea with that name exists", file=sys.stderr)
                skipped += 1
                continue
            data = {k: v for k, v in obj.items() if k != "novel"}
            iid = store.add_idea(obj["Name"], template, data, origin="imported", source="human")
            if "novel" in obj:
                store.update_idea(iid, status="checked", novelty={
                    "novel": obj["novel"], "decided": True, "complete": True, "imported": True,
                    # where `novel` sat in the object, so export reproduces the file
                    "key_index": list(obj).index("novel"),
                    "rationale": f"imported from {args.file.name}", "queries": [],
                    "papers": [], "rounds": 0}, action="novelty_imported", source="human",
                    detail={"novel": obj["novel"]})
            added += 1
        print(f"imported {added} idea(s) for {template}" + (f", skipped {skipped}" if skipped else ""))
        return 0
    finally:
        store.close()


def export_ideas(store: LabStore, template: str | None = None) -> list[dict[str, Any]]:
    """The lab's ideas as reference ideas.json objects (``novel`` when a verdict exists)."""
    out = []
    for r in store.list_ideas():
        if template and r.template != template:
            continue
        obj = dict(r.data)
        nov = r.novelty or {}
        if nov.get("complete") and isinstance(nov.get("novel"), bool):
            items = list(obj.items())
            at = nov.get("key_index")
            at = at if isinstance(at, int) and 0 <= at <= len(items) else len(items)
            obj = dict([*items[:at], ("novel", nov["novel"]), *items[at:]])
        out.append(obj)
    return out


def _export(args: argparse.Namespace) -> int:
    store = _read_store(args)
    try:
        text = json.dumps(export_ideas(store, args.template), indent=4, ensure_ascii=False)
    finally:
        store.close()
    if args.file is None:
        print(text)
    else:
        args.file.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {len(json.loads(text))} idea(s) to {args.file}")
    return 0
