"""Orphan recovery: a previous engine's running attempts are terminated only when the
recorded pid AND start time match, whole tree included; they are marked interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
from aisci.engine.lab.store import LabStore
from aisci.engine.resume import INTERRUPTED_REASON, is_same_process, recover_lab

# A leader in its own session that starts a grandchild which calls setsid again.
TREE = (
    "import os, subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import os,time; os.setsid(); time.sleep(300)'])\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    "time.sleep(300)\n"
)


def _spawn_tree() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", TREE], start_new_session=True)
    parent = psutil.Process(proc.pid)
    for _ in range(200):
        if len(parent.children(recursive=True)) >= 2:
            break
        time.sleep(0.02)
    return proc


def test_orphan_tree_is_terminated_and_attempt_interrupted(tmp_path):
    store = LabStore(tmp_path)
    proc = _spawn_tree()
    leader = psutil.Process(proc.pid)
    kids = leader.children(recursive=True)
    assert len(kids) == 2
    row = store.add_run(None, "run_1", 1, "experiment", pid=proc.pid,
                        pid_start_time=leader.create_time(), started_at=time.time() - 5)
    report = recover_lab(store, grace_s=2.0)
    proc.wait(timeout=10)
    assert proc.pid in report.terminated_pids
    for k in kids:
        assert not psutil.pid_exists(k.pid) or k.status() == psutil.STATUS_ZOMBIE
    r = store.runs()[0]
    assert r.id == row and r.status == "interrupted" and r.reason == INTERRUPTED_REASON
    assert r.duration_s is not None and r.duration_s >= 5
    assert store.running_runs() == []
    store.close()


def test_process_with_other_start_time_is_never_signalled(tmp_path):
    store = LabStore(tmp_path)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                start_new_session=True)
    try:
        real = psutil.Process(stranger.pid).create_time()
        # Recorded start time differs: the pid was recycled by someone else.
        store.add_run(None, "run_2", 1, "experiment", pid=stranger.pid,
                      pid_start_time=real - 100.0)
        report = recover_lab(store, grace_s=1.0)
        assert report.terminated_pids == []
        assert stranger.poll() is None and is_same_process(stranger.pid, real)
        assert store.runs()[0].status == "interrupted"
    finally:
        stranger.kill()
        stranger.wait()
    store.close()


def test_dead_pid_only_marks_interrupted_and_lists_stale_stages(tmp_path):
    store = LabStore(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    idea = store.add_idea("idea_a", "grokking", {"Name": "idea_a"})
    store.set_stage(idea, "experiment", "running")
    store.add_run(idea, "run_1", 2, "experiment", pid=gone.pid, pid_start_time=time.time())
    report = recover_lab(store)
    assert report.terminated_pids == [] and len(report.interrupted_runs) == 1
    assert report.stale_stages == [(idea, "experiment")]
    assert "1 interrupted run attempt(s)" in report.summary()
    store.close()


def test_reparented_setsid_leftover_found_by_run_token_and_lab_cwd(tmp_path):
    lab = tmp_path / "lab"
    idea_dir = lab / "ideas" / "1-x"
    idea_dir.mkdir(parents=True)
    store = LabStore(lab)
    env = {**os.environ, "AISCI_RUN_TOKEN": "abc123"}
    code = "import time; time.sleep(300)"
    ours = subprocess.Popen([sys.executable, "-c", code], cwd=idea_dir, env=env,
                            start_new_session=True)
    elsewhere = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                                 start_new_session=True)
    no_token = subprocess.Popen([sys.executable, "-c", code], cwd=idea_dir,
                                start_new_session=True)
    try:
        time.sleep(0.3)
        report = recover_lab(store, grace_s=1.0)
        assert ours.wait(timeout=10) is not None and ours.pid in report.terminated_pids
        assert elsewhere.poll() is None and no_token.poll() is None
    finally:
        for p in (ours, elsewhere, no_token):
            p.kill()
            p.wait()
        store.close()
