"""The template checker's verdicts (nanogpt's causality check), kept where runs cannot
write: in the lab store, bound to the code they judged.

The experiment stage runs the checker before each run and records what it printed as
soon as it exits; the integrity stage reuses that verdict only while the idea's
``experiment.py`` is still the code that was checked, and otherwise runs the checker
again. Nothing in the idea folder is read back as a verdict: a ``causality.json`` or a
line in ``logs/check_<i>.log`` may have been written by any later run of the idea's own
code (the folder is the runs' to write)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from aisci.engine.lab import safe_files
from aisci.engine.lab.store import LabStore

CODE_FILE = "experiment.py"
_KV = "causality.idea.{}"


def code_digest(idea_dir: Path) -> str | None:
    """sha256 of the idea's ``experiment.py`` (None when it cannot be read safely)."""
    try:
        return hashlib.sha256(safe_files.read_bytes(idea_dir, CODE_FILE,
                                                    safe_files.MAX_TEXT_BYTES)).hexdigest()
    except (OSError, ValueError):
        return None


def log_size(idea_dir: Path, rel: str) -> int:
    """Bytes in the log ``idea_dir/rel`` now (0 when there is none yet): a checker's own
    output is what its log gains after this."""
    try:
        return safe_files.lstat(idea_dir, rel).st_size
    except OSError:
        return 0


def last_json(idea_dir: Path, rel: str, *, since: int = 0,
              max_bytes: int = 65536) -> dict[str, Any] | None:
    """The last JSON object printed in the log ``idea_dir/rel`` after its first ``since``
    bytes, from the log's tail (log lines are ``<time> <stream> <text>``)."""
    room = min(max_bytes, log_size(idea_dir, rel) - since)
    if room <= 0:
        return None
    try:
        lines = safe_files.read_tail(idea_dir, rel, room).decode(
            "utf-8", "replace").splitlines()
    except OSError:  # missing, or refused (safe_files.UnsafeFile)
        return None
    for line in reversed(lines):
        start = line.find("{")
        if start == -1:
            continue
        try:
            data = json.loads(line[start:])
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            return data
    return None


def record(store: LabStore, idea_id: int, *, causal: bool | None, verdict: dict[str, Any],
           source: str, code: str | None) -> dict[str, Any]:
    """Keep the checker's verdict on the code with digest ``code``; returns the record."""
    entry = {"causal": causal, "verdict": verdict, "source": source, "code": code,
             "at": time.time()}
    store.kv_set(_KV.format(idea_id), entry)
    return entry


def verdict_from_check(idea_dir: Path, log_rel: str, *, since: int, status: str,
                       exit_code: int | None, reason: str = ""
                       ) -> tuple[bool | None, dict[str, Any]]:
    """(causal, verdict) of a checker that just exited. Its exit status decides (0: causal
    unless it printed ``"causal": false``; 1: not causal; anything else: unknown); the
    last JSON object it printed (after ``since`` bytes of its log) is the detail."""
    verdict = last_json(idea_dir, log_rel, since=since) or {}
    causal: bool | None
    if status == "ok" and exit_code == 0:
        causal = verdict.get("causal") is not False
    elif exit_code == 1:
        causal = False
    else:
        causal = None
        verdict = {**verdict, "error": f"checker {status}: {reason}".rstrip(": ")}
    return causal, verdict


def current(store: LabStore, idea_id: int, idea_dir: Path) -> dict[str, Any] | None:
    """The recorded verdict when it judged the idea's current ``experiment.py``."""
    entry = store.kv_get(_KV.format(idea_id))
    digest = code_digest(idea_dir)
    if not isinstance(entry, dict) or digest is None or entry.get("code") != digest:
        return None
    return entry
