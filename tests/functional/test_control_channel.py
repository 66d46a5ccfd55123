"""The running engine's control socket, for real: commands and events over a Unix socket
in the lab; clients that misbehave (garbage, oversized, out of order, a viewer that stops
reading, another user) never crash, block or slow the engine; any shell drives it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aisci.engine import events as ev
from aisci.engine.cli import main as cli_main
from aisci.engine.config import Settings
from aisci.engine.control import protocol as wire
from aisci.engine.control.attached import AttachedEngine
from aisci.engine.control.client import ControlClient, engine_serving
from aisci.engine.control.server import MAX_BACKLOG_BYTES
from aisci.engine.engine import Engine
from aisci.engine.lab.store import LabStore
from aisci.engine.run.executor import RunSpec
from support.engines import IDEA, quick_settings


@contextlib.asynccontextmanager
async def running_engine(lab: Path) -> AsyncIterator[tuple[Engine, int, int]]:
    store = LabStore(lab)
    a = store.add_idea("scheduled_wd", "grokking", IDEA, status="vetoed")
    b = store.add_idea("other_idea", "grokking", {**IDEA, "Title": "Other"}, status="vetoed")
    engine = Engine(lab, quick_settings(), headless=False, store=store)
    await engine.start()
    try:
        yield engine, a, b
    finally:
        await engine.stop()


class Raw:
    """A hand-driven client: send any bytes, read reply lines."""

    def __init__(self, lab: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        with wire.socket_address(wire.socket_path(lab)) as address:
            self.sock.connect(address)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, **msg: Any) -> dict[str, Any]:
        self.send(wire.encode(msg))
        return self.reply()

    def reply(self) -> dict[str, Any]:
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def close(self) -> None:
        self.sock.close()


async def test_commands_go_through_the_socket_with_the_engines_answers(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    async with running_engine(lab) as (engine, a, _b):
        sock = lab / "aisci.sock"
        assert sock.stat().st_mode & 0o777 == 0o600

        def drive() -> tuple[Any, ...]:
            assert engine_serving(lab)
            with ControlClient(lab) as client:
                assert client.info["engine_pid"] == os.getpid()
                assert Settings.model_validate(client.info["settings"]).sandbox.mode == "none"
                client.call("edit_idea", a, {"Name": "scheduled_wd", **IDEA,
                                             "Title": "Renamed by a script"})
                with pytest.raises(wire.RemoteError) as missing:
                    client.call("approve", 999)
                with pytest.raises(wire.RemoteError) as budget:
                    client.call("raise_budget", "galaxy", 5.0)
                killed = client.call("kill_run", a, "run_9")
                return missing.value, budget.value, killed, client.call_op("processes")

        missing, budget, killed, procs = await asyncio.to_thread(drive)
        assert engine.store.get_idea(a).data["Title"] == "Renamed by a script"
        assert "no idea with id 999" in missing.message and missing.exit_code == 1
        assert "expected 'lab' or 'idea'" in budget.message
        assert killed is False and procs == []
    assert not (lab / "aisci.sock").exists()
    assert not engine_serving(lab)


async def test_bad_messages_get_an_error_reply_and_the_engine_serves_on(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    async with running_engine(lab) as (engine, a, _b):
        def drive() -> list[str]:
            raw = Raw(lab)
            errors = []
            for data in (b"garbage\n", b"[1,2]\n", b'{"v": 7, "id": 1, "op": "ping"}\n',
                         wire.encode({"id": 1, "op": "call", "method": "approve",
                                      "args": [a]})):  # before hello
                raw.send(data)
                reply = raw.reply()
                assert reply["ok"] is False
                errors.append(reply["error"]["message"])
            assert raw.request(id=2, op="hello")["ok"] is True
            for msg in ({"id": 2, "op": "ping"},                      # id not increasing
                        {"id": "x", "op": "ping"},                    # id not an integer
                        {"id": 3, "op": "hello"},                     # hello twice
                        {"id": 4, "op": "format_disk"},               # unknown op
                        {"id": 5, "op": "call", "method": "__init__", "args": []},
                        {"id": 6, "op": "call", "method": "approve", "args": [a, 2, 3]},
                        {"id": 7, "op": "call", "method": "approve", "args": "a"}):
                reply = raw.request(**msg)
                assert reply["ok"] is False, msg
                errors.append(reply["error"]["message"])
            assert raw.request(id=8, op="ping")["result"] == "pong"
            raw.send(b"x" * (wire.MAX_MESSAGE + 100))  # no newline: cannot be framed
            reply = raw.reply()
            assert reply["ok"] is False
            errors.append(reply["error"]["message"])
            with pytest.raises((ConnectionError, OSError)):
                raw.request(id=9, op="ping")
            raw.close()
            with ControlClient(lab) as client:  # the engine is fine
                assert client.call_op("ping") == "pong"
            return errors

        errors = await asyncio.to_thread(drive)
        joined = "\n".join(errors)
        for part in ("not JSON", "expected an object", "protocol version 7", "hello first",
                     "out of order", "expected an integer", "twice", "unknown op",
                     "unknown method", "approve", "args must be a list", "longer than"):
            assert part in joined, part
        assert all("\n" not in e for e in errors)
        assert engine.store.get_idea(a).status == "vetoed"  # nothing was approved


async def test_arguments_of_the_wrong_type_or_out_of_range_are_refused(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """Every call's arguments are checked against the command's signature (and the
    command's own bounds) before anything changes; a refusal is one line."""
    monkeypatch.setattr("aisci.engine.control.server.HELLO_S", 0.5)
    lab = tmp_path / "lab"
    async with running_engine(lab) as (engine, a, _b):
        def drive() -> list[str]:
            raw = Raw(lab)
            assert raw.request(id=1, op="hello")["ok"] is True
            errors = []
            bad = (["approve", ["2"]], ["approve", [10**30]], ["approve", [True]],
                   ["veto", [a, {"r": 1}]], ["retry_stage", [a, ["x"]]],
                   ["generate_ideas", [float("inf")]], ["generate_ideas", [float("nan")]],
                   ["generate_ideas", [10**6]], ["extend_run", [None, "baseline", float("nan")]],
                   ["extend_run", [None, "baseline", "10"]],
                   ["raise_budget", ["lab", float("nan")]], ["raise_budget", ["idea", 1e300]])
            for i, (method, args) in enumerate(bad, start=2):
                reply = raw.request(id=i, op="call", method=method, args=args)
                assert reply["ok"] is False, (method, args)
                assert reply["error"]["type"] != "OverflowError"
                errors.append(reply["error"]["message"])
            raw.send(b'{"v": 1, "id": 99, "op": "ping", "x": ' + b"[" * 100_000 + b"\n")
            assert "nested too deeply" in raw.reply()["error"]["message"]
            assert raw.request(id=100, op="ping")["result"] == "pong"
            raw.close()
            silent = Raw(lab)  # says nothing: closed after HELLO_S
            assert "no 'hello' within" in silent.reply()["error"]["message"]
            silent.close()
            return errors

        errors = await asyncio.to_thread(drive)
        assert all("\n" not in e and "internal error" not in e for e in errors), errors
        assert sum("expected a whole number" in e for e in errors) >= 5, errors
        assert engine.store.get_idea(a).status == "vetoed"
        assert engine.store.kv_get("pipeline.ideation_target.grokking", 0) == 0
        assert engine.store.kv_get("pipeline.budget_override") is None


async def test_a_client_never_drives_another_labs_engine(tmp_path: Path) -> None:
    """A symlink planted at a lab's socket, pointing at another lab's engine, is refused
    by the client instead of approving ideas in the wrong lab."""
    lab_a, lab_b = tmp_path / "a", tmp_path / "b"
    async with running_engine(lab_a) as (engine, a, _b):
        LabStore(lab_b).close()
        wire.socket_path(lab_b).symlink_to(wire.socket_path(lab_a))

        def drive() -> str:
            with pytest.raises(wire.ControlError) as err:
                ControlClient(lab_b)
            return err.value.message

        assert "symbolic link" in await asyncio.to_thread(drive)
        assert engine.store.get_idea(a).status == "vetoed"


def test_a_trickling_engine_cannot_hold_a_call_past_its_timeout(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    path = wire.socket_path(lab)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with wire.socket_address(path) as address:
        srv.bind(address)
    srv.listen(1)

    def trickle() -> None:
        conn, _ = srv.accept()
        conn.recv(4096)
        with contextlib.suppress(OSError):
            for _ in range(200):
                conn.sendall(b" ")  # never a whole line
                time.sleep(0.05)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(wire.ControlError, match="did not answer"):
        ControlClient(lab, timeout=1.0)
    assert time.monotonic() - t0 < 4.0
    srv.close()


VIEWER = r"""
import json, socket, sys
from aisci.engine.control import protocol as wire
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
with wire.socket_address(wire.socket_path(sys.argv[1])) as address:
    s.connect(address)
s.sendall(wire.encode({"id": 1, "op": "hello", "events": True}))
print("attached", flush=True)
total = 0
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    total += len(chunk)
print("closed after", total, flush=True)
"""


async def test_a_stopped_viewer_is_dropped_and_never_slows_the_engine(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    async with running_engine(lab) as (engine, _a, _b):
        seen = engine.bus.subscribe(maxsize=100_000, kinds=(ev.Notice, ev.ViewerChanged))
        stopped = subprocess.Popen([sys.executable, "-c", VIEWER, str(lab)],
                                   stdout=subprocess.PIPE, text=True)
        reading = await asyncio.to_thread(AttachedEngine, lab)
        await reading.start()
        got = reading.bus.subscribe(maxsize=1_000_000, kinds=(ev.RunOutput,))
        try:
            assert stopped.stdout is not None
            assert (await asyncio.to_thread(stopped.stdout.readline)).strip() == "attached"
            await wait(lambda: engine.control is not None and engine.control.viewers == 2)
            os.kill(stopped.pid, signal.SIGSTOP)
            line = "x" * 200
            batch = tuple(f"{i} {line}" for i in range(2000))
            lags: list[float] = []
            sent = 0
            # ~400 KB per event: far more than the backlog a client may have
            for _ in range(150):
                t0 = time.perf_counter()
                engine.bus.publish(ev.RunOutput(idea_id=None, run="flood", lines=batch))
                await asyncio.sleep(0)
                lags.append(time.perf_counter() - t0)
                sent += 1
                if engine.control is not None and engine.control.viewers < 2:
                    break
                await asyncio.sleep(0.01)
            await wait(lambda: engine.control is not None and engine.control.viewers == 1, 15)
            notices = [e for e in seen.drain() if isinstance(e, ev.Notice)]
            assert any("dropped" in n.message and str(stopped.pid) in n.message
                       for n in notices), notices
            assert max(lags) < 0.5, f"the engine's loop waited {max(lags):.2f} s on a client"
            assert sent * 2000 * 200 > MAX_BACKLOG_BYTES  # the drop is what bounded it
            # the viewer that reads carries on, unaffected
            engine.bus.publish(ev.RunOutput(idea_id=None, run="after", lines=("still here",)))
            await wait(lambda: any(e.run == "after" for e in list(got._buf)), 10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped.pid, signal.SIGCONT)
            out, _ = await asyncio.to_thread(stopped.communicate, None, 20)
            await reading.stop()
        assert "closed after" in out  # it learns it was dropped when it runs again


async def wait(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


OTHER_USER = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect failed:", exc.strerror)
    sys.exit(0)
try:  # the engine may have answered (refused) and closed before this is sent
    s.sendall(json.dumps({"v": 1, "id": 1, "op": "hello"}).encode() + b"\n")
except OSError:
    pass
s.settimeout(10)
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print("reply:", data.decode().strip())
"""


SYSTEM_PYTHON = "/usr/bin/python3"
"""An interpreter another user may run (the test's own may sit in root's home)."""


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root (to act as a second user) and /usr/bin/python3")
async def test_another_user_is_refused() -> None:
    top = Path(tempfile.mkdtemp(prefix="aisci-peer-"))
    try:
        top.chmod(0o755)
        lab = top / "lab"
        async with running_engine(lab):
            lab.chmod(0o755)
            sock = str(lab / "aisci.sock")

            def as_nobody() -> str:
                r = subprocess.run([SYSTEM_PYTHON, "-c", OTHER_USER, sock], user=65534,
                                   group=65534, capture_output=True, text=True, timeout=30,
                                   env={**os.environ, "HOME": "/tmp"})
                return r.stdout + r.stderr

            out = await asyncio.to_thread(as_nobody)
            assert "Permission denied" in out  # mode 0600: the kernel says no
            os.chmod(sock, 0o777)  # even when the mode is widened, the engine says no
            out = await asyncio.to_thread(as_nobody)
            assert "reply:" in out, out
            reply = json.loads(out.split("reply:", 1)[1])
            assert reply["ok"] is False and "refused" in reply["error"]["message"]
            assert "uid 65534" in reply["error"]["message"]

            def as_owner() -> Any:
                with ControlClient(lab) as client:
                    return client.call_op("ping")

            assert await asyncio.to_thread(as_owner) == "pong"  # the owner still gets in
    finally:
        shutil.rmtree(top, ignore_errors=True)


async def test_a_stale_socket_is_replaced_and_a_planted_file_refused(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(lab / "aisci.sock"))  # an engine that died without cleaning up
    dead.close()
    assert not engine_serving(lab)
    async with running_engine(lab):
        assert await asyncio.to_thread(engine_serving, lab)
    (lab / "aisci.sock").write_text("not a socket")
    store = LabStore(lab)
    engine = Engine(lab, quick_settings(), headless=False, store=store)
    notices = engine.bus.subscribe(kinds=(ev.Notice,))
    await engine.start()  # the engine runs on without its socket, and says why
    assert engine.control is None and engine.pipeline is not None
    await engine.stop()
    said = [e.message for e in notices.drain()]
    assert any("is not a socket" in m and "cannot attach" in m for m in said), said
    assert (lab / "aisci.sock").read_text() == "not a socket"


async def test_a_deep_lab_folder_is_served(tmp_path: Path) -> None:
    lab = tmp_path / ("long-folder-name-" * 4) / ("another-long-name-" * 3) / "lab"
    assert len(str(lab / "aisci.sock")) > 107
    async with running_engine(lab) as (_engine, a, _b):
        def drive() -> Any:
            with ControlClient(lab) as client:
                return client.call_op("ping")
        assert await asyncio.to_thread(drive) == "pong"


async def test_any_shell_drives_the_running_engine(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "lab"
    async with running_engine(lab) as (engine, a, b):
        store = engine.store
        c = store.add_idea("third_idea", "grokking", {**IDEA, "Title": "Third"},
                           status="checked")
        idea_dir = lab / "ideas" / f"{a}-scheduled_wd"
        idea_dir.mkdir(parents=True)
        code = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)\n"
        assert engine.executor is not None
        spec = RunSpec(argv=[sys.executable, "-c", code], cwd=idea_dir,
                       log_path=idea_dir / "logs" / "run_1.log", limit_s=120,
                       kind="experiment", run="run_1", idea_id=a)
        run = asyncio.create_task(engine.executor.run(spec))
        await wait(lambda: len(engine.processes()) == 1)

        def shell(*argv: str) -> tuple[int, str]:
            code = cli_main([*argv, "--lab", str(lab)])
            return code, ""

        assert await asyncio.to_thread(shell, "approve", str(c)) == (0, "")
        assert store.get_idea(c).status == "approved"
        assert (await asyncio.to_thread(shell, "pause", str(a), "run_1"))[0] == 0
        assert engine.processes()[0].paused
        assert (await asyncio.to_thread(shell, "resume-run", "scheduled_wd", "run_1"))[0] == 0
        assert (await asyncio.to_thread(shell, "extend", str(a), "run_1", "10"))[0] == 0
        assert engine.processes()[0].limit_s == pytest.approx(120 + 600, abs=1)
        assert (await asyncio.to_thread(shell, "status"))[0] == 0
        assert (await asyncio.to_thread(shell, "kill", str(a), "run_1"))[0] == 0
        result = await asyncio.wait_for(run, 15)
        assert result.status == "killed"
        assert (await asyncio.to_thread(shell, "kill", str(a), "run_1"))[0] == 1
        assert (await asyncio.to_thread(shell, "veto", str(b), "--why", "dup"))[0] == 0
        assert (await asyncio.to_thread(shell, "kill", "no_such_idea", "run_1"))[0] == 2
        assert (await asyncio.to_thread(shell, "extend", str(a), "run_1", "-5"))[0] == 2
        assert not engine.stop_requested.is_set()
        assert (await asyncio.to_thread(shell, "stop"))[0] == 0
        await asyncio.wait_for(engine.stop_requested.wait(), 5)
    out = capsys.readouterr()
    assert "approved" in out.out and "killed" in out.out and "time limit now" in out.out
    assert "viewers attached" in out.out and "run_1:" in out.out  # live status lines
    assert "not running; nothing killed" in out.out
    assert "Traceback" not in out.out + out.err
    # with no engine, a run command says so in one line (exit 1)
    assert cli_main(["kill", str(a), "run_1", "--lab", str(lab)]) == 1
    assert "no engine is running lab" in capsys.readouterr().err
