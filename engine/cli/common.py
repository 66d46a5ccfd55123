"""Helpers shared by the CLI command modules: the ``--lab``/``--set`` arguments, loading
the lab's configuration and store."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aisci.engine.config import EffectiveConfig, load_config, parse_override
from aisci.engine.errors import EXIT_USAGE, UsageError
from aisci.engine.lab.store import IdeaRow, LabStore


def add_lab_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lab", default=".", help="lab directory (default: current directory)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set experiment.max_runs=3 (repeatable)")


def show_help(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The ``func`` of a command given without its action: print the command's help."""
    def func(_args: argparse.Namespace) -> int:
        p.print_help()
        return EXIT_USAGE
    return func


def lab_dir(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "lab", ".") or ".").expanduser().resolve()


def config_from_args(args: argparse.Namespace,
                     extra: dict[str, Any] | None = None) -> EffectiveConfig:
    overrides: dict[str, Any] = {}
    for text in getattr(args, "overrides", []) or []:
        key, value = parse_override(text)
        overrides[key] = value
    overrides.update(extra or {})
    return load_config(lab_dir(args), overrides)


def open_store(args: argparse.Namespace, *, read_only: bool = False,
               create: bool = True) -> LabStore:
    """The lab's store; LabInUse / StoreError reach the user through cli.main().
    ``create=False`` for a command that acts on an existing lab's ideas or runs: on a
    folder without a lab it says so (NoLab) instead of leaving a new lab there."""
    return LabStore(lab_dir(args), read_only=read_only, create=create)


def find_idea(store: LabStore, key: str) -> IdeaRow:
    """The idea ``key`` names (id or name); one line naming it when there is none."""
    row = store.find_idea(key)
    if row is None:
        raise UsageError(f"no idea {key!r} in {store.lab_dir} (see `aisci ideas list`)")
    return row


def find_idea_read_only(args: argparse.Namespace) -> IdeaRow:
    """``args.idea`` looked up in the lab read-only (it works while an engine runs it)."""
    with open_store(args, read_only=True) as store:
        return find_idea(store, args.idea)
