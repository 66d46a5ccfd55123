"""The offline demo: a fresh lab that runs the whole pipeline for real on a CPU with a
SCRIPTED model (recorded answers in engine/data/cassettes/demo.json, no API key, no
network) and the bundled offline literature fixture (real metadata of real papers).

Experiments (grokking in smoke mode), plots, LaTeX and review parsing are real; only the
model's words are recorded. ``prepare_demo_lab`` is shared by ``aisci run --demo``
(headless, auto-approves) and ``aisci-tui --demo`` (the human approves or vetoes).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aisci.engine.config import LAB_CONFIG_NAME, EffectiveConfig, Settings, load_config
from aisci.engine.engine import Engine
from aisci.engine.errors import NO_SPACE_ERRNOS, DiskFull, UsageError
from aisci.engine.lab.store import LabReadOnly, StoreError, make_lab_dir
from aisci.engine.llm.providers import make_provider
from aisci.engine.llm.scripted import ScriptedProvider
from aisci.engine.pipeline import PipelineOptions

DEMO_MARKER = "# aisci offline demo lab"

DEMO_MODEL = "scripted:demo"
SCRIPTED_NOTICE = ("The model in this demo is SCRIPTED: its answers are recorded in the "
                   "bundled cassette (no API calls). Experiments, plots, LaTeX and review "
                   "parsing are real.")

DEMO_TOML = f"""{DEMO_MARKER} (created by aisci; the model is scripted)
# Delete this directory to start over; `aisci run --demo --lab DIR` continues it.

[general]
template = "grokking"
smoke = true
auto_approve = false

[models]
default = "{DEMO_MODEL}"

[literature]
sources = ["offline"]

[ideation]
num_ideas = 3
reflection_rounds = 2

[novelty]
max_rounds = 3
results_per_query = 5

[experiment]
max_runs = 2
max_attempts = 2
run_timeout_s = 600
max_tool_turns = 6

[plot]
timeout_s = 300
max_attempts = 2

[writeup]
citation_rounds = 2
section_refinements = 0
chktex_rounds = 1
compile_fix_rounds = 2
compile_timeout_s = 120
integrity_correction_rounds = 0

[review]
ensemble = 5
reflection_rounds = 1
meta_review = true

[budget]
lab_usd = 1.0

[scheduler]
parallel = 1
max_llm_tasks = 4
"""


def is_demo_lab(lab: Path) -> bool:
    """Whether ``lab`` is a demo lab (its aisci.toml is the one the demo wrote)."""
    try:
        with open(lab / LAB_CONFIG_NAME, encoding="utf-8") as fh:
            return fh.read(len(DEMO_MARKER)) == DEMO_MARKER
    except (OSError, UnicodeDecodeError):
        return False


def prepare_demo_lab(path: Path | str, *, overrides: dict[str, Any] | None = None
                     ) -> EffectiveConfig:
    """Create (or reopen) a demo lab at ``path`` and return its configuration.

    A new or empty directory gets the demo's aisci.toml; a directory that already holds
    a demo lab is reused as is (so an interrupted demo continues). Any other non-empty
    directory is refused, so the demo never takes over a real lab."""
    lab = Path(path).expanduser().resolve()
    cfg_file = lab / LAB_CONFIG_NAME
    if cfg_file.is_file():
        if not is_demo_lab(lab):
            raise UsageError(f"{lab} already holds a lab that is not a demo lab; choose "
                             "another directory with --lab")
    elif lab.is_dir() and _has_entries(lab):
        raise UsageError(f"{lab} is not empty; the demo needs a new or empty directory "
                         "(--lab DIR)")
    else:
        make_lab_dir(lab)  # one line naming the lab when it cannot be created
        try:
            cfg_file.write_text(DEMO_TOML, encoding="utf-8")
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                raise DiskFull(cfg_file) from None
            if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
                raise LabReadOnly(lab, exc.strerror or str(exc)) from None
            raise StoreError(f"{cfg_file}: cannot be written ({exc.strerror or exc})"
                             ) from None
    return load_config(lab, overrides)


def _has_entries(lab: Path) -> bool:
    try:
        with os.scandir(lab) as it:
            return next(it, None) is not None
    except OSError as exc:
        raise StoreError(f"{lab}: cannot be listed ({exc.strerror or exc}); the demo needs "
                         "a new or empty directory (--lab DIR)") from None


DEMO_CHUNK_DELAY_S = 0.02
"""Pause between streamed chunks of a scripted answer, so the demo streams visibly like a
real model (about 0.2 s per answer) instead of answering in zero time."""


def demo_provider_factory(settings: Settings) -> Callable[[str], Any]:
    """Provider factory for the demo: scripted answers stream at a human-visible pace;
    any other model spec (a user override) is made as usual."""
    def factory(spec: str) -> Any:
        kind, _, name = spec.partition(":")
        if kind == "scripted":
            return ScriptedProvider(name, chunk_delay_s=DEMO_CHUNK_DELAY_S)
        return make_provider(spec, settings)

    return factory


def demo_options(settings: Settings, *, headless: bool) -> PipelineOptions:
    """Headless demo runs auto-approve; the TUI demo leaves the decision to the human."""
    return PipelineOptions(template=settings.general.template,
                           auto_approve=True if headless else None, prefetch_baseline=True)


def make_demo_engine(path: Path | str, *, headless: bool = False) -> Engine:
    """An Engine on a (new or continued) demo lab, ready for ``await engine.start()``: the
    scripted model, the demo's options, and the demo's batch of ideas requested. The TUI
    demo uses this (the human approves or vetoes each idea)."""
    cfg = prepare_demo_lab(path)
    engine = Engine(Path(path).expanduser().resolve(), cfg.settings, headless=headless,
                    provider_factory=demo_provider_factory(cfg.settings),
                    options=demo_options(cfg.settings, headless=headless))
    engine.ensure_ideas(cfg.settings.ideation.num_ideas)
    return engine
