"""Preflight checks: what this machine offers the configured pipeline.

Each check yields one line (ok / warn / fail). ``fail`` means something the configured
pipeline needs is missing (git, a needed API key, ...); the CLI exits non-zero then.
``warn`` is something the pipeline runs without, at a cost the line names: without TeX
the papers stay LaTeX source and are reviewed as text. API keys are reported as present
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
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.engine import GIT_INSTALL
from aisci.engine.errors import AisciError
from aisci.engine.run import ray_cluster, sandbox


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


#: What the paper stage does without each TeX tool (the pipeline runs without any).
TEX_LOSS = {
    "pdflatex": "no PDF: each paper keeps its LaTeX source and is reviewed as text",
    "bibtex": "citations in the PDF stay unresolved",
    "latexmk": "pdflatex and bibtex are run directly",
    "chktex": "the LaTeX is not style-checked",
}


def check_tex() -> list[Check]:
    """One line per TeX tool: a warning when it is missing (never a failure: the
    pipeline runs without TeX), saying what is lost and how to install it."""
    out = []
    for tool, loss in TEX_LOSS.items():
        path = shutil.which(tool)
        if path:
            out.append(Check(tool, "ok", _version([tool, "--version"]) or path))
        else:
            pkgs = SYSTEM_PACKAGES.get(tool, SYSTEM_PACKAGES["pdflatex"])
            out.append(Check(tool, "warn", f"not found: {loss}; to install it: apt-get "
                                           f"install {' '.join(pkgs)} (or `aisci setup`)"))
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
        return Check("git", "fail", f"not found: every idea is a git repository; install it "
                                    f"({GIT_INSTALL})")
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


def check_backend(settings: Settings) -> Check:
    """Where runs execute: this machine, or a Ray cluster (connected to, bounded), and
    whether idea folders are sent to the nodes or a shared filesystem is used."""
    sch = settings.scheduler
    if sch.backend == "local":
        return Check("backend", "ok", "local: experiments run on this machine")
    try:
        ray = ray_cluster.connect(settings)
        found = ray_cluster.nodes(ray)
    except AisciError as exc:
        return Check("backend", "fail", exc.message)
    gpus = sum(n.gpus for n in found)
    how = ("shared filesystem: runs work in place (the lab must be at the same path on "
           "every node)" if sch.ray_shared_fs else
           f"idea folders are sent to the node (up to {sch.ray_max_ship_mb} MB), outputs "
           "come back")
    return Check("backend", "ok" if found else "fail",
                 f"ray at {sch.ray_address}: {len(found)} node(s), {gpus} GPU(s); {how}")


def run_checks(settings: Settings, lab: Path) -> list[Check]:
    checks = [check_python(), *check_torch(), check_git(), *check_tex(),
              check_isolation(settings), check_backend(settings), *check_keys(settings),
              check_graphics(settings), check_lab(lab)]
    return checks


# -- system packages (``aisci setup``) --------------------------------------------------

#: Debian/Ubuntu packages for each tool the pipeline uses.
SYSTEM_PACKAGES: dict[str, tuple[str, ...]] = {
    "git": ("git",),
    "pdflatex": ("texlive-latex-base", "texlive-latex-recommended", "texlive-latex-extra",
                 "texlive-fonts-recommended", "texlive-bibtex-extra"),
    "latexmk": ("latexmk",),
    "chktex": ("chktex",),
    "bwrap": ("bubblewrap",),
}
APT_UPDATE_TIMEOUT_S = 300.0
APT_INSTALL_TIMEOUT_S = 2400.0
_APT_OPTIONS = ("-o", "Acquire::Retries=1", "-o", "Acquire::http::Timeout=30",
                "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")


@dataclass
class SetupPlan:
    """What ``aisci setup`` will do: the packages missing, and the command prefix that can
    install them (``[]`` as root, ``["sudo", "-n"]`` with passwordless sudo), or why it
    cannot (then the user is told the command to run)."""

    packages: list[str]
    prefix: list[str] | None
    why_not: str = ""

    def manual_command(self) -> str:
        return "sudo apt-get install -y " + " ".join(self.packages)


def missing_packages(which: Any = shutil.which) -> list[str]:
    out: list[str] = []
    for tool, pkgs in SYSTEM_PACKAGES.items():
        if not which(tool):
            out += [p for p in pkgs if p not in out]
    return out


def plan_setup(*, which: Any = shutil.which, euid: int | None = None,
               sudo_ok: Any = None) -> SetupPlan:
    """Decide what to install and how (no side effect except probing ``sudo -n true``)."""
    pkgs = missing_packages(which)
    if not pkgs:
        return SetupPlan([], None)
    if not which("apt-get"):
        return SetupPlan(pkgs, None, "no apt-get: not Debian/Ubuntu")
    uid = os.geteuid() if euid is None else euid
    if uid == 0:
        return SetupPlan(pkgs, [])
    probe = sudo_ok if sudo_ok is not None else _passwordless_sudo
    if which("sudo") and probe():
        return SetupPlan(pkgs, ["sudo", "-n"])
    return SetupPlan(pkgs, None, "not root and no passwordless sudo")


def _passwordless_sudo() -> bool:
    try:
        return subprocess.run(["sudo", "-n", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def run_setup(plan: SetupPlan, log_path: Path, echo: Any = print) -> bool:
    """Install the planned packages (bounded; a failure - offline, a locked dpkg - is
    reported and the caller goes on). True when every tool is present afterwards."""
    if not plan.packages:
        echo("system packages: everything the pipeline uses is installed")
        return True
    if plan.prefix is None:
        echo(f"system packages: cannot install ({plan.why_not}); run: "
             f"{plan.manual_command()}")
        return False
    echo(f"system packages: installing {' '.join(plan.packages)} (can take minutes; "
         f"log: {log_path})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [([*plan.prefix, "apt-get", *_APT_OPTIONS, "update"], APT_UPDATE_TIMEOUT_S),
             ([*plan.prefix, "apt-get", *_APT_OPTIONS, "install", "-y",
               "--no-install-recommends", *plan.packages], APT_INSTALL_TIMEOUT_S)]
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed below
    except OSError as exc:
        echo(f"system packages: cannot write the log {log_path} ({exc.strerror}); "
             f"run: {plan.manual_command()}")
        return False
    with log:
        for argv, timeout in steps:
            try:
                rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = -1
                step = "update" if argv[-1] == "update" else "install"
                echo(f"system packages: apt-get {step} stopped at its {timeout:.0f} s limit")
            except OSError as exc:
                rc = -1
                echo(f"system packages: cannot run apt-get ({exc.strerror})")
            if rc != 0 and "update" not in argv:
                echo(f"system packages: apt-get install failed (see {log_path}); going on "
                     f"without them; later run: {plan.manual_command()}")
                return False
    left = missing_packages()
    if left:
        echo(f"system packages: still missing {' '.join(left)}; run: "
             f"{SetupPlan(left, None).manual_command()}")
        return False
    echo("system packages: installed")
    return True
