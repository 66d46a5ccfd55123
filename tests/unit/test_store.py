"""The lab store: schema migrations, concurrent writers in one process, and one owning
process per lab (a second one gets "lab in use by pid N" or opens it read-only)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from aisci.engine.lab.store import MIGRATIONS, SCHEMA_VERSION, LabInUse, LabStore, StoreError


def test_schema_is_migrated_and_wal(tmp_path):
    with LabStore(tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    # Reopening does not re-run migrations.
    with LabStore(tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION


def test_refuses_a_newer_schema(tmp_path):
    LabStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "aisci.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this aisci"):
        LabStore(tmp_path)


def test_ideas_stages_runs_and_costs_round_trip(tmp_path):
    with LabStore(tmp_path) as s:
        iid = s.add_idea("wd_sched", "grokking", {"Title": "T"}, source="ideation")
        s.update_idea(iid, status="approved", action="approve", source="human",
                      detail={"why": "promising"})
        assert s.find_idea("wd_sched").status == "approved" and s.find_idea(str(iid)).id == iid
        assert [h["action"] for h in s.idea_history(iid)] == ["created", "approve"]
        s.set_stage(iid, "experiment", "running")
        s.set_stage(iid, "experiment", "failed", {"reason": "x"})
        s.set_stage(iid, "experiment", "running")
        st = s.stages(iid)["experiment"]
        assert st["state"] == "running" and st["attempts"] == 2 and st["detail"] == {"reason": "x"}
        rid = s.add_run(iid, "run_1", 1, "experiment", pid=123, limit_s=60.0)
        assert [r.id for r in s.running_runs()] == [rid]
        s.update_run(rid, status="ok", metrics={"val_loss": 1.5}, exit_code=0)
        assert s.runs(iid)[0].metrics == {"val_loss": 1.5} and s.running_runs() == []
        s.record_llm_call(stage="ideate", idea_id=iid, provider="p", model="m", cost_usd=0.5)
        s.record_llm_call(stage="write", idea_id=None, provider="p", model="m", cost_usd=None)
        assert s.spend() == 0.5 and s.spend(iid) == 0.5
        assert s.spend_by("stage") == {"ideate": 0.5, "write": 0.0}
        assert s.unknown_cost_calls() == 1
        s.kv_set("k", {"a": [1]})
        assert s.kv_get("k") == {"a": [1]} and s.kv_get("missing", 3) == 3
        s.cache_put("openalex", "q", [{"title": "x"}])
        assert s.cache_get("openalex", "q", 60)[0] == [{"title": "x"}]
        assert s.cache_get("openalex", "q", -1) is None


def test_failed_transaction_leaves_nothing_behind(tmp_path):
    with LabStore(tmp_path) as s:
        with pytest.raises(RuntimeError):
            with s.transaction() as conn:
                conn.execute("INSERT INTO kv(key, value) VALUES ('half', '1')")
                raise RuntimeError("crash in the middle")
        assert s.kv_get("half") is None


async def test_concurrent_tasks_and_threads_write_10k_rows(tmp_path):
    store = LabStore(tmp_path)
    per_thread, tasks, per_task = 3000, 8, 500
    errors: list[BaseException] = []

    def thread_writer(n: int) -> None:
        try:
            for i in range(per_thread):
                store.record_llm_call(stage=f"t{n}", idea_id=None, provider="p", model="m",
                                      input_tokens=i, cost_usd=0.001)
        except BaseException as exc:  # reported below
            errors.append(exc)

    async def task_writer(n: int) -> None:
        for i in range(per_task):
            store.add_event("Tick", {"task": n, "i": i})
            if i % 50 == 0:
                await asyncio.sleep(0)  # interleave with the other tasks

    threads = [threading.Thread(target=thread_writer, args=(n,)) for n in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    await asyncio.gather(*[task_writer(n) for n in range(tasks)])
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert not errors
    total = 2 * per_thread + tasks * per_task
    assert total == 10_000
    assert len(store.llm_calls()) == 2 * per_thread
    assert len(store.events(limit=100_000)) == tasks * per_task
    assert store.integrity_check() == "ok"
    assert store.spend() == pytest.approx(6.0)
    print(f"10k concurrent rows in {elapsed:.2f}s")
    store.close()


_OPEN_IN_CHILD = """
import sys
from aisci.engine.lab.store import LabInUse, LabStore
try:
    LabStore(sys.argv[1])
except LabInUse as exc:
    print(exc)
    sys.exit(4)
print("opened")
"""

_READ_IN_CHILD = """
import sys
from aisci.engine.lab.store import LabStore
s = LabStore(sys.argv[1], read_only=True)
print(s.get_idea(1).name, s.integrity_check())
"""


def test_second_process_gets_lab_in_use_with_the_pid(tmp_path):
    store = LabStore(tmp_path)
    store.add_idea("first", "grokking", {})
    try:
        r = subprocess.run([sys.executable, "-c", _OPEN_IN_CHILD, str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 4, r.stderr
        assert f"in use by pid {os.getpid()}" in r.stdout
        assert LabStore.lock_holder(tmp_path) == os.getpid()
        # Read-only access works meanwhile.
        r = subprocess.run([sys.executable, "-c", _READ_IN_CHILD, str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["first", "ok"]
    finally:
        store.close()
    # Once the owner closes, the lab is free again.
    assert LabStore.lock_holder(tmp_path) is None
    r = subprocess.run([sys.executable, "-c", _OPEN_IN_CHILD, str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "opened" in r.stdout


def test_same_process_second_store_is_refused_and_read_only_cannot_write(tmp_path):
    with LabStore(tmp_path):
        with pytest.raises(LabInUse, match="in use by pid"):
            LabStore(tmp_path)
        ro = LabStore(tmp_path, read_only=True)
        with pytest.raises(StoreError, match="read-only"):
            ro.kv_set("x", 1)
        ro.close()


def test_read_only_needs_an_existing_lab(tmp_path):
    with pytest.raises(StoreError, match="no lab at .* \\(no aisci.db\\)"):
        LabStore(tmp_path / "nowhere", read_only=True)
