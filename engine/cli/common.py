"""Helpers shared by the CLI command modules: loading the lab's configuration and store."""

from __future__ import annotations

import argparse
from pathlib import Path

from aisci.engine.config import EffectiveConfig, load_config, parse_override
from aisci.engine.lab.store import LabInUse, LabStore


def lab_dir(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "lab", ".") or ".").expanduser().resolve()


def config_from_args(args: argparse.Namespace, extra: dict | None = None) -> EffectiveConfig:
    overrides: dict = {}
    for text in getattr(args, "overrides", []) or []:
        key, value = parse_override(text)
        overrides[key] = value
    overrides.update(extra or {})
    return load_config(lab_dir(args), overrides)


def open_store(args: argparse.Namespace, *, read_only: bool = False) -> LabStore:
    from aisci.engine.cli import EXIT_LAB_IN_USE, CommandError
    try:
        return LabStore(lab_dir(args), read_only=read_only)
    except LabInUse as exc:
        raise CommandError(str(exc), EXIT_LAB_IN_USE) from None
