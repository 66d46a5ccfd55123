"""Preflight checks: what this machine offers the configured pipeline.

Each check yields one line (ok / warn / fail). ``fail`` means something the configured
pipeline needs is missing; the CLI exits non-zero then. API keys are reported as present
or absent, never printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aisci.engine.config import Settings
from aisci.engine.run import sandbox


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


PROVIDER_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def api_key_var(settings: Settings, provider: str) -> str | None:
    """The environment variable holding ``provider``'s API key (a named endpoint's
    ``api_key_env``, else the provider's standard one); None when it needs none."""
    endpoint = settings.llm.endpoints.get(provider)
    return endpoint.api_key_env if endpoint is not None else PROVIDER_KEYS.get(provider)


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else ""


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 11)
    return Check("python", "ok" if ok else "fail", f"{sys.version.split()[0]} ({sys.executable})")


def check_torch() -> list[Check]:
    try:
        import torch  # deferred: heavy; a missing or broken install is what doctor reports
    except ImportError:
        return [Check("torch", "fail", "not installed: pip install torch")]
    checks = [Check("torch", "ok", torch.__version__)]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        checks.append(Check("gpu", "ok", f"{len(names)} CUDA device(s): {', '.join(names)}"))
    else:
        checks.append(Check("gpu", "warn", "no CUDA device: experiments run on the CPU"))
    return checks


def check_tex() -> list[Check]:
    out = []
    for tool in ("pdflatex", "bibtex", "latexmk", "chktex"):
        path = shutil.which(tool)
        if path:
            out.append(Check(tool, "ok", _version([tool, "--version"]) or path))
        else:
            out.append(Check(tool, "fail" if tool in ("pdflatex", "bibtex") else "warn",
                             "not found: the write stage needs TeX Live "
                             "(apt-get install texlive-latex-extra latexmk chktex)"))
    return out


def check_isolation(settings: Settings) -> Check:
    """The isolation layer experiments run under and why no stronger one is used: ok for
    bubblewrap or Landlock, a warning for sandbox.mode = "none" (a failure when
    require_isolation is set too), a failure when nothing usable is left."""
    level, detail = sandbox.probe_isolation(settings.sandbox)
    if level == sandbox.UNAVAILABLE:
        return Check("isolation", "fail", detail)
    if level == "none":
        status = "fail" if settings.sandbox.require_isolation else "warn"
        return Check("isolation", status, f"none: {sandbox.NONE_WARNING}")
    return Check("isolation", "ok", f"{level}: {detail}")


def check_git() -> Check:
    path = shutil.which("git")
    if not path:
        return Check("git", "fail", "not found: every idea is a git repository")
    return Check("git", "ok", _version(["git", "--version"]) or path)


def check_keys(settings: Settings) -> list[Check]:
    out = []
    models = {v for v in settings.models.model_dump().values() if v}
    providers = {m.split(":", 1)[0] for m in models}
    for prov, var in PROVIDER_KEYS.items():
        present = bool(os.environ.get(var))
        needed = prov in providers
        status = "ok" if present else ("fail" if needed else "warn")
        out.append(Check(var, status, ("present" if present else "absent")
                         + (" (needed by the configured models)" if needed else "")))
    for name in settings.llm.endpoints:
        key_var = api_key_var(settings, name)
        if name in providers and key_var:
            present = bool(os.environ.get(key_var))
            out.append(Check(key_var, "ok" if present else "fail",
                             f"{'present' if present else 'absent'} (endpoint {name})"))
    s2 = bool(os.environ.get("S2_API_KEY"))
    out.append(Check("S2_API_KEY", "ok" if s2 else "warn",
                     "present" if s2 else "absent: Semantic Scholar limited to 1 request/s"))
    return out


def check_graphics(settings: Settings) -> Check:
    forced = settings.tui.image_protocol
    term = os.environ.get("TERM", "")
    prog = os.environ.get("TERM_PROGRAM", "")
    if forced != "auto":
        return Check("graphics", "ok", f"{forced} (set in config)")
    if "kitty" in term or prog in ("WezTerm", "ghostty"):
        guess = "kitty"
    elif os.environ.get("TMUX"):
        guess = "halfcell (inside tmux) or sixel with tmux >= 3.4"
    else:
        guess = "sixel if the terminal answers the probe, else halfcell"
    return Check("graphics", "ok", f"auto: {guess} (TERM={term or '?'})")


def check_lab(lab: Path) -> Check:
    try:
        lab.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=lab, prefix=".aisci-doctor-"):
            pass
    except OSError as exc:
        return Check("lab", "fail", f"{lab} is not writable: {exc.strerror}")
    return Check("lab", "ok", f"{lab} is writable")


def run_checks(settings: Settings, lab: Path) -> list[Check]:
    checks = [check_python(), *check_torch(), check_git(), *check_tex(),
              check_isolation(settings), *check_keys(settings), check_graphics(settings),
              check_lab(lab)]
    return checks
