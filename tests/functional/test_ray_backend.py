"""The Ray backend on a real local multi-node cluster (Ray's own test utilities: a head
and worker raylets on this machine, CPU only, fake GPU resources): a real experiment end
to end on a worker, the human controls on a remote run, a hostile payload on a worker,
a node removed mid-run, the engine killed with SIGKILL, an unreachable cluster.

Needs the extra: ``pip install "aisci[ray]"``; skipped without it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from aisci.engine.config import Settings  # noqa: E402
from aisci.engine.doctor import check_backend  # noqa: E402
from aisci.engine.engine import Engine  # noqa: E402
from aisci.engine.errors import EXIT_INTERRUPTED  # noqa: E402
from aisci.engine.events import EventBus, ProcessStats, RunOutput  # noqa: E402
from aisci.engine.lab.store import LabStore  # noqa: E402
from aisci.engine.lab.workspace import IdeaWorkspace  # noqa: E402
from aisci.engine.pipeline import PipelineOptions  # noqa: E402
from aisci.engine.run import ray_cluster  # noqa: E402
from aisci.engine.run.executor import HUMAN_KILL, RunSpec  # noqa: E402
from aisci.engine.run.ray_executor import RayExecutor  # noqa: E402
from aisci.engine.stages.contract import StageOutcome  # noqa: E402
from aisci.engine.stages.experiment import run_experiments  # noqa: E402
from support import DATA  # noqa: E402
from support.engines import CLI, stop_lab_engine  # noqa: E402
from support.labs import FlakyProvider, add_idea, make_ctx  # noqa: E402
from support.slow_lab import make_slow_lab  # noqa: E402

STORE = 78_643_200
# Fast failure detection, so "node lost" is seen in seconds.
SYSTEM = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
          "health_check_initial_delay_ms": 0, "health_check_timeout_ms": 500}
TICKER = ("import sys, time\ni = 0\nwhile True:\n    print('tick', i, flush=True)\n"
          "    i += 1\n    time.sleep(0.05)\n")


def _marked(prefix: str) -> list[int]:
    needle = f"{ray_cluster.RUN_MARKER}={prefix}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if any(v.startswith(needle) for v in f.read().split(b"\0")):
                    out.append(int(d))
        except OSError:
            pass
    return out


def _wait_none_marked(prefix: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _marked(prefix)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster():
    client_port = _free_port()
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "object_store_memory": STORE,
        "include_dashboard": False, "_system_config": SYSTEM,
        "ray_client_server_port": client_port})
    c.client_address = f"ray://127.0.0.1:{client_port}"
    c.workers = [c.add_node(num_cpus=2, num_gpus=1, object_store_memory=STORE)
                 for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, namespace=ray_cluster.NAMESPACE, log_to_driver=False,
             include_dashboard=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


_MADE: list[RayExecutor] = []


def _executor(*args, **kwargs) -> RayExecutor:
    ex = RayExecutor(*args, **kwargs)
    _MADE.append(ex)
    return ex


@pytest.fixture(autouse=True)
def _release_agents():
    """The agents an executor keeps per slot hold the slot's GPU: free them per test."""
    yield
    while _MADE:
        _MADE.pop().drop_agents()


def _settings(cluster, **sched: object) -> Settings:
    s = Settings()
    s.sandbox.grace_period_s = 0.5
    s.scheduler.backend = "ray"
    s.scheduler.ray_address = cluster.address
    s.scheduler.ray_connect_timeout_s = 20
    for k, v in sched.items():
        setattr(s.scheduler, k, v)
    return s


def _idea(store: LabStore) -> int:
    return store.add_idea("remote", "tiny", {"Name": "remote"}, status="approved")


def _ticking(tmp_path, iid: int, limit_s: float) -> tuple[Path, RunSpec]:
    """An idea folder whose run_1 prints a line every 50 ms until stopped, on a GPU slot."""
    idea = tmp_path / "idea"
    idea.mkdir()
    (idea / "tick.py").write_text(TICKER)
    return idea, RunSpec(argv=[sys.executable, "tick.py"], cwd=idea,
                         log_path=idea / "logs" / "r.log", limit_s=limit_s, kind="experiment",
                         run="run_1", idea_id=iid, writable=[idea], gpu="0")


def _head_id() -> str:
    return next(n.node_id for n in ray_cluster.nodes(ray) if n.head)


async def test_real_experiment_end_to_end_on_a_worker_node(cluster, lab):
    ctx = make_ctx(lab, FlakyProvider(DATA / "cassettes" / "tiny_two_runs.json"))
    ex = _executor(ctx.settings, ctx.bus, ctx.store)
    ctx.executor, ctx.scheduler = ex, ex.scheduler
    assert all("/gpu" in s.name for s in ex.scheduler.slots)
    assert len(ex.scheduler.slots) == 2  # one per worker GPU, none on the head
    workers = {n.name for n in ray_cluster.nodes(ray) if not n.head}
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    assert out.ok and out.completed and out.runs == [1, 2], out
    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    rows = [r for r in ctx.store.runs(idea_id) if r.kind == "experiment"]
    assert [(r.run, r.status) for r in rows] == [("run_1", "ok"), ("run_2", "failed"),
                                                  ("run_2", "ok")]
    for r in rows:  # every attempt ran on a worker node, not on the head
        assert r.isolation.split(" on ")[-1] in workers, r.isolation
        assert r.pid is None  # a remote pid is never recorded as one of this machine
    assert rows[1].reason == "exit code 1"
    # outputs came back and were committed with the run
    tracked = set(ws.repo.git.ls_files().split())
    assert {"run_1/final_info.json", "logs/run_1.log", "run_2/final_info.json"} <= tracked
    info = json.loads((ws.path / "run_2" / "final_info.json").read_text())
    assert info["toy"]["means"]["final_loss"] > 0
    log = (ws.path / "logs" / "run_1.log").read_text()
    assert "$ " in log and "ok" in log.splitlines()[-1]


def test_ray_client_address_runs_an_experiment_on_a_worker(cluster, tmp_path):
    """scheduler.ray_address = "ray://host:port" (Ray client: how a remote cluster is
    usually reached): an engine process connects through the head's client server, ships
    a real experiment to a worker and gets its log and outputs back."""
    code = textwrap.dedent("""
        import asyncio, sys
        from pathlib import Path
        from aisci.engine.config import Settings
        from aisci.engine.lab.store import LabStore
        from aisci.engine.run import ray_cluster
        from aisci.engine.run.executor import RunSpec
        from aisci.engine.run.ray_executor import RayExecutor

        s = Settings()
        s.scheduler.backend = "ray"
        s.scheduler.ray_address = sys.argv[1]
        s.scheduler.ray_connect_timeout_s = 120  # a loaded head may need a second try
        idea = Path(sys.argv[2])
        store = LabStore(idea.parent / "lab")
        iid = store.add_idea("remote", "tiny", {"Name": "remote"}, status="approved")

        async def main():
            ex = RayExecutor(s, None, store)
            workers = {n.name for n in ray_cluster.nodes(ex.ray) if not n.head}
            async with ex.scheduler.slot(idea_id=iid) as slot:
                res = await ex.run(RunSpec(
                    argv=[sys.executable, "exp.py"], cwd=idea, log_path=idea / "logs" / "r.log",
                    limit_s=60, kind="experiment", run="run_1", idea_id=iid, writable=[idea],
                    gpu=slot.cuda_visible_devices))
            ex.drop_agents()
            row = store.runs(iid)[-1]
            print("RESULT", res.status, row.isolation.split(" on ")[-1] in workers)

        asyncio.run(main())
    """)
    idea = tmp_path / "idea"
    idea.mkdir()
    (idea / "exp.py").write_text(
        "import os\nprint('gpu', os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
        "os.makedirs('run_1', exist_ok=True)\n"
        "open('run_1/final_info.json', 'w').write('{\"loss\": 0.5}')\n")
    p = subprocess.run([sys.executable, "-c", code, cluster.client_address, str(idea)],
                       capture_output=True, text=True, timeout=300)
    assert "RESULT ok True" in p.stdout, (p.stdout, p.stderr[-2000:])
    assert json.loads((idea / "run_1" / "final_info.json").read_text()) == {"loss": 0.5}
    assert "gpu 0" in (idea / "logs" / "r.log").read_text()


async def test_kill_extend_pause_of_a_remote_run(cluster, tmp_path):
    s = _settings(cluster)
    bus = EventBus()
    bus.bind_loop()
    sub = bus.subscribe()
    store = LabStore(tmp_path / "lab")
    ex = _executor(s, bus, store)
    iid = _idea(store)
    idea, spec = _ticking(tmp_path, iid, limit_s=2.5)
    async with ex.scheduler.slot(idea_id=iid) as slot:
        task = asyncio.create_task(ex.run(spec))
        for _ in range(200):
            procs = [p for p in ex.running() if p.run == "run_1" and p.pid]
            if procs:
                break
            await asyncio.sleep(0.1)
        assert procs and procs[0].node == slot.node
        assert ex.extend(iid, "run_1", 30) >= 32
        await asyncio.sleep(3.0)  # past the first limit: extended, still running
        assert not task.done()
        assert ex.pause(iid, "run_1")
        await asyncio.sleep(1.0)
        assert ex.resume(iid, "run_1")
        t0 = time.monotonic()
        assert ex.kill(iid, "run_1")
        res = await asyncio.wait_for(task, 10)
        assert time.monotonic() - t0 < 2.5
    assert res.status == "killed" and res.reason == HUMAN_KILL
    assert res.isolation.endswith(" on " + slot.node)
    events = sub.drain()
    lines = [ln for e in events if isinstance(e, RunOutput) for ln in e.lines]
    assert any("tick" in ln for ln in lines)
    stats = [e for e in events if isinstance(e, ProcessStats)]
    assert stats and {e.node for e in stats} == {slot.node}
    row = store.runs(iid)[-1]
    assert row.status == "killed" and row.limit_s >= 32
    assert [c["action"] for c in row.controls] == ["extend", "pause", "resume", "kill"]
    log = (idea / "logs" / "r.log").read_text()
    assert "tick" in log and "[aisci] kill" in log
    assert not _wait_none_marked(ex.lab_key)


async def test_hostile_payload_on_a_worker(cluster, tmp_path):
    s = _settings(cluster)
    store = LabStore(tmp_path / "lab")
    ex = _executor(s, None, store)
    iid = _idea(store)
    idea = tmp_path / "idea"
    idea.mkdir()
    (idea / "secret").symlink_to("/etc/hostname")  # a link to a host file: never sent
    (idea / "run_1").mkdir()
    (idea / "hostile.py").write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        print("secret visible:", os.path.exists("secret"), flush=True)
        if os.fork() == 0:            # a forked child that outlives the parent
            time.sleep(600)
            os._exit(0)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)   # a setsid grandchild
        os.symlink("/etc/passwd", "run_1/leak")     # a link to a host file in the outputs
        with open("run_1/final_info.json", "w") as f:
            f.write('{"toy": {"means": {"final_loss": 1.0}}}')
        print("done", flush=True)
    """))
    spec = RunSpec(argv=[sys.executable, "hostile.py"], cwd=idea,
                   log_path=idea / "logs" / "h.log", limit_s=30, kind="experiment",
                   run="run_1", idea_id=iid, writable=[idea], gpu="0")
    async with ex.scheduler.slot(idea_id=iid) as slot:
        assert slot.node_id != _head_id()
        res = await ex.run(spec)
    assert res.status == "ok", res
    log = (idea / "logs" / "h.log").read_text()
    assert "secret visible: False" in log
    assert (idea / "run_1" / "final_info.json").is_file()
    assert not (idea / "run_1" / "leak").exists() and not (idea / "run_1" / "leak").is_symlink()
    assert (idea / "secret").is_symlink()  # the head's folder is as it was
    assert not _wait_none_marked(ex.lab_key, 5.0)  # fork and setsid grandchild are gone


async def test_a_run_refused_on_the_node_is_a_failed_attempt_with_the_reason(cluster, tmp_path):
    s = _settings(cluster)
    s.sandbox.mode = "none"
    s.sandbox.require_isolation = True
    store = LabStore(tmp_path / "lab")
    ex = _executor(s, None, store)
    iid = _idea(store)
    idea = tmp_path / "idea"
    idea.mkdir()
    (idea / "x.py").write_text("print(1)\n")
    async with ex.scheduler.slot(idea_id=iid) as slot:
        res = await ex.run(RunSpec(argv=[sys.executable, "x.py"], cwd=idea,
                                   log_path=idea / "logs" / "x.log", limit_s=30,
                                   kind="experiment", run="run_1", idea_id=iid,
                                   writable=[idea], gpu="0"))
    assert res.status == "failed"
    assert res.reason.startswith(f"could not run on {slot.node}: sandbox.require_isolation")
    assert store.runs(iid)[-1].status == "failed"


async def test_a_plot_without_a_slot_takes_one_for_its_run(cluster, tmp_path):
    store = LabStore(tmp_path / "lab")
    ex = _executor(_settings(cluster), None, store)
    iid = _idea(store)
    idea = tmp_path / "idea"
    idea.mkdir()
    (idea / "plot.py").write_text("open('fig.png', 'wb').write(b'png')\n")
    res = await ex.run(RunSpec(argv=[sys.executable, "plot.py"], cwd=idea,
                               log_path=idea / "logs" / "plot.log", limit_s=30, kind="plot",
                               run="plot", idea_id=iid, writable=[idea]))
    assert res.ok, res
    assert (idea / "fig.png").read_bytes() == b"png"
    workers = {n.name for n in ray_cluster.nodes(ray) if not n.head}
    assert res.isolation.split(" on ")[-1] in workers
    assert ex.scheduler.stats()["granted"] == 1  # it held a slot while it ran
    # a check outside any slot (chktex, the integrity check) stays on this machine
    local = await ex.run(RunSpec(argv=[sys.executable, "-c", "print(1)"], cwd=idea,
                                 log_path=idea / "logs" / "chk.log", limit_s=30, kind="check",
                                 run="chktex", idea_id=iid, writable=[idea]))
    assert local.ok and " on " not in local.isolation and local.pid > 0


def test_doctor_names_the_backend_and_how_folders_reach_the_nodes(cluster):
    c = check_backend(_settings(cluster))
    assert c.status == "ok", c
    assert "3 node(s), 2 GPU(s)" in c.detail and "idea folders are sent to the node" in c.detail
    shared = check_backend(_settings(cluster, ray_shared_fs=True))
    assert "shared filesystem" in shared.detail
    assert check_backend(Settings()).detail.startswith("local")


def test_unreachable_cluster_is_one_clear_line(tmp_path):
    code = textwrap.dedent("""
        import sys
        from aisci.engine.config import Settings
        from aisci.engine.errors import AisciError
        from aisci.engine.run.ray_executor import RayExecutor
        s = Settings()
        s.scheduler.backend = "ray"
        s.scheduler.ray_address = "127.0.0.1:9"
        try:
            RayExecutor(s)
        except AisciError as exc:
            print("ERR", type(exc).__name__, exc.message)
            sys.exit(2)
    """)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert time.monotonic() - t0 < 30
    line = p.stdout.strip()
    assert line.startswith("ERR ClusterUnreachable Ray cluster at 127.0.0.1:9 is unreachable")
    assert "local backend is not used" in line and "\n" not in line


async def test_engine_killed_then_restarted_leaves_no_orphans(cluster, tmp_path):
    """``aisci run`` on a lab whose runs go to the cluster is killed with SIGKILL while
    its long baseline runs on a worker: the run's tree on the worker ends (the node's
    guard), and a new engine on the lab sweeps the nodes, runs the interrupted baseline
    again on the cluster, and stops it cleanly when asked."""
    lab = tmp_path / "lab"
    make_slow_lab(lab)
    cfg = lab / "aisci.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8") + textwrap.dedent(f"""
        [scheduler]
        backend = "ray"
        ray_address = "{cluster.address}"
        ray_connect_timeout_s = 20
        """), encoding="utf-8")
    key = ray_cluster.lab_key(lab)
    argv = [str(CLI), "run", "--lab", str(lab), "--num-ideas", "0"]

    def wait_marked(exclude: set[int], timeout: float = 60.0) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = set(_marked(key)) - exclude
            if found:
                return found
            time.sleep(0.2)
        return set()

    engine = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = await asyncio.to_thread(wait_marked, set())
        assert first, "the baseline did not start on the cluster"
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
        left = await asyncio.to_thread(_wait_none_marked, key, 15.0)
        assert not left, "the dead engine's run lives on on its node"
        engine = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        again = await asyncio.to_thread(wait_marked, first)
        assert again, "the restarted engine did not run the baseline again"
        await asyncio.to_thread(stop_lab_engine, lab)
        assert engine.wait(30) == EXIT_INTERRUPTED  # stopped, its state saved
        assert not await asyncio.to_thread(_wait_none_marked, key, 10.0)
    finally:
        if engine.poll() is None:
            engine.kill()


async def test_engine_facade_uses_the_cluster(cluster, tmp_path):
    """scheduler.backend = "ray": the engine's stages get the cluster's executor and
    slots; the processes pane names the node."""
    seen: dict[str, object] = {}

    async def experiment(ctx, idea_id):
        folder = tmp_path / "work"
        folder.mkdir()
        (folder / "tick.py").write_text(TICKER)
        async with ctx.scheduler.slot(idea_id=idea_id) as slot:
            seen["slot"] = slot.name
            task = asyncio.create_task(ctx.executor.run(RunSpec(
                argv=[sys.executable, "tick.py"], cwd=folder, log_path=folder / "r.log",
                limit_s=1.5, kind="experiment", run="run_1", idea_id=idea_id,
                writable=[folder], gpu=slot.cuda_visible_devices)))
            while not eng.processes():
                await asyncio.sleep(0.1)
            seen["node"] = eng.processes()[0].node
            seen["result"] = await task
        return StageOutcome()

    async def nothing(ctx, idea_id):
        return StageOutcome()

    s = _settings(cluster)
    stages = {n: nothing for n in ("novelty", "plot", "write", "integrity", "review",
                                   "improve")}
    stages["experiment"] = experiment
    eng = Engine(tmp_path / "lab", s, headless=True, stages=stages,
                 options=PipelineOptions(template="grokking", skip_idea_generation=True))
    eng.store.add_idea("x", "grokking", {"Name": "x", "Title": "t", "Experiment": "e"},
                       status="approved")
    await eng.start()
    try:
        assert isinstance(eng.executor, RayExecutor)
        assert eng.ctx is not None and eng.ctx.scheduler is eng.executor.scheduler
        await asyncio.wait_for(eng.wait_idle(), 60)
    finally:
        await eng.stop()
    assert str(seen["slot"]).startswith(str(seen["node"]) + "/gpu")
    assert seen["result"].status == "timeout"


async def test_node_removed_mid_run_ends_as_node_lost(cluster, tmp_path):
    s = _settings(cluster)
    store = LabStore(tmp_path / "lab")
    ex = _executor(s, None, store)
    iid = _idea(store)
    idea, spec = _ticking(tmp_path, iid, limit_s=120)
    before = len(ex.scheduler.slots)
    async with ex.scheduler.slot(idea_id=iid) as slot:
        task = asyncio.create_task(ex.run(spec))
        while not ex.running() or not ex.running()[0].pid:
            await asyncio.sleep(0.1)
        victim = next(w for w in cluster.workers if w.node_id == slot.node_id)
        cluster.remove_node(victim, allow_graceful=False)
        cluster.workers.remove(victim)
        res = await asyncio.wait_for(task, 60)
    assert res.status == "failed" and res.reason.startswith("node lost"), res
    assert store.runs(iid)[-1].reason.startswith("node lost")
    assert slot.node_id not in {getattr(x, "node_id", "") for x in ex.scheduler.slots}
    assert len(ex.scheduler.slots) == before - 1
    # the attempt is retried on another node (the stage's attempt budget): it runs there
    async with ex.scheduler.slot(idea_id=iid) as other:
        assert other.node_id != slot.node_id
        (idea / "ok.py").write_text("print('again')\n")
        res2 = await ex.run(RunSpec(argv=[sys.executable, "ok.py"], cwd=idea,
                                    log_path=idea / "logs" / "r2.log", limit_s=30,
                                    kind="experiment", run="run_1", attempt=2, idea_id=iid,
                                    writable=[idea], gpu="0"))
    assert res2.ok, res2
    assert not _wait_none_marked(ex.lab_key, 10.0)
