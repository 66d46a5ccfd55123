"""Research templates: finding them, reading their metadata, and where baselines live.

A template is a folder with ``experiment.py`` (``--out_dir DIR`` writes
``DIR/final_info.json``), ``plot.py``, ``prompt.json``, ``seed_ideas.json`` and
``latex/template.tex``. aisci reads an optional ``template.toml`` (description,
datasets, smoke environment, metric directions, prepare and check commands, expected
run time, metric units, work size); templates written for the reference system have
none and get defaults.

:mod:`aisci.engine.lab.template_check` validates a folder against that contract; where
a template's baseline lives in a lab is :func:`aisci.engine.lab.layout.baseline_dir`.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.config import WORK_SIZE_ENV_PREFIX, WORK_SIZE_KEYS, WorkSizeSettings
from aisci.engine.errors import UsageError
from aisci.engine.resources import templates_dir

TOML_NAME = "template.toml"
DEFAULT_SMOKE_ENV = {"AISCI_SMOKE": "1"}
REQUIRED_FILES = ("experiment.py", "plot.py", "prompt.json", "seed_ideas.json",
                  "latex/template.tex")


class TemplateError(UsageError):
    """A template cannot be found or its template.toml is malformed (one-line message)."""


@dataclass
class TemplateInfo:
    name: str
    path: Path
    description: str = ""
    datasets: list[str] = field(default_factory=list)
    smoke_env: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SMOKE_ENV))
    """Environment that switches experiment.py to its smoke setting."""
    lower_is_better: list[str] = field(default_factory=list)
    higher_is_better: list[str] = field(default_factory=list)
    check_command: list[str] | None = None
    """Integrity check run from the pristine template against an edited idea: "python"
    means the engine's interpreter, relative ``*.py`` paths resolve in the template
    folder and ``{project}`` is the idea folder."""
    prepare_command: list[str] | None = None
    """Data preparation, run in the idea (or baseline) folder before the first run."""
    expected_time_gpu_s: float | None = None
    expected_time_cpu_s: float | None = None
    metric_units: dict[str, str] = field(default_factory=dict)
    """Unit of each reported metric (``[metrics.units]``), e.g. kl_divergence = "bits"."""
    work_size: dict[str, int] = field(default_factory=dict)
    """Full-run work size (``[work_size]``: steps, seeds, eval); experiment.py reads
    ``AISCI_WORK_<KEY>`` and uses these values when it is unset."""
    has_toml: bool = False


def _expect(cond: bool, where: str, key: str, expected: str, got: Any) -> None:
    if not cond:
        raise TemplateError(f"{where}: {key}: expected {expected}, got {got!r}")


def _str_list(value: Any, where: str, key: str) -> list[str]:
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value),
            where, key, "a list of strings", value)
    return list(value)


def _command(value: Any, where: str, key: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split()
    cmd = _str_list(value, where, key)
    return cmd or None


def _seconds(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    _expect(isinstance(value, int | float) and not isinstance(value, bool) and value >= 0,
            where, key, "a number of seconds >= 0", value)
    return float(value)


def _work_size(value: Any, where: str) -> dict[str, int]:
    _expect(isinstance(value, dict), where, "work_size", "a table (steps, seeds, eval)", value)
    unknown = sorted(set(value) - set(WORK_SIZE_KEYS))
    _expect(not unknown, where, "work_size." + ", ".join(unknown),
            f"only keys {list(WORK_SIZE_KEYS)}", "unknown key")
    out: dict[str, int] = {}
    for key, n in value.items():
        _expect(isinstance(n, int) and not isinstance(n, bool) and n >= 1, where,
                f"work_size.{key}", "a positive integer", n)
        out[key] = n
    return out


def load_template_info(path: Path) -> TemplateInfo:
    """Metadata of the template folder ``path`` (defaults when it has no template.toml)."""
    path = Path(path).resolve()
    info = TemplateInfo(name=path.name, path=path)
    toml_path = path / TOML_NAME
    if not toml_path.is_file():
        return info
    where = str(toml_path)
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{where}: not valid TOML ({exc})") from None
    known = {"name", "description", "datasets", "expected_time_gpu_s", "expected_time_cpu_s",
             "smoke", "metrics", "prepare", "check", "work_size"}
    unknown = sorted(set(data) - known)
    _expect(not unknown, where, ", ".join(unknown), f"only keys {sorted(known)}", "unknown key")
    info.has_toml = True
    if "name" in data:
        _expect(isinstance(data["name"], str) and bool(data["name"]), where, "name", "a string",
                data["name"])
        info.name = data["name"]
    if "description" in data:
        _expect(isinstance(data["description"], str), where, "description", "a string",
                data["description"])
        info.description = data["description"]
    if "datasets" in data:
        info.datasets = _str_list(data["datasets"], where, "datasets")
    info.expected_time_gpu_s = _seconds(data.get("expected_time_gpu_s"), where,
                                        "expected_time_gpu_s")
    info.expected_time_cpu_s = _seconds(data.get("expected_time_cpu_s"), where,
                                        "expected_time_cpu_s")
    smoke = data.get("smoke", {})
    _expect(isinstance(smoke, dict), where, "smoke", "a table", smoke)
    env = smoke.get("env", DEFAULT_SMOKE_ENV)
    _expect(isinstance(env, dict) and all(isinstance(v, str) for v in env.values()),
            where, "smoke.env", "a table of string values", env)
    info.smoke_env = dict(env)
    metrics = data.get("metrics", {})
    _expect(isinstance(metrics, dict), where, "metrics", "a table", metrics)
    info.lower_is_better = _str_list(metrics.get("lower_is_better", []), where,
                                     "metrics.lower_is_better")
    info.higher_is_better = _str_list(metrics.get("higher_is_better", []), where,
                                      "metrics.higher_is_better")
    units = metrics.get("units", {})
    _expect(isinstance(units, dict) and all(isinstance(v, str) for v in units.values()),
            where, "metrics.units", "a table of metric = \"unit\" strings", units)
    info.metric_units = dict(units)
    info.work_size = _work_size(data.get("work_size", {}), where)
    for section in ("prepare", "check"):
        table = data.get(section, {})
        _expect(isinstance(table, dict), where, section, "a table with a 'command' list", table)
        cmd = _command(table.get("command"), where, f"{section}.command")
        setattr(info, f"{section}_command", cmd)
    return info


def available_templates(lab: Path | None = None) -> list[str]:
    names: set[str] = set()
    roots = [templates_dir()] + ([Path(lab) / "templates"] if lab else [])
    for root in roots:
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if (p / "experiment.py").is_file())
    return sorted(names)


def find_template(name_or_path: str | Path, lab: Path | None = None) -> TemplateInfo:
    """The template called ``name_or_path``: a folder path, else ``<lab>/templates/<name>``
    (a lab's copy overrides the bundled one), else the bundled template."""
    text = str(name_or_path)
    candidates: list[Path] = []
    if "/" in text or text.startswith((".", "~")):
        candidates.append(Path(text).expanduser())
    else:
        if lab is not None:
            candidates.append(Path(lab) / "templates" / text)
        candidates.append(templates_dir() / text)
    for cand in candidates:
        if (cand / "experiment.py").is_file():
            return load_template_info(cand)
    known = ", ".join(available_templates(lab)) or "none"
    raise TemplateError(f"template {text!r} not found (looked in "
                        f"{', '.join(str(c) for c in candidates)}); available: {known}")


def check_argv(check: list[str], template_path: Path, project: Path) -> list[str]:
    """The template's check command as run (see ``TemplateInfo.check_command``): "python"
    is the engine's interpreter, ``{project}`` the idea folder, ``{template}`` and relative
    ``*.py`` paths the pristine template folder (never the idea's copy)."""
    out = []
    for part in check:
        if part in ("python", "python3"):
            out.append(sys.executable)
        elif "{project}" in part or "{template}" in part:
            out.append(part.replace("{project}", str(project))
                       .replace("{template}", str(template_path)))
        elif part.endswith(".py") and not Path(part).is_absolute():
            out.append(str(Path(template_path) / part))
        else:
            out.append(part)
    return out


def work_size(template: TemplateInfo, configured: WorkSizeSettings | None,
              environ: Mapping[str, str], smoke: bool) -> dict[str, int]:
    """The work size one run of ``template`` gets: the template.toml defaults (full runs
    only; smoke runs keep the template's own smoke sizes), then aisci.toml
    ``[work_size.<template>]``, then ``AISCI_WORK_<KEY>`` in ``environ``."""
    size = {} if smoke else dict(template.work_size)
    if configured is not None:
        size.update({k: v for k in WORK_SIZE_KEYS
                     if (v := getattr(configured, k)) is not None})
    for key in WORK_SIZE_KEYS:
        raw = environ.get(WORK_SIZE_ENV_PREFIX + key.upper(), "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise TemplateError(f"{WORK_SIZE_ENV_PREFIX}{key.upper()}={raw!r}: expected a "
                                f"positive integer ({key} of a {template.name} run)")
        size[key] = value
    return size


def work_size_changes(template: TemplateInfo, size: Mapping[str, int],
                      smoke: bool) -> dict[str, int]:
    """The part of ``size`` that differs from what experiment.py does on its own (its
    template.toml defaults, or its smoke sizes)."""
    default = {} if smoke else template.work_size
    return {k: size[k] for k in WORK_SIZE_KEYS if k in size and default.get(k) != size[k]}


def work_size_env(template: TemplateInfo, size: Mapping[str, int],
                  smoke: bool) -> dict[str, str]:
    """The environment that tells experiment.py its work size: only the changed keys,
    so a default run is exactly the template's own (nanogpt's per-dataset defaults)."""
    changed = work_size_changes(template, size, smoke)
    return {WORK_SIZE_ENV_PREFIX + k.upper(): str(v) for k, v in changed.items()}


def work_size_tag(template: TemplateInfo, size: Mapping[str, int], smoke: bool) -> str:
    """"" for the template's default size, else e.g. "steps500-seeds1": baselines of
    different sizes live apart (``layout.baseline_dir``)."""
    changed = work_size_changes(template, size, smoke)
    return "-".join(f"{k}{v}" for k, v in changed.items())
