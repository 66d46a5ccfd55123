"""The engine's import policy: imports sit at the top of the module; an import inside a
function only defers a heavy or optional dependency (listed here with the reason); no
``try: import X / except ImportError`` fallback for a module that ships with aisci."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"

#: (file under engine/, imported module) -> why the import sits inside a function.
DEFERRED = {
    ("doctor.py", "torch"): "heavy; a missing or broken install is what doctor reports",
    ("llm/providers.py", "aisci.engine.llm.anthropic_provider"): "imports the anthropic SDK "
    "(about 2 s), only when a model spec names it",
    ("llm/providers.py", "aisci.engine.llm.openai_provider"): "imports the openai SDK "
    "(about 1 s), only when a model spec names it",
    ("run/environment.py", "pynvml"): "optional, not a dependency",
    ("run/gpu.py", "pynvml"): "optional, not a dependency",
    ("run/ray_cluster.py", "ray"): "optional heavy dependency (extra \"ray\", about 1 s), "
    "only with scheduler.backend = \"ray\"",
    ("run/ray_cluster.py", "ray.util.scheduling_strategies"): "optional, part of ray",
    ("stages/review.py", "pymupdf"): "heavy; only reviews read PDFs",
}
#: Modules that may be missing at run time, so a guarded import is right for them.
OPTIONAL = {"pynvml", "torch", "ray"}


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return [alias.name for alias in node.names]


def _module_level(tree: ast.Module) -> set[int]:
    """ids of the import nodes that run when the module is imported (including those
    under a module-level ``if``/``try``, e.g. ``if TYPE_CHECKING:``)."""
    out: set[int] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.If | ast.Try):
            out.update(id(n) for n in ast.walk(stmt))
        else:
            out.add(id(stmt))
    return out


def _sources() -> list[tuple[str, ast.Module]]:
    return [(p.relative_to(ENGINE).as_posix(), ast.parse(p.read_text(encoding="utf-8")))
            for p in sorted(ENGINE.rglob("*.py"))]


def test_imports_inside_functions_only_defer_listed_dependencies():
    found: set[tuple[str, str]] = set()
    for rel, tree in _sources():
        top = _module_level(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
                found.update((rel, name) for name in _imported(node))
    unexpected = sorted(found - set(DEFERRED))
    assert not unexpected, f"move these imports to the top of the module: {unexpected}"
    stale = sorted(set(DEFERRED) - found)
    assert not stale, f"no longer deferred, drop from DEFERRED: {stale}"


def test_no_import_error_fallback_for_shipped_modules():
    bad = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not catches & {"ImportError", "ModuleNotFoundError"}:
                continue
            guarded = {name for stmt in node.body if isinstance(stmt, ast.Import | ast.ImportFrom)
                       for name in _imported(stmt)}
            if not guarded or guarded - OPTIONAL:
                bad.append(f"{rel}:{node.lineno} {sorted(guarded)}")
    assert not bad, f"import directly, these modules ship with aisci: {bad}"
