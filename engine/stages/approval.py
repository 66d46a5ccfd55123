"""Human (or automatic) triage of ideas: approve, veto with a reason, edit fields.

Status flow: proposed -> checked (novelty verdict) -> approved | vetoed | edited. Every
change is one ``idea_history`` row (time, action, source human/auto, detail) and one
``IdeaChanged`` event; veto reasons are fed back to ideation through that history.
"""

from __future__ import annotations

from typing import Any

from aisci.engine.config import Settings
from aisci.engine.errors import UsageError
from aisci.engine.events import EventBus, IdeaChanged
from aisci.engine.lab import layout
from aisci.engine.lab.idea_schema import IdeaError, validate_idea
from aisci.engine.lab.store import IdeaRow, LabStore

#: Fields an edit may not touch: they are the engine's bookkeeping, not the idea.
PROTECTED_FIELDS = frozenset({"novel"})


class TriageError(UsageError):
    """A triage command that cannot be applied (unknown idea, missing reason, ...)."""


def _idea(store: LabStore, idea_id: int) -> IdeaRow:
    row = store.get_idea(int(idea_id))
    if row is None:
        raise TriageError(f"no idea with id {idea_id}")
    return row


def _publish(bus: EventBus | None, event: IdeaChanged) -> None:
    if bus is not None:
        bus.publish(event)


def workspace_exists(store: LabStore, row: IdeaRow) -> bool:
    return layout.idea_dir(store.lab_dir, row.id, row.name).exists()


def approve(store: LabStore, bus: EventBus | None, idea_id: int, source: str = "human",
            note: str = "") -> IdeaRow:
    row = _idea(store, idea_id)
    store.update_idea(row.id, status="approved", action="approved", source=source,
                      detail={"from": row.status, **({"note": note} if note else {})})
    _publish(bus, IdeaChanged(idea_id=row.id, status="approved", detail=f"by {source}" if source != "auto"
                                else "by the auto-approve policy"))
    return _idea(store, row.id)


def veto(store: LabStore, bus: EventBus | None, idea_id: int, reason: str,
         source: str = "human") -> IdeaRow:
    reason = " ".join((reason or "").split())
    if not reason:
        raise TriageError(f"veto of idea {idea_id}: a reason is required (it is shown to "
                          "the model when it proposes the next ideas)")
    row = _idea(store, idea_id)
    store.update_idea(row.id, status="vetoed", action="vetoed", source=source,
                      detail={"from": row.status, "reason": reason})
    _publish(bus, IdeaChanged(idea_id=row.id, status="vetoed", detail=reason))
    return _idea(store, row.id)


def edit(store: LabStore, bus: EventBus | None, idea_id: int, fields: dict[str, Any],
         source: str = "human") -> IdeaRow:
    """Change idea fields; the result must still be a valid idea. Renaming is refused
    once the idea has a workspace (its directory and git history carry the name)."""
    row = _idea(store, idea_id)
    bad = sorted(set(fields) & PROTECTED_FIELDS)
    if bad:
        raise TriageError(f"edit of idea {row.id}: field(s) {', '.join(bad)} cannot be edited")
    new = {**row.data, **fields}
    try:
        idea = validate_idea(new, f"edit of idea {row.id}")
    except IdeaError as exc:
        raise TriageError(str(exc)) from None
    changed = {k: {"before": row.data.get(k), "after": v} for k, v in fields.items()
               if row.data.get(k) != v}
    if not changed:
        return row
    if idea.Name != row.name:
        if workspace_exists(store, row):
            raise TriageError(f"edit of idea {row.id}: cannot rename {row.name!r} to "
                              f"{idea.Name!r}: its workspace already exists")
        if store.find_idea(idea.Name) is not None:
            raise TriageError(f"edit of idea {row.id}: the name {idea.Name!r} is taken")
        store.execute("UPDATE ideas SET name=? WHERE id=?", (idea.Name, row.id))
    novelty = None
    if row.novelty and ({"Title", "Experiment"} & set(changed)):
        novelty = {**row.novelty, "stale": True}  # the verdict was about the old text
    store.update_idea(row.id, data=new, status="edited", novelty=novelty, action="edited",
                      source=source, detail={"from": row.status, "changes": changed})
    _publish(bus, IdeaChanged(idea_id=row.id, status="edited",
                              detail=f"edited {', '.join(sorted(changed))}"))
    return _idea(store, row.id)


def auto_approve_decision(settings: Settings, idea: IdeaRow) -> bool:
    """Whether a batch run (auto_approve) may take this idea forward: never a vetoed one,
    and, with ``novelty.require_novel_for_auto_approve``, not one found not novel."""
    if idea.status == "vetoed":
        return False
    novelty = idea.novelty or {}
    return not (settings.novelty.require_novel_for_auto_approve
                and novelty.get("novel") is False)
