"""The fallback isolation layer (Landlock + no-new-privileges + seccomp + no capabilities)
and the engine's own hardening, proven with real confined child processes: through the
executor (the same hostile payload under Landlock and under bubblewrap) and directly
with a plan (the seccomp paths an older kernel would use)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aisci.engine.config import Settings
from aisci.engine.lab.store import LabStore
from aisci.engine.run import confine, sandbox
from aisci.engine.run.executor import Executor, IsolationUnavailable, RunSpec

ABI = confine.landlock_abi()[0]
HAVE_LANDLOCK = confine.probe()[0]
HAVE_BWRAP = sandbox._probe_bwrap(sandbox.shutil.which("bwrap"))[0]
needs_landlock = pytest.mark.skipif(not HAVE_LANDLOCK, reason="Landlock not usable here")
X86_64 = confine.machine() == "x86_64"

PAYLOAD = r'''
import ctypes, json, os, signal, socket, sys
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
res = {}

def attempt(name, fn):
    try:
        out = fn()
        res[name] = "SUCCEEDED " + repr(out)[:120]
    except OSError as exc:
        res[name] = f"blocked {type(exc).__name__} {exc.errno}"

def read(path):
    with open(path, "rb") as f:
        return f.read(4096)

def write(path):
    with open(path, "a") as f:
        f.write("pwned")

def ctypes_call(rc):
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc

engine = cfg["engine"]
attempt("list lab", lambda: os.listdir(cfg["lab"]))
for name, path in cfg["reads"].items():
    attempt("read " + name, lambda p=path: read(p))
for name, path in cfg["writes"].items():
    attempt("write " + name, lambda p=path: write(p))
attempt("engine environ", lambda: read(f"/proc/{engine}/environ"))
attempt("engine mem", lambda: read(f"/proc/{engine}/mem"))
attempt("signal engine", lambda: os.kill(engine, signal.SIGTERM))
attempt("signal parent", lambda: os.getppid() == engine and os.kill(engine, signal.SIGTERM))
attempt("signal engine group", lambda: os.kill(-os.getpgid(engine), 0))
attempt("ptrace engine", lambda: ctypes_call(libc.ptrace(16, engine, 0, 0)))
attempt("socket inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
attempt("connect loopback",
        lambda: socket.create_connection(("127.0.0.1", cfg["port"]), timeout=2).close())
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(
    b"x", ("127.0.0.1", cfg["port"])))
attempt("unshare userns", lambda: ctypes_call(libc.unshare(0x10000000)))
attempt("io_uring", lambda: ctypes_call(libc.syscall(425, 4, ctypes.create_string_buffer(120))))
attempt("write cwd", lambda: write("inside.txt"))
attempt("write home", lambda: write(os.path.join(os.environ["HOME"], "note.txt")))
attempt("unix socketpair", lambda: [s.close() for s in socket.socketpair()])
print("RESULT " + json.dumps(res), flush=True)
'''

#: Payloads every layer must refuse. Under bubblewrap a write to /tmp lands in the
#: sandbox's private /tmp, which vanishes with it: the host's files are checked too.
MUST_BLOCK = {"read home", "read tmp", "read lab db", "read lab config", "read other idea",
              "read lab git", "write var tmp", "write home file", "write lab config",
              "engine environ", "engine mem", "signal engine", "signal engine group",
              "ptrace engine", "connect loopback"}
#: The seccomp filter, in both layers where the architecture has one.
SECCOMP_BLOCK = {"socket inet", "udp", "unshare userns", "io_uring"} if confine.machine() else set()
LANDLOCK_BLOCK = MUST_BLOCK | SECCOMP_BLOCK | {"list lab", "signal parent", "write tmp"}
MUST_WORK = {"write cwd", "write home", "unix socketpair"}


def _layout(tmp_path: Path) -> dict[str, object]:
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    lab = tmp_path / "lab"
    store = LabStore(lab)
    idea = lab / "ideas" / "1-test"
    idea.mkdir(parents=True)
    other = lab / "ideas" / "2-other"
    other.mkdir(parents=True)
    gitdir = lab / "repos" / "1-test.git"
    gitdir.mkdir(parents=True)
    files = {
        "home": Path.home() / f".aisci-confine-{tag}",
        "tmp": tmp_path / "outside.txt",
        "lab config": lab / "aisci.toml",
        "other idea": other / "notes.txt",
        "lab git": gitdir / "config",
        "var tmp": Path("/var/tmp") / f"aisci-confine-{tag}",
    }
    for name, path in files.items():
        path.write_text(f"TOKEN-{name.replace(' ', '-')}-{tag}\n")
    return {"store": store, "idea": idea, "lab": lab, "files": files, "tag": tag}


async def _hostile_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
                       ) -> tuple[dict[str, str], str, list[int], dict[str, object]]:
    setup = _layout(tmp_path)
    files: dict[str, Path] = setup["files"]  # type: ignore[assignment]  # values are objects
    idea: Path = setup["idea"]  # type: ignore[assignment]  # values are objects
    lab: Path = setup["lab"]  # type: ignore[assignment]  # values are objects
    engine_secret = f"sk-ant-engine-secret-{setup['tag']}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", engine_secret)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.05)
    got_sigterm: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: got_sigterm.append(1))
    cfg = {"engine": os.getpid(), "port": srv.getsockname()[1], "lab": str(lab),
           "reads": {"home": str(files["home"]), "tmp": str(files["tmp"]),
                     "lab db": str(lab / "aisci.db"), "lab config": str(files["lab config"]),
                     "other idea": str(files["other idea"]), "lab git": str(files["lab git"]),
                     "etc shadow": "/etc/shadow"},
           "writes": {"home file": str(files["home"]), "tmp": str(tmp_path / "new.txt"),
                      "var tmp": str(files["var tmp"]),
                      "lab config": str(files["lab config"])}}
    (idea / "hostile.py").write_text(PAYLOAD)
    s = Settings()
    s.sandbox.mode = mode  # type: ignore[assignment]  # a str; the field is a Literal
    s.sandbox.grace_period_s = 0.5
    try:
        ex = Executor(s, store=setup["store"])  # type: ignore[arg-type]  # an object to mypy
        res = await ex.run(RunSpec(argv=[sys.executable, "hostile.py", json.dumps(cfg)],
                                   cwd=idea, log_path=idea / "logs" / "run_1.log", limit_s=30,
                                   kind="experiment", run="run_1", idea_id=None,
                                   writable=[idea]))
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        signal.signal(signal.SIGTERM, previous)
        srv.close()
        host_after = {n: files[n].read_text() for n in ("home", "var tmp")}
        files["home"].unlink()
        files["var tmp"].unlink()
    log = (idea / "logs" / "run_1.log").read_text()
    assert res.status == "ok" and res.isolation == mode, (res, log)
    line = next(x for x in log.splitlines() if " out RESULT " in x)
    outcome = json.loads(line.split(" out RESULT ", 1)[1])
    leaked = [t for t in [engine_secret, "TOKEN-", "root:"] if t in log]
    assert leaked == [], log
    assert not any("pwned" in text for text in host_after.values())
    for name, path in files.items():
        if name not in ("home", "var tmp"):
            assert "pwned" not in path.read_text(), name
    assert not (tmp_path / "new.txt").exists()
    assert (idea / "inside.txt").read_text() == "pwned"
    return outcome, log, got_sigterm, setup


@needs_landlock
async def test_landlock_contains_the_hostile_payload(tmp_path, monkeypatch):
    outcome, log, got_sigterm, _ = await _hostile_run(tmp_path, monkeypatch, "landlock")
    assert got_sigterm == []
    wrong = {k: v for k, v in outcome.items() if k in LANDLOCK_BLOCK and
             not v.startswith("blocked")}
    assert wrong == {}, log
    assert all(outcome[k].startswith("SUCCEEDED") for k in MUST_WORK), log
    assert outcome["read etc shadow"].startswith("blocked") or os.geteuid() != 0


@pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap not usable here")
async def test_bwrap_contains_the_hostile_payload_and_hides_the_lab(tmp_path, monkeypatch):
    outcome, log, got_sigterm, _ = await _hostile_run(tmp_path, monkeypatch, "bwrap")
    assert got_sigterm == []
    wrong = {k: v for k, v in outcome.items() if k in MUST_BLOCK | SECCOMP_BLOCK and
             not v.startswith("blocked")}
    assert wrong == {}, log
    assert all(outcome[k].startswith("SUCCEEDED") for k in MUST_WORK), log
    assert "aisci.db" not in outcome["list lab"] and "aisci.toml" not in outcome["list lab"]


# -- the plan directly: seccomp paths of older kernels, foreign syscall ABIs -----------

GUARD_PAYLOAD = r'''
import ctypes, fcntl, json, os, signal, sys, time
engine = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
res = {}
def attempt(name, fn):
    try:
        fn()
        res[name] = "ok"
    except OSError as exc:
        res[name] = f"blocked {exc.errno}"
def sys_call(nr, *args):
    if libc.syscall(nr, *args) < 0:
        raise OSError(ctypes.get_errno(), "")
NR = {"x86_64": {"tgkill": 234, "pidfd_open": 434, "rt_sigqueueinfo": 129},
      "aarch64": {"tgkill": 131, "pidfd_open": 434, "rt_sigqueueinfo": 138}}[os.uname().machine]
attempt("kill engine", lambda: os.kill(engine, 0))
attempt("kill all", lambda: os.kill(-1, 0))
attempt("kill engine group", lambda: os.kill(-os.getpgid(engine), 0))
attempt("tgkill engine", lambda: sys_call(NR["tgkill"], engine, engine, 0))
attempt("sigqueue engine", lambda: sys_call(NR["rt_sigqueueinfo"], engine, 0, 0))
attempt("pidfd engine", lambda: sys_call(NR["pidfd_open"], engine, 0))
r, w = os.pipe()
attempt("setown engine", lambda: fcntl.fcntl(r, fcntl.F_SETOWN, engine))
attempt("setown self", lambda: fcntl.fcntl(r, fcntl.F_SETOWN, os.getpid()))
attempt("kill own group", lambda: os.kill(0, 0))
attempt("kill own group by id", lambda: os.kill(-os.getpgrp(), 0))
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
attempt("kill own child", lambda: os.kill(pid, signal.SIGKILL))
os.waitpid(pid, 0)
attempt("tcp socket", lambda: __import__("socket").socket().close())
print(json.dumps(res), flush=True)
'''


def _confined(tmp_path: Path, code: str, *args: str, max_abi: int | None = None,
              network: bool = False) -> subprocess.CompletedProcess[str]:
    (tmp_path / "p.py").write_text(code)
    policy = confine.run_policy(read_exec=[p.resolve() for p in sandbox.interpreter_paths()],
                                read_write=[tmp_path], network=network)
    plan = confine.build_plan(policy, max_abi=max_abi)
    try:
        return subprocess.run([sys.executable, "p.py", *args], cwd=tmp_path,
                              preexec_fn=plan.apply, start_new_session=True,
                              capture_output=True, text=True, timeout=30, check=False)
    finally:
        plan.close()


@needs_landlock
def test_without_signal_scoping_seccomp_guards_the_engine(tmp_path):
    """Landlock ABI 5 (no signal scoping): the seccomp filter alone keeps signals from
    the engine, every process and foreign groups, and lets the child signal its own."""
    proc = _confined(tmp_path, GUARD_PAYLOAD, str(os.getpid()), max_abi=5)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    for name in ("kill engine", "kill all", "kill engine group", "tgkill engine",
                 "sigqueue engine", "pidfd engine", "setown engine", "tcp socket"):
        assert res[name] == "blocked 1", (name, res)
    for name in ("setown self", "kill own group", "kill own group by id", "kill own child"):
        assert res[name] == "ok", (name, res)


@needs_landlock
def test_landlock_abi_1_paths_still_run_python_and_block_tcp(tmp_path):
    proc = _confined(tmp_path, GUARD_PAYLOAD, str(os.getpid()), max_abi=1)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["tcp socket"] == "blocked 1" and res["kill engine"] == "blocked 1"


@needs_landlock
def test_network_runs_may_open_sockets(tmp_path):
    proc = _confined(tmp_path, "import socket\nsocket.socket().close()\nprint('ok')\n",
                     network=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@needs_landlock
@pytest.mark.skipif(not X86_64, reason="the x32 syscall ABI exists on x86_64 only")
def test_a_foreign_syscall_abi_kills_the_process(tmp_path):
    code = ("import ctypes\nctypes.CDLL(None).syscall(39 | 0x40000000)\n"  # x32 getpid
            "print('survived')\n")
    proc = _confined(tmp_path, code)
    assert proc.returncode == -signal.SIGSYS and "survived" not in proc.stdout


@needs_landlock
def test_a_confinement_that_cannot_be_applied_never_runs_the_command(tmp_path):
    plan = confine.build_plan(confine.run_policy(read_exec=[], read_write=[tmp_path],
                                                 network=False))
    plan.close()  # the ruleset is gone: landlock_restrict_self must fail in the child
    proc = subprocess.run(["sh", "-c", "echo ran"], preexec_fn=plan.apply,
                          capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode == 126 and proc.stdout == ""
    assert "could not confine the process: landlock_restrict_self: EBADF" in proc.stderr


def test_seccomp_program_jumps_and_placeholder():
    for arch in ("x86_64", "aarch64"):
        prog, slots = confine.seccomp_program(arch, network=False, guard_signals=True,
                                              engine_pid=4242)
        assert prog[0] == (0x20, 0, 0, 4) and prog[-1][3] == 0x80000000  # arch, then kill
        assert len(slots) == 1 and prog[slots[0]][0] == 0x15 and prog[slots[0]][3] == 0
        assert any(k == 4242 for _, _, _, k in prog)
        open_prog, _ = confine.seccomp_program(arch, network=True, guard_signals=False,
                                               engine_pid=1)
        assert len(open_prog) < len(prog)


def test_split_tree_keeps_owner_only_entries_out(tmp_path):
    root = tmp_path / "etc"
    (root / "ssl" / "certs").mkdir(parents=True)
    (root / "ssl" / "private").mkdir()
    (root / "ssl" / "private" / "key.pem").write_text("k")
    (root / "ssl" / "certs" / "ca.pem").write_text("c")
    (root / "hosts").write_text("h")
    (root / "shadow").write_text("s")
    (root / "fonts").mkdir()
    os.chmod(root / "shadow", 0o640)
    os.chmod(root / "ssl" / "private", 0o700)
    (root / "fonts" / "home-link").symlink_to(Path.home())  # never followed
    grant, private = confine.split_tree(str(root))
    assert set(private) == {root / "shadow", root / "ssl" / "private"}
    assert set(grant) == {root / "hosts", root / "fonts", root / "ssl" / "certs"}


# -- the engine ---------------------------------------------------------------------------

HARDEN = r'''
import ctypes, os, subprocess, sys
from aisci.engine.run import confine
from aisci.engine.run import sandbox
if sys.argv[1] == "harden":
    n = confine.harden_engine(sandbox.is_secret_name)
    confine.harden_engine(sandbox.is_secret_name)  # idempotent
else:
    n = 0
inherited = subprocess.run(["sh", "-c", "echo $OPENAI_API_KEY"], capture_output=True,
                           text=True).stdout.strip()
print(n, confine.is_dumpable(), os.environ["OPENAI_API_KEY"], inherited, flush=True)
sys.stdin.read()
'''


@pytest.mark.parametrize("harden", [True, False], ids=["hardened", "control"])
def test_harden_engine_scrubs_the_initial_environment(tmp_path, harden):
    secret = f"sk-proof-{time.monotonic_ns()}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPENAI_API_KEY": secret,
           "PLAIN_SETTING": "visible"}
    proc = subprocess.Popen([sys.executable, "-c", HARDEN, "harden" if harden else "no"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        scrubbed, dumpable, own, inherited = proc.stdout.readline().split()
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    finally:
        proc.communicate("", timeout=10)
    # The process itself and what it starts keep the value; /proc no longer shows it.
    assert own == secret and inherited == secret
    assert b"PLAIN_SETTING=visible" in environ and b"OPENAI_API_KEY=" in environ
    if harden:
        assert (scrubbed, dumpable) == ("1", "False")
        assert secret.encode() not in environ
    else:
        assert dumpable == "True" and secret.encode() in environ


# -- refusing instead of falling back -----------------------------------------------------

async def test_an_unusable_layer_is_refused_in_one_line(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new "
                                "namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    sandbox.clear_probe_cache()
    try:
        s = Settings()
        s.sandbox.mode = "bwrap"
        level, detail = sandbox.probe_isolation(s.sandbox)
        assert level == sandbox.UNAVAILABLE and "\n" not in detail
        assert "No permissions to create new namespace" in detail and "bubblewrap" in detail
        idea = tmp_path / "idea"
        idea.mkdir()
        with pytest.raises(IsolationUnavailable, match="sandbox.mode = bwrap"):
            await Executor(s).run(RunSpec(argv=["true"], cwd=idea, log_path=idea / "l.log",
                                          limit_s=5, kind="check", run="check"))
        assert not (idea / "l.log").exists()
        s.sandbox.mode = "auto"
        level, detail = sandbox.probe_isolation(s.sandbox)
        if HAVE_LANDLOCK:  # auto: the next layer, naming why bubblewrap is not used
            assert level == "landlock" and "No permissions to create new namespace" in detail
        else:
            assert level == sandbox.UNAVAILABLE and 'sandbox.mode = "none"' in detail
    finally:
        sandbox.clear_probe_cache()
