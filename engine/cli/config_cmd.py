"""``aisci config show``: the effective configuration and where each value came from."""

from __future__ import annotations

import argparse
import json

from aisci.engine.cli.common import add_lab_argument, config_from_args, show_help


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="show the effective configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    show = csub.add_parser("show", help="print every setting, its value and its origin")
    add_lab_argument(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)
    p.set_defaults(func=show_help(p))


def _show(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    rows = cfg.rows()
    if args.json:
        print(json.dumps({k: {"value": v, "from": o} for k, v, o in rows}, indent=2))
        return 0
    width = max(len(k) for k, _, _ in rows)
    for key, value, origin in rows:
        shown = json.dumps(value) if not isinstance(value, str) else value
        print(f"{key:<{width}}  {shown:<40}  ({origin})")
    return 0
