"""Isolation layers for untrusted experiment code: a clean environment, bubblewrap,
resource limits and a pids cgroup.

The executor asks :func:`plan_sandbox` how to start a child. With bubblewrap available
and permitted the child sees the system read-only, a private /tmp and HOME (tmpfs), no
network, only its idea directory (plus listed paths) writable, GPU device nodes, and its
own pid namespace (it cannot see or signal the engine; killing the namespace's init
kills every process in it). Without bubblewrap the child gets its own session, rlimits
and a private HOME directory; the engine's tree sweep (procstats) does the rest.
:func:`probe_isolation` reports the level that is actually available ("bwrap",
"landlock" or "rlimits") and is what ``aisci doctor`` shows.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import itertools
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aisci.engine.config import SandboxSettings

#: Variables the child may inherit from the engine (exact names); LC_* is allowed too.
ENV_ALLOWLIST = (
    "PATH", "LANG", "LANGUAGE", "TERM", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "AISCI_SMOKE", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
)

_SECRET_WORDS = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT|PWD")
_SECRET_PREFIXES = (
    "ANTHROPIC_", "OPENAI_", "AWS_", "HF_", "HUGGING", "GOOGLE_", "GCP_", "GCLOUD_", "AZURE_",
    "GITHUB_", "GH_", "GITLAB_", "S2_", "WANDB_", "COHERE_", "MISTRAL_", "DEEPSEEK_",
    "OPENROUTER_", "GROQ_", "TOGETHER_", "SSH_", "GPG_", "GNUPG", "DOCKER_", "NPM_", "PYPI_",
    "TWINE_", "SLACK_", "DATABASE_", "DB_", "KUBE",
)

#: Bubblewrap namespace flags; --unshare-net is added unless the run needs the network.
_BWRAP_NS = ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--unshare-user", "--uid", "1000", "--gid", "1000")
_SANDBOX_HOME = "/tmp/home"


def is_secret_name(name: str) -> bool:
    """True for names that look like credentials; such variables never reach a child."""
    upper = name.upper()
    return bool(_SECRET_WORDS.search(upper)) or upper.startswith(_SECRET_PREFIXES)


def child_environment(settings: SandboxSettings, *, home: str, tmpdir: str,
                      extra: dict[str, str] | None = None,
                      parent: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: an allowlist of the parent's variables, the settings'
    ``extra_env`` names, then ``extra`` (the run's own values), minus anything that looks
    like a secret, whichever list named it."""
    source = dict(os.environ if parent is None else parent)
    env: dict[str, str] = {}
    for name, value in source.items():
        if name in ENV_ALLOWLIST or name.startswith("LC_") or name in settings.extra_env:
            env[name] = value
    env.update(extra or {})
    env.update({"HOME": home, "TMPDIR": tmpdir, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg",
                "PYTHONDONTWRITEBYTECODE": "1"})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    return {k: v for k, v in env.items() if not is_secret_name(k)}


# -- probing -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _probe(mode: str, bwrap: str | None) -> tuple[str, str]:
    if mode == "none":
        return "rlimits", "sandbox.mode = none: own session, rlimits, process-tree watchdog"
    if mode in ("auto", "bwrap"):
        if bwrap is None:
            why = "bubblewrap not installed (apt-get install bubblewrap)"
        else:
            argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                    "--tmpfs", "/tmp", *_BWRAP_NS, "--unshare-net", "--die-with-parent",
                    "--new-session", "--", "/bin/true"]
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=10, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                why = f"bubblewrap could not start: {exc}"
            else:
                if proc.returncode == 0:
                    return "bwrap", (f"{_bwrap_version(bwrap)}: read-only system, private "
                                     "/tmp and HOME, no network, own pid/user namespace")
                err = proc.stderr.decode(errors="replace").strip().splitlines()
                why = "bubblewrap is blocked here: " + (err[-1] if err else
                                                        f"exit {proc.returncode}")
        return "rlimits", f"{why}; falling back to own session, rlimits, process-tree watchdog"
    # mode == "landlock": no maintained binding is a dependency of aisci.
    return "rlimits", ("Landlock requested but no Landlock binding is installed; own "
                       "session, rlimits, process-tree watchdog")


def _bwrap_version(bwrap: str) -> str:
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                             timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out or "bubblewrap"


def probe_isolation(settings: SandboxSettings) -> tuple[str, str]:
    """(level, detail) for the strongest isolation available under these settings.
    Cached per mode; the first call runs one tiny sandboxed command."""
    level, detail = _probe(settings.mode, shutil.which("bwrap"))
    cg = PidsCgroup.root() if settings.pids_cgroup else None
    if cg is not None:
        detail += f"; per-run pids cgroup ({cg[0]})"
    return level, detail


def clear_probe_cache() -> None:
    _probe.cache_clear()


# -- resource limits ---------------------------------------------------------------------

def rlimit_preexec(settings: SandboxSettings, cgroup_procs: Iterable[str | None], *,
                   subreaper: bool = True, memory_bytes: int | None = None
                   ) -> Callable[[], None]:
    """A pre-exec hook for the child: joins the run's cgroups (pids, memory), then sets
    rlimits; ``memory_bytes`` caps each process's data segment (RLIMIT_DATA: heap and
    private writable mappings), the backstop of the tree's memory limit.
    Only async-signal-safe-ish calls (no imports, no locks): it runs after fork."""
    nproc = settings.max_processes
    fsize = settings.max_file_size_mb * 1024 * 1024
    procs_files = [p for p in cgroup_procs if p]
    prctl = _prctl() if subreaper else None  # bwrap's pid namespace already holds the tree

    def hook() -> None:
        if prctl is not None:
            # The child becomes the subreaper of its own tree: a double-forked, setsid'd
            # grandchild stays its descendant, where the engine's tree sweep finds it.
            prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        for procs in procs_files:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        # RLIMIT_NPROC counts per real uid and is not enforced for root; the pids cgroup
        # and the engine's process-count watchdog cover that case.
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))

    return hook


_PR_SET_CHILD_SUBREAPER = 36


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


class PidsCgroup:
    """A per-run pids cgroup (v1 pids controller or v2 with pids enabled): a hard cap on
    the number of processes, enforced even for root, and a membership list that no
    setsid or double fork can leave."""

    _counter = itertools.count(1)

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    @functools.lru_cache(maxsize=1)
    def root() -> tuple[str, Path] | None:
        """("v1"|"v2", parent directory) where this process may create pids cgroups."""
        v1 = Path("/sys/fs/cgroup/pids")
        if v1.is_dir() and (v1 / "cgroup.procs").exists() and os.access(v1, os.W_OK):
            return "v1", v1
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                if line.startswith("0::"):
                    base = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
                    if (os.access(base, os.W_OK) and
                            "pids" in (base / "cgroup.subtree_control").read_text().split()):
                        return "v2", base
        return None

    @classmethod
    def create(cls, max_processes: int) -> PidsCgroup | None:
        found = cls.root()
        if found is None:
            return None
        path = found[1] / f"aisci-{os.getpid()}-{next(cls._counter)}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_processes))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def limit_hit(self) -> bool:
        """True once a fork was refused because of pids.max."""
        with contextlib.suppress(OSError, ValueError):
            events = (self.path / "pids.events").read_text().split()
            return int(events[events.index("max") + 1]) > 0
        return False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


# -- bubblewrap --------------------------------------------------------------------------

@dataclass
class BwrapLayout:
    """What the sandbox shows: the writable paths and the read-only ones that must stay
    visible inside the masked HOME (the interpreter, its libraries, argv files)."""

    cwd: Path
    writable: list[Path] = field(default_factory=list)
    network: bool = False
    visible: list[Path] = field(default_factory=list)


def interpreter_paths() -> list[Path]:
    """Directories the child's Python needs: prefixes, the real executable, sys.path."""
    out: list[Path] = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable)), *sys.path):
        if p and os.path.isabs(p) and os.path.exists(p):
            out.append(Path(p))
    return out


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def bwrap_argv(bwrap: str, layout: BwrapLayout, argv: list[str],
               home: str | None = None) -> list[str]:
    """The full bubblewrap command line running ``argv`` inside the sandbox."""
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--dir", _SANDBOX_HOME]
    # Mask the engine user's real home (keys, configs, shell history); the child's HOME is
    # a private tmpfs dir. The private /tmp and the masked home would also hide what the
    # child needs (a venv or a lab under /tmp, pyenv under ~), so the interpreter's
    # directories and the files named on the command line are re-exposed read-only.
    masked = [Path("/tmp")]
    real_home = Path(home or os.path.expanduser("~")).resolve()
    if real_home != Path("/") and real_home.is_dir():
        args += ["--tmpfs", str(real_home)]
        masked.append(real_home)
    seen: set[Path] = set()
    for p in [*interpreter_paths(), *layout.visible]:
        rp = p.resolve()
        if rp in seen or rp in masked or not any(_inside(rp, m) for m in masked):
            continue
        seen.add(rp)
        args += ["--ro-bind-try", str(rp), str(rp)]
    for dev in sorted(glob.glob("/dev/nvidia*")):
        args += ["--dev-bind-try", dev, dev]
    args += ["--dev-bind-try", "/dev/dri", "/dev/dri"]
    for w in [layout.cwd, *layout.writable]:
        rw = Path(w).resolve()
        args += ["--bind", str(rw), str(rw)]
    args += [*_BWRAP_NS]
    if not layout.network:
        args.append("--unshare-net")
    args += ["--die-with-parent", "--new-session", "--chdir", str(Path(layout.cwd).resolve()),
             "--", *argv]
    return args


def sandbox_home() -> str:
    return _SANDBOX_HOME


def existing_paths(argv: Iterable[str]) -> list[Path]:
    """Absolute paths named in argv (scripts, the template's checker) to keep visible."""
    return [Path(a) for a in argv if os.path.isabs(a) and os.path.exists(a)]
