"""The hostile-experiment matrix: attacker payloads x isolation layers.

Each payload is experiment code written as an attacker would, run through the real
executor in an idea folder of a real lab (store, config, git directory beside it), with
a fake API key in the engine's environment and a fake credential in the engine's HOME.
The payload reports every forbidden thing it managed as a ``LEAK:`` line; the test then
also checks from outside: files outside the idea folder unchanged, no connection reached
the loopback listener, the engine got no signal, nothing left running, every secret
absent from everything the child could write, and the run ended with a clear reason
within limit + 5 s (shipped grace period).

Layers: ``bwrap`` and ``landlock`` (the fallback) must contain every payload;
``none`` (the explicit opt-in) still owns time, tree kill, memory and secrets.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from aisci.engine.config import Settings
from aisci.engine.lab.store import LabStore
from aisci.engine.run.executor import Executor, RunSpec
from aisci.engine.run.sandbox import probe_isolation

SECRET = "sk-ant-hostile-suite-7f3a9c"
HOME_SECRET = "ssh-private-hostile-suite-51b2"


def _layer_available(mode: str) -> bool:
    s = Settings()
    s.sandbox.mode = mode  # type: ignore[assignment]  # a str; the field is a Literal
    try:
        return probe_isolation(s.sandbox)[0] == mode
    except Exception:
        return False


LAYERS = [pytest.param(m, id=m, marks=pytest.mark.skipif(
    not _layer_available(m), reason=f"{m} not usable here")) for m in ("bwrap", "landlock")]
ALL_LAYERS = [*LAYERS, pytest.param("none", id="none")]

PRELUDE = '''
import ctypes, json, os, signal, socket, subprocess, sys, time
# what an attacker would know or guess; passed in a file (argv paths are kept visible)
_t = json.load(open("target.json"))
ENGINE, LAB, HOME_FILE, PORT = _t["engine"], _t["lab"], _t["home_file"], _t["port"]
def info(what, detail=""):
    print(f"INFO:{what}:{str(detail)[:200]}", flush=True)
def leak(what, detail=""):
    print(f"LEAK:{what}:{str(detail)[:200]}", flush=True)
def blocked(what, exc):
    print(f"BLOCKED:{what}:{type(exc).__name__}", flush=True)
def attempt(what, fn):
    try:
        out = fn()
    except BaseException as exc:  # noqa
        blocked(what, exc)
    else:
        leak(what, out)
'''

PAYLOADS: dict[str, str] = {
    # git: the engine's repository of this idea, and a planted .git for the engine to use
    "git": '''
repo = os.path.join(LAB, "repos", os.path.basename(os.getcwd()) + ".git")
attempt("git-hook", lambda: open(os.path.join(repo, "hooks", "post-commit"), "w").write(
    "#!/bin/sh\\ntouch " + os.path.join(LAB, "PWNED") + "\\n"))
attempt("git-config", lambda: open(os.path.join(repo, "config"), "a").write(
    "[core]\\n\\tfsmonitor = touch " + os.path.join(LAB, "PWNED") + "\\n"))
attempt("git-list", lambda: os.listdir(repo))
''',
    # writes outside the idea folder: the lab's config and store, the engine's home, /tmp
    "write-outside": '''
attempt("lab-config", lambda: open(os.path.join(LAB, "aisci.toml"), "a").write("x=1\\n"))
attempt("lab-db", lambda: open(os.path.join(LAB, "aisci.db"), "r+b").write(b"junk"))
attempt("other-idea", lambda: open(os.path.join(LAB, "ideas", "2-other", "x.py"), "w"))
attempt("home-file", lambda: open(HOME_FILE, "a").write("pwned\\n"))
try:  # a private /tmp is fine: the test checks the host's /tmp from outside
    open("/tmp/aisci-hostile-" + str(ENGINE), "w").write("x")
except OSError as exc:
    blocked("tmp-file", exc)
attempt("symlink-out", lambda: os.symlink(HOME_FILE, "planted") or open("planted").read())
attempt("hardlink-out", lambda: os.link(HOME_FILE, "hard") or open("hard").read())
''',
    # secrets: own environment, the engine's /proc, the engine's HOME
    "secrets": '''
for k, v in os.environ.items():
    if "hostile-suite" in v:
        leak("env", k)
for what, path in (("proc-environ", f"/proc/{ENGINE}/environ"),
                   ("proc-mem-maps", f"/proc/{ENGINE}/maps"),
                   ("proc-cmdline-ok", f"/proc/{ENGINE}/cmdline")):
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        blocked(what, exc)
    else:
        if b"hostile-suite" in data:
            leak(what, "secret in " + path)
attempt("home-read", lambda: open(HOME_FILE).read())
attempt("lab-db-read", lambda: open(os.path.join(LAB, "aisci.db"), "rb").read(16))
''',
    # the engine process: signals, ptrace
    "signal-engine": '''
attempt("kill-engine", lambda: os.kill(ENGINE, signal.SIGUSR1))
libc = ctypes.CDLL(None, use_errno=True)
def ptrace():
    if libc.ptrace(16, ENGINE, None, None) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
    return "attached"
attempt("ptrace-engine", ptrace)
''',
    # the network: TCP to a loopback listener, UDP, raw/netlink sockets
    "network": '''
def tcp():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=2); s.sendall(b"hello"); return "connected"
attempt("tcp-loopback", tcp)
# UDP and netlink in a private network namespace reach nothing: the listener decides
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(b"x", ("127.0.0.1", PORT))
    info("udp", "sent")
except OSError as exc:
    blocked("udp", exc)
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    info("netlink", "created")
except OSError as exc:
    blocked("netlink", exc)
''',
    # memory: grows until stopped
    "memory": '''
hog = []
while True:
    hog.append(bytearray(64 * 2**20))
    time.sleep(0.005)
''',
    # a setsid'd grandchild ignoring SIGTERM, a parent ignoring it too
    "setsid-grandchild": '''
GRAND = "import os,signal,time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" \\
        "os.fork() and os._exit(0)\\nos.setsid()\\nopen('g.pid','w').write(str(os.getpid()))\\n" \\
        "time.sleep(10**6)\\n"
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", GRAND], start_new_session=True)
time.sleep(10**6)
''',
}

#: payload -> (limit_s, what the executor must report)
EXPECT = {
    "memory": (30.0, "memory limit"),
    "setsid-grandchild": (2.0, "timed out"),
}


class _Listener:
    """A loopback TCP+UDP listener that records anything that reaches it."""

    def __init__(self) -> None:
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(4)
        self.tcp.settimeout(0.2)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self.hits: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        for _ in range(600):  # bounded: at most ~2 minutes
            if self._stop.is_set():
                return
            for sock, kind in ((self.tcp, "tcp"), (self.udp, "udp")):
                try:
                    if kind == "tcp":
                        conn, _ = sock.accept()
                        conn.close()
                    else:
                        sock.recvfrom(64)
                except OSError:
                    continue
                self.hits.append(kind)

    def close(self) -> None:
        self._stop.set()
        self._t.join(timeout=2)
        self.tcp.close()
        self.udp.close()


def _descendants_and_lab_procs(idea: Path, since: float) -> list[str]:
    """Processes started since the run began that descend from us or sit in the idea
    folder (earlier tests' own helpers, e.g. git cat-file, are not the run's)."""
    me = os.getpid()
    out = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            if proc.pid == me or (proc.info["create_time"] or 0) < since - 1.0:
                continue
            cwd = os.readlink(f"/proc/{proc.pid}/cwd") if proc.pid else ""
        except OSError:
            cwd = ""
        try:  # a process that ends meanwhile is not left behind
            ours = any(p.pid == me for p in proc.parents())
            engine_git = proc.ppid() == me and (proc.info["cmdline"] or [""])[:2] == [
                "git", "cat-file"] and not cwd.startswith(str(idea))  # GitPython's helpers
            if engine_git:
                continue
            if (ours and proc.status() != psutil.STATUS_ZOMBIE) or cwd.startswith(str(idea)):
                out.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])}")
        except psutil.Error:
            continue
    return out


def _lab(tmp_path: Path) -> tuple[Path, Path, LabStore]:
    lab = tmp_path / "lab"
    store = LabStore(lab)
    store.add_idea("hostile", "grokking", {"Title": "hostile"})
    (lab / "aisci.toml").write_text("[general]\ntemplate = 'grokking'\n")
    idea = lab / "ideas" / "1-hostile"
    idea.mkdir(parents=True)
    (lab / "ideas" / "2-other").mkdir()
    repo = lab / "repos" / "1-hostile.git"
    (repo / "hooks").mkdir(parents=True)
    (repo / "config").write_text("[core]\n\tbare = true\n")
    return lab, idea, store


def _snapshot(paths: list[Path]) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for root in paths:
        for p in [root, *(root.rglob("*") if root.is_dir() else [])]:
            if p.is_file() and not p.is_symlink():
                out[str(p)] = p.read_bytes()
            elif not p.exists():
                out[str(p)] = None
    return out


async def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, name: str):
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    home_file = home / ".config" / "credentials"
    home_file.write_text(HOME_SECRET + "\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    lab, idea, store = _lab(tmp_path)
    (idea / "hostile.py").write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(PAYLOADS[name]))
    s = Settings()
    s.sandbox.mode = mode  # type: ignore[assignment]  # a str; the field is a Literal
    limit, _ = EXPECT.get(name, (20.0, ""))
    if name == "memory":
        s.sandbox.max_rss_mb = 512
    # aisci.db is written by the engine itself during the run: checked by its header
    outside = [lab / "aisci.toml", lab / "repos", lab / "ideas" / "2-other", home]
    before = _snapshot(outside)
    got_signal: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda n, f: got_signal.append(n))
    listener = _Listener()
    (idea / "target.json").write_text(json.dumps({
        "engine": os.getpid(), "lab": str(lab), "home_file": str(home_file),
        "port": listener.port}))
    ex = Executor(s, None, store)
    t0 = time.monotonic()
    wall0 = time.time()
    try:
        res = await ex.run(RunSpec(
            argv=[sys.executable, "hostile.py"],
            cwd=idea, log_path=idea / "logs" / "run_1.log", limit_s=limit, kind="experiment",
            run="run_1", idea_id=1, writable=[idea]))
    finally:
        elapsed = time.monotonic() - t0
        listener.close()
        signal.signal(signal.SIGUSR1, old)
    left: list[str] = []
    for _ in range(30):
        left = _descendants_and_lab_procs(idea, wall0)
        if not left:
            break
        await asyncio.sleep(0.1)
    log = (idea / "logs" / "run_1.log").read_text(errors="replace")
    child_files = b"".join(p.read_bytes() for p in idea.rglob("*")
                           if p.is_file() and not p.is_symlink() and p.stat().st_nlink == 1)
    store.close()
    assert (lab / "aisci.db").read_bytes()[:16] == b"SQLite format 3\0"
    return dict(res=res, elapsed=elapsed, limit=limit, left=left, log=log,
                changed=[k for k, v in _snapshot(outside).items() if before.get(k) != v],
                signal=got_signal, net=listener.hits, child_files=child_files, lab=lab)


def _leaks(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if re.match(r"^[\d:.]+ out LEAK:", line) and "proc-cmdline-ok" not in line]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
async def test_payload_is_contained(tmp_path, monkeypatch, layer, payload):
    r = await _run(tmp_path, monkeypatch, layer, payload)
    res = r["res"]
    assert _leaks(r["log"]) == [], r["log"][-3000:]
    assert r["changed"] == [] and not (r["lab"] / "PWNED").exists()
    assert r["signal"] == [] and r["net"] == []
    assert r["left"] == []
    assert SECRET.encode() not in r["child_files"] and HOME_SECRET.encode() not in r["child_files"]
    assert not Path(f"/tmp/aisci-hostile-{os.getpid()}").exists()
    assert r["elapsed"] <= r["limit"] + 5.0
    _, expected = EXPECT.get(payload, (0, ""))
    if expected:
        assert expected in res.reason, res
    assert res.reason or res.status == "ok"


@pytest.mark.parametrize("payload", ["secrets", "memory", "setsid-grandchild"])
async def test_unisolated_opt_in_still_owns_time_memory_and_secrets(tmp_path, monkeypatch,
                                                                     payload):
    r = await _run(tmp_path, monkeypatch, "none", payload)
    leaks = [x for x in _leaks(r["log"]) if x.split("LEAK:", 1)[1].split(":")[0] in
             ("env", "proc-environ")]
    assert leaks == [], r["log"][-3000:]
    assert r["left"] == [] and r["elapsed"] <= r["limit"] + 5.0
    _, expected = EXPECT.get(payload, (0, ""))
    if expected:
        assert expected in r["res"].reason
