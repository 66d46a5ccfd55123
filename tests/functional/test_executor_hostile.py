"""Hostile experiments: each must be contained within its limit and leave no process
behind, under bubblewrap and under the fallback layers (rlimits + tree sweep, with and
without a pids cgroup).

Every hostile script is itself bounded (a fixed number of forks, a finite flood) so a
containment bug cannot take the machine down.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus, RunOutput
from aisci.engine.run.executor import Executor, RunSpec
from aisci.engine.run.sandbox import PidsCgroup, probe_isolation

HAVE_BWRAP = probe_isolation(Settings().sandbox)[0] == "bwrap"
_LL = Settings()
_LL.sandbox.mode = "landlock"
HAVE_LANDLOCK = probe_isolation(_LL.sandbox)[0] == "landlock"
MODES = [
    pytest.param("auto", True, id="bwrap", marks=pytest.mark.skipif(
        not HAVE_BWRAP, reason="bubblewrap not usable here")),
    pytest.param("landlock", True, id="landlock", marks=pytest.mark.skipif(
        not HAVE_LANDLOCK, reason="Landlock not usable here")),
    pytest.param("none", True, id="fallback-cgroup", marks=pytest.mark.skipif(
        PidsCgroup.root() is None, reason="no writable pids cgroup")),
    pytest.param("none", False, id="fallback-rlimits"),
]


def leftovers(idea: Path) -> list[str]:
    """Processes that are our descendants, or whose cwd is inside the idea dir."""
    me = os.getpid()
    out = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        try:
            if proc.pid == me:
                continue
            ours = any(p.pid == me for p in proc.parents())
            try:
                cwd = os.readlink(f"/proc/{proc.pid}/cwd")
            except OSError:
                cwd = ""
            if ours or cwd == str(idea) or cwd.startswith(str(idea) + "/"):
                out.append(f"{proc.pid} {proc.status()} {' '.join(proc.info['cmdline'] or [])}")
        except psutil.Error:
            continue
    return out


def settings(mode: str, cgroup: bool, **sandbox: object) -> Settings:
    s = Settings()
    s.sandbox.mode = mode  # type: ignore[assignment]  # a str; the field is a Literal
    s.sandbox.pids_cgroup = cgroup
    s.sandbox.grace_period_s = 0.5
    for k, v in sandbox.items():
        setattr(s.sandbox, k, v)
    return s


async def run_script(tmp_path: Path, s: Settings, code: str, limit_s: float,
                     bus: EventBus | None = None, **spec: object):
    idea = tmp_path / "idea"
    idea.mkdir(exist_ok=True)
    (idea / "hostile.py").write_text(code)
    ex = Executor(s, bus)
    res = await ex.run(RunSpec(argv=[sys.executable, "hostile.py"], cwd=idea,
                               log_path=idea / "logs" / "run_1.log", limit_s=limit_s,
                               kind="experiment", run="run_1", idea_id=1, **spec))
    # Leftovers get a moment to be reaped by init before we call them leaks.
    for _ in range(20):
        left = leftovers(idea)
        if not left:
            break
        await asyncio.sleep(0.1)
    return res, idea, left


@pytest.mark.parametrize(("mode", "cgroup"), MODES)
async def test_sleep_forever_times_out(tmp_path, mode, cgroup):
    t0 = time.monotonic()
    res, _, left = await run_script(tmp_path, settings(mode, cgroup),
                                    "import time\nprint('up', flush=True)\ntime.sleep(10**6)\n", 1.0)
    assert res.status == "timeout" and "timed out after 1 s" in res.reason
    assert time.monotonic() - t0 < 5
    assert left == []


SETSID_GRANDCHILD = r'''
import os, signal, subprocess, sys, time
GRAND = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork():            # double fork: the survivor is re-parented away from the tree
    os._exit(0)
os.setsid()
open('grandchild.pid', 'w').write(str(os.getpid()))
while True:
    time.sleep(1)
"""
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, '-c', GRAND], start_new_session=True)
while not os.path.exists('grandchild.pid'):
    time.sleep(0.02)
print('spawned', flush=True)
time.sleep(10**6)
'''


@pytest.mark.parametrize(("mode", "cgroup"), MODES)
async def test_setsid_grandchild_ignoring_sigterm_dies(tmp_path, mode, cgroup):
    res, idea, left = await run_script(tmp_path, settings(mode, cgroup), SETSID_GRANDCHILD, 2.0)
    assert res.status == "timeout", res
    gpid = int((idea / "grandchild.pid").read_text())
    if mode in ("none", "landlock"):  # in a pid namespace the pid is not a host pid
        assert not psutil.pid_exists(gpid) or psutil.Process(gpid).status() == "zombie"
    assert left == []


ESCAPE_TOKENLESS = r'''
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:       # re-exec with an empty environment: no run token left
        os.execve(sys.executable, [sys.executable, "-c",
                  "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                  "open('escaped.pid', 'w').write(str(os.getpid()))\ntime.sleep(600)"], {})
    os._exit(0)
while not os.path.exists('escaped.pid'):
    time.sleep(0.02)
'''  # the main process ends at once, leaving the grandchild to whoever adopts it


@pytest.mark.parametrize(("mode", "cgroup"), [*MODES, pytest.param(
    "landlock", False, id="landlock-rlimits", marks=pytest.mark.skipif(
        not HAVE_LANDLOCK, reason="Landlock not usable here"))])
async def test_a_tokenless_grandchild_outliving_its_main_process_is_killed(
        tmp_path, mode, cgroup):
    """Without a pid namespace or a pids cgroup, the grandchild is re-parented to the
    engine (its subreaper) and recognised by the run's process limit it cannot raise."""
    res, idea, left = await run_script(tmp_path, settings(mode, cgroup), ESCAPE_TOKENLESS, 10.0)
    assert res.status == "ok", res
    gpid = int((idea / "escaped.pid").read_text())
    if mode in ("none", "landlock"):  # in a pid namespace the pid is not a host pid
        assert not psutil.pid_exists(gpid) or psutil.Process(gpid).status() == "zombie"
    assert left == []


FORK_BOMB = '''
import os, time
for _ in range(8):          # at most 256 processes even if nothing stopped it
    try:
        os.fork()
    except OSError:
        pass
time.sleep(60)
'''

RELAUNCH = '''
import os, subprocess, sys, time
depth = int(os.environ.get("DEPTH", "0"))
print("depth", depth, flush=True)
if depth < 40:              # bounded chain of self-relaunches
    env = dict(os.environ, DEPTH=str(depth + 1))
    try:
        subprocess.Popen([sys.executable, __file__], env=env)
    except OSError as exc:
        print("relaunch refused:", exc, flush=True)
time.sleep(60)
'''


@pytest.mark.parametrize(("mode", "cgroup"), MODES)
@pytest.mark.parametrize("script", [FORK_BOMB, RELAUNCH], ids=["fork-bomb", "relaunch"])
async def test_fork_bomb_and_relaunch_are_stopped(tmp_path, mode, cgroup, script):
    t0 = time.monotonic()
    res, _, left = await run_script(tmp_path, settings(mode, cgroup, max_processes=16),
                                    script, 20.0)
    assert res.status in ("killed", "failed"), res
    assert "process limit" in res.reason
    assert time.monotonic() - t0 < 10
    assert left == []


async def test_stdout_flood_keeps_engine_memory_bounded(tmp_path):
    bus = EventBus()
    bus.bind_loop()
    lazy = bus.subscribe(maxsize=50, kinds=(RunOutput,))  # never read: must not grow
    me = psutil.Process()
    before = me.memory_info().rss
    peak = before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    flood = ("import sys\nline = b'y' * 1023 + b'\\n'\nblock = line * 1024\n"
             "for _ in range(1024):\n    sys.stdout.buffer.write(block)\n")  # 1 GiB
    res, idea, left = await run_script(tmp_path, settings("auto", True), flood, 2.5, bus=bus)
    done.set()
    await sampler
    assert res.status in ("timeout", "ok")
    assert left == []
    growth_mb = (peak - before) / 2**20
    assert growth_mb < 64, f"engine RSS grew by {growth_mb:.0f} MB during the flood"
    log_size = (idea / "logs" / "run_1.log").stat().st_size
    assert log_size > 20 * 2**20  # the log really received the flood
    assert len(lazy.drain()) <= 50


async def test_invalid_utf8_nul_huge_line_and_progress_bar(tmp_path):
    code = ("import sys\nw = sys.stdout.buffer.write\n"
            "w(b'bad \\xff\\xfe bytes \\x00nul\\n')\n"
            "w(b'A' * 10_000_000 + b'\\n')\n"
            "w(b'progress 1\\rprogress 2\\rprogress 3\\n')\n"
            "sys.stderr.write('E' * 3000 + 'tail-end\\n')\n"
            "w(b'end\\n')\n")
    res, idea, left = await run_script(tmp_path, settings("none", False), code, 10.0)
    assert res.status == "ok", res
    log = (idea / "logs" / "run_1.log").read_text(encoding="utf-8")
    assert "bad \ufffd\ufffd bytes nul" in log and "\x00" not in log
    assert f"line truncated, {10_000_000 - 64 * 1024} more bytes" in log
    assert max(len(x) for x in log.splitlines()) < 70 * 1024
    assert "progress 3" in log and "progress 1" not in log
    assert any(x.endswith(" out end") for x in log.splitlines())
    assert res.stderr_tail.endswith("tail-end") and len(res.stderr_tail) == 1500
    assert left == []


@pytest.mark.parametrize(("mode", "cgroup"), MODES)
async def test_secrets_are_absent_in_the_child(tmp_path, monkeypatch, mode, cgroup):
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY",
                 "MY_DB_PASSWORD"):
        monkeypatch.setenv(name, "sk-test-secret")
    monkeypatch.setenv("AISCI_TEST_PLAIN", "visible")
    s = settings(mode, cgroup, extra_env=["OPENAI_API_KEY", "AISCI_TEST_PLAIN"])
    code = "import json, os\nprint(json.dumps(dict(os.environ)))\n"
    res, idea, _ = await run_script(tmp_path, s, code, 10.0)
    assert res.status == "ok"
    line = next(x for x in (idea / "logs" / "run_1.log").read_text().splitlines()
                if " out {" in x)
    env = json.loads(line.split(" out ", 1)[1])
    assert "sk-test-secret" not in json.dumps(env)
    assert env["AISCI_TEST_PLAIN"] == "visible"
    assert env["HOME"] != os.environ.get("HOME")
    assert env["PYTHONUNBUFFERED"] == "1" and env["MPLBACKEND"] == "Agg"


@pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap not usable here")
async def test_bwrap_blocks_writes_outside_and_network(tmp_path):
    outside = Path("/var/tmp") / f"aisci-test-{os.getpid()}-{time.monotonic_ns()}"
    outside.mkdir()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.1)
    port = srv.getsockname()[1]
    code = f'''
import os, socket
def attempt(what, fn):
    try:
        fn()
        print(what, "SUCCEEDED", flush=True)
    except OSError as exc:
        print(what, "blocked", type(exc).__name__, flush=True)
attempt("write-outside", lambda: open({str(outside / "escape.txt")!r}, "w").write("x"))
# /tmp is a private tmpfs: this may "succeed" but must never reach the host's file.
try:
    open({str(tmp_path / "escape.txt")!r}, "w").write("x")
except OSError:
    pass
attempt("write-etc", lambda: open("/etc/aisci-escape", "w").write("x"))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
attempt("signal-engine", lambda: os.kill({os.getpid()}, 0))
open("inside.txt", "w").write("ok")
'''
    try:
        res, idea, left = await run_script(tmp_path, settings("bwrap", True), code, 10.0)
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()
    log = (idea / "logs" / "run_1.log").read_text()
    assert res.status == "ok" and res.isolation == "bwrap", res
    assert "SUCCEEDED" not in log, log
    assert not (outside / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not Path("/etc/aisci-escape").exists()
    assert (idea / "inside.txt").read_text() == "ok"
    assert left == []
    outside.rmdir()
