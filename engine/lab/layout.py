"""Where things live in a lab folder: every path the engine and the TUI build inside a lab
comes from here.

- ``aisci.db`` (the store) and ``aisci.lock`` (held by the one engine writing the lab);
- ``ideas/<id>-<name>/``: the working tree of one idea;
- ``repos/<id>-<name>.git``: its git directory, outside anything an experiment can write;
- ``baselines/<template>[-smoke]/run_0``: a template's baseline, copied into new ideas;
- ``aisci.sock``: the running engine's control socket (owner only; viewers and the CLI
  of any shell reach the engine through it);
- ``engine.log``: what a running engine says while no terminal shows it.
"""

from __future__ import annotations

from pathlib import Path

DB_NAME = "aisci.db"
LOCK_NAME = "aisci.lock"
IDEAS_DIR = "ideas"
REPOS_DIR = "repos"
BASELINES_DIR = "baselines"
CONTROL_SOCKET = "aisci.sock"
ENGINE_LOG = "engine.log"
DEMO_LAB_DIR = "aisci-demo-lab"
"""The offline demo's lab folder, in the current directory, when no --lab is given (``aisci
run --demo`` and ``aisci-tui --demo`` continue the same demo)."""


def idea_dir(lab: Path, idea_id: int, name: str) -> Path:
    """The working tree of an idea: ``<lab>/ideas/<id>-<name>``."""
    return Path(lab) / IDEAS_DIR / f"{idea_id}-{name}"


def git_dir(idea_dir: Path) -> Path:
    """The git directory of the idea folder ``<lab>/ideas/<name>``:
    ``<lab>/repos/<name>.git``, outside anything an experiment can write."""
    idea_dir = Path(idea_dir).absolute()
    return idea_dir.parent.parent / REPOS_DIR / f"{idea_dir.name}.git"


def baseline_dir(lab: Path, template_name: str, smoke: bool, size_tag: str = "") -> Path:
    """Where the template's baseline run_0 lives in a lab; new ideas copy it from here.
    ``size_tag`` names a non-default work size (``templates.work_size_tag``)."""
    suffix = ("-smoke" if smoke else "") + (f"-{size_tag}" if size_tag else "")
    return Path(lab) / BASELINES_DIR / f"{template_name}{suffix}" / "run_0"
