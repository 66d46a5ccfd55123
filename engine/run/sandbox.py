"""Isolation layers for untrusted experiment code: a clean environment, bubblewrap or
Landlock, resource limits and a pids cgroup.

``sandbox.mode`` picks the layer and nothing falls back silently:

- "bwrap": the child sees the system read-only, a private /tmp and HOME (tmpfs), no
  network, the lab hidden except its own idea directory (plus listed paths, writable
  or read-only), GPU device nodes, and its own pid namespace (it cannot see or signal
  the engine; killing the namespace's init kills every process in it).
- "landlock" (:mod:`aisci.engine.run.confine`): Landlock, no-new-privileges, a seccomp
  filter and an empty capability set; the system read-only, only the run's directory and
  a private HOME/TMPDIR writable, nothing else of the user's files, the lab or /tmp
  readable, no TCP, no signal to anything outside the run.
- "auto": bubblewrap if it works here, else Landlock if it works, else refuse with both
  reasons and the fix.
- "none": an explicit opt-in to run without isolation: own session, rlimits, a private
  HOME directory and the engine's tree sweep (procstats) only. Shown as a warning.

:func:`probe_isolation` reports the level in force ("bwrap", "landlock", "none", or
"unavailable" when the executor must refuse) and why no stronger one is used; it is what
``aisci doctor`` shows.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import itertools
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aisci.engine.config import SandboxSettings
from aisci.engine.lab.secret_names import is_secret_name
from aisci.engine.run import confine
from aisci.engine.run.cgroups import controller_root

#: Variables the child may inherit from the engine (exact names); LC_* is allowed too.
ENV_ALLOWLIST = (
    "PATH", "LANG", "LANGUAGE", "TERM", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "AISCI_SMOKE", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
)

#: Bubblewrap namespace flags; --unshare-net is added unless the run needs the network.
_BWRAP_NS = ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--unshare-user", "--uid", "1000", "--gid", "1000")
_SANDBOX_HOME = "/tmp/home"


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

LEVELS = ("bwrap", "landlock", "none")
UNAVAILABLE = "unavailable"
NONE_WARNING = "experiments run WITHOUT isolation (sandbox.mode = none)"
_FIX_BWRAP = "install bubblewrap or allow unprivileged user namespaces"
_FIX = f'{_FIX_BWRAP}, or set sandbox.mode = "none" to run experiments without isolation'


@functools.lru_cache(maxsize=8)
def _probe(mode: str, bwrap: str | None) -> tuple[str, str]:
    if mode == "none":
        return "none", ("sandbox.mode = none: NO isolation (own session, rlimits, "
                        "process-tree watchdog only)")
    bwrap_why = "not tried (sandbox.mode = landlock)"
    if mode in ("auto", "bwrap"):
        ok, bwrap_why = _probe_bwrap(bwrap)
        if ok:
            return "bwrap", bwrap_why
        if mode == "bwrap":
            return UNAVAILABLE, (f"sandbox.mode = bwrap but bubblewrap {bwrap_why}: "
                                 f'{_FIX_BWRAP}, or set sandbox.mode = "auto"')
    ok, landlock = confine.probe()
    if ok:
        return "landlock", f"{landlock}; bubblewrap {bwrap_why}"
    if mode == "landlock":
        return UNAVAILABLE, (f'sandbox.mode = landlock but Landlock is unusable: {landlock}; '
                             'set sandbox.mode = "auto" or "none"')
    return UNAVAILABLE, (f"no isolation layer works here (bubblewrap {bwrap_why}; Landlock: "
                         f"{landlock}): {_FIX}")


def _probe_bwrap(bwrap: str | None) -> tuple[bool, str]:
    """(works, detail or why not)."""
    if bwrap is None:
        return False, "is not installed"
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", *_BWRAP_NS, "--unshare-net", "--die-with-parent",
            "--new-session", "--", "/bin/true"]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"could not start: {exc}"
    if proc.returncode == 0:
        return True, (f"{_bwrap_version(bwrap)}: read-only system, private /tmp and HOME, "
                      "lab hidden, no network, own pid/user namespace")
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    return False, "is blocked here (" + (err[-1] if err else f"exit {proc.returncode}") + ")"


def _bwrap_version(bwrap: str) -> str:
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                             timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out or "bubblewrap"


def probe_isolation(settings: SandboxSettings) -> tuple[str, str]:
    """(level, detail): the layer runs get under these settings ("bwrap", "landlock",
    "none") or "unavailable" when the executor must refuse to start anything; the detail
    names the layer and why a stronger one is not used (or, refused, both reasons and the
    fix). Cached per mode; the first call starts one tiny sandboxed process per layer."""
    level, detail = _probe(settings.mode, shutil.which("bwrap"))
    cg = PidsCgroup.root() if settings.pids_cgroup and level != UNAVAILABLE else None
    if cg is not None:
        detail += f"; per-run pids cgroup ({cg[0]})"
    return level, detail


def isolation_warning(settings: SandboxSettings) -> str | None:
    """One line for ``aisci status`` and the TUI header when experiments run without
    isolation or cannot run at all; None when a layer is in force."""
    level, detail = probe_isolation(settings)
    if level == "none":
        return NONE_WARNING
    if level == UNAVAILABLE:
        return f"experiments cannot run: {detail}"
    return None


def clear_probe_cache() -> None:
    _probe.cache_clear()
    confine.probe.cache_clear()


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
        return ctypes.CDLL(None, use_errno=True).prctl
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
    def root() -> tuple[str, Path] | None:
        """("v1"|"v2", parent directory) where this process may create pids cgroups."""
        return controller_root("pids")

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


# -- bubblewrap and Landlock ------------------------------------------------------------

@dataclass
class BwrapLayout:
    """What the sandbox shows (bubblewrap or Landlock): the run's directory and extra
    writable paths, the read-only paths that must stay visible (argv files; the
    interpreter is added by the layer), and the paths to hide although they contain what
    is shown (the lab: its store, its config, the other ideas, its git directories)."""

    cwd: Path
    writable: list[Path] = field(default_factory=list)
    network: bool = False
    visible: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)


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


def _real_home(home: str | None) -> Path | None:
    real_home = Path(home or os.path.expanduser("~")).resolve()
    return real_home if real_home != Path("/") and real_home.is_dir() else None


def bwrap_argv(bwrap: str, layout: BwrapLayout, argv: list[str],
               home: str | None = None, seccomp_fd: int | None = None) -> list[str]:
    """The full bubblewrap command line running ``argv`` inside the sandbox;
    ``seccomp_fd`` (see :func:`bwrap_seccomp_fd`) must be passed to the process."""
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--dir", _SANDBOX_HOME]
    # Mask the engine user's real home (keys, configs, shell history), /run, the lab and
    # the system files only their owner may read (a root engine's child maps to root); the
    # child's HOME is a private tmpfs dir. The masks would also hide what the child needs
    # (a venv or a lab under /tmp, pyenv under ~), so the interpreter's directories and
    # the files named on the command line are re-exposed read-only, and the run's own
    # directories read-write. Mounts are applied shallowest first, so a deeper one wins:
    # the lab stays hidden under a re-exposed ancestor, its idea directory visible in it.
    # The masks are remounted read-only at the end: a write there fails (EROFS) instead
    # of landing in a throwaway tmpfs.
    masked = [Path("/tmp")]
    mounts: list[tuple[Path, int, list[str]]] = []
    read_only: list[Path] = []
    real_home = _real_home(home)
    # /run holds the host's service sockets (D-Bus, docker.sock, ...), reachable through
    # the filesystem whatever the network namespace: hidden too.
    run = [Path("/run")] if Path("/run").is_dir() and not Path("/run").is_symlink() else []
    hidden = [Path(h).resolve() for h in layout.hidden]
    for hide in ([real_home] if real_home else []) + run + hidden:
        mounts.append((hide, 0, ["--tmpfs", str(hide)]))
        masked.append(hide)
        read_only.append(hide)
    for private in confine.split_tree("/etc")[1]:
        if private.is_dir():
            mounts.append((private, 0, ["--tmpfs", str(private)]))
            read_only.append(private)
        else:
            mounts.append((private, 0, ["--ro-bind-try", "/dev/null", str(private)]))
    seen: set[Path] = set()
    etc_targets = [p for p in confine.split_tree("/etc")[0] if run and _inside(p, run[0])]
    for p in [*interpreter_paths(), *layout.visible, *etc_targets]:
        rp = p.resolve()
        if rp in seen or rp in masked or not any(_inside(rp, m) for m in masked):
            continue
        seen.add(rp)
        mounts.append((rp, 1, ["--ro-bind-try", str(rp), str(rp)]))
    for w in [layout.cwd, *layout.writable]:
        rw = Path(w).resolve()
        mounts.append((rw, 2, ["--bind", str(rw), str(rw)]))
    for _, _, mount in sorted(mounts, key=lambda m: (len(m[0].parts), m[1])):
        args += mount
    for path in dict.fromkeys(read_only):
        args += ["--remount-ro", str(path)]
    for dev in sorted(glob.glob("/dev/nvidia*")):
        args += ["--dev-bind-try", dev, dev]
    args += ["--dev-bind-try", "/dev/dri", "/dev/dri"]
    args += [*_BWRAP_NS]
    if not layout.network:
        args.append("--unshare-net")
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += ["--die-with-parent", "--new-session", "--chdir", str(Path(layout.cwd).resolve()),
             "--", *argv]
    return args


def bwrap_seccomp_fd(network: bool) -> int | None:
    """A pipe's read end holding the seccomp program (confine's filter: no io_uring,
    namespaces, mounts, bpf, keyrings, ptrace...; no socket but AF_UNIX without network)
    for bubblewrap to load before it starts the command. The caller passes it to the
    child (``pass_fds``) and closes it afterwards."""
    data = confine.seccomp_bytes(network=network)
    if data is None:
        return None
    r, w = os.pipe()
    try:
        os.write(w, data)  # a few hundred bytes, far below the pipe's buffer
    finally:
        os.close(w)
    return r


def landlock_plan(layout: BwrapLayout, private_dir: Path,
                  home: str | None = None) -> confine.Plan:
    """The Landlock confinement of one run, prepared in the engine: read + execute on
    the system, the interpreter and the argv files; everything on the run's directory,
    its writable extras and its private HOME/TMPDIR (``private_dir``); nothing else.
    Interpreter paths that contain the lab, the user's home or /tmp (``python -m`` run
    from such a folder puts it on sys.path) are left out: a grant covers all beneath."""
    shadowed = [Path("/"), Path("/tmp").resolve(), *(Path(h).resolve() for h in layout.hidden)]
    real_home = _real_home(home)
    if real_home is not None:
        shadowed.append(real_home)
    read_exec = [p.resolve() for p in interpreter_paths()]
    read_exec = [p for p in read_exec if not any(_inside(s, p) for s in shadowed)]
    read_exec += [p.resolve() for p in layout.visible]
    writable = [Path(w).resolve() for w in [layout.cwd, *layout.writable, private_dir]]
    policy = confine.run_policy(read_exec=read_exec, read_write=writable,
                                network=layout.network)
    return confine.build_plan(policy)


def confined_preexec(hook: Callable[[], None], plan: confine.Plan | None
                     ) -> Callable[[], None]:
    """``hook`` (cgroups, rlimits), then the plan's confinement, last before exec."""
    if plan is None:
        return hook

    def run() -> None:
        hook()
        plan.apply()

    return run


def sandbox_home() -> str:
    return _SANDBOX_HOME


def existing_paths(argv: Iterable[str]) -> list[Path]:
    """Absolute paths named in argv (scripts, the template's checker) to keep visible."""
    return [Path(a) for a in argv if os.path.isabs(a) and os.path.exists(a)]
