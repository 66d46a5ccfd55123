"""Moving an idea folder to a Ray node and the outputs back (ray_cluster.pack / unpack):
no symlink followed or copied, bounded size, writes only under the writable folders and
never through a symlink. Needs no Ray."""

from __future__ import annotations

import os

import pytest
from aisci.engine.config import Settings
from aisci.engine.run import ray_cluster


def _folder(tmp_path):
    root = tmp_path / "idea"
    (root / "run_1").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / "experiment.py").write_text("print(1)\n")
    (root / "tool.sh").write_text("#!/bin/sh\n")
    (root / "tool.sh").chmod(0o755)
    (root / "secret").symlink_to("/etc/hostname")
    (root / "run_1" / "data.bin").write_bytes(b"x" * 1000)
    return root


def test_pack_skips_symlinks_and_git_and_keeps_folders(tmp_path):
    b = ray_cluster.pack(_folder(tmp_path), limit_bytes=10_000)
    names = {p for p, _, _ in b.files}
    assert names == {"experiment.py", "tool.sh", "run_1/data.bin"}
    assert "secret" in b.skipped and "empty" in b.dirs and ".git" not in b.dirs
    assert b.size == 1000 + len("print(1)\n") + len("#!/bin/sh\n")


def test_pack_is_bounded(tmp_path):
    with pytest.raises(ray_cluster.ShipRefused, match="ray_max_ship_mb"):
        ray_cluster.pack(_folder(tmp_path), limit_bytes=500)


def test_pack_only_changed(tmp_path):
    root = _folder(tmp_path)
    first = ray_cluster.pack(root, limit_bytes=10_000)
    (root / "run_1" / "final_info.json").write_text("{}")
    (root / "experiment.py").write_text("print(2)\n")
    again = ray_cluster.pack(root, limit_bytes=10_000, only_changed=first.digests())
    assert {p for p, _, _ in again.files} == {"experiment.py", "run_1/final_info.json"}


def test_unpack_round_trip_modes_and_allowed(tmp_path):
    b = ray_cluster.pack(_folder(tmp_path), limit_bytes=10_000)
    dst = tmp_path / "copy"
    dst.mkdir()
    assert ray_cluster.unpack(dst, b) == []
    assert (dst / "run_1" / "data.bin").read_bytes() == b"x" * 1000
    assert os.access(dst / "tool.sh", os.X_OK) and not os.access(dst / "experiment.py", os.X_OK)
    assert (dst / "empty").is_dir() and not (dst / "secret").exists()
    only = tmp_path / "only"
    only.mkdir()
    refused = ray_cluster.unpack(only, b, allowed=["run_1"])
    assert sorted(refused) == ["experiment.py", "tool.sh"]
    assert (only / "run_1" / "data.bin").is_file() and not (only / "experiment.py").exists()


def test_unpack_never_writes_through_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "run_1").symlink_to(outside)  # a folder swapped for a link
    (dst / "f.txt").symlink_to(outside / "target.txt")
    b = ray_cluster.Bundle(files=[("run_1/x.txt", 0o644, b"1"), ("f.txt", 0o644, b"2")])
    refused = ray_cluster.unpack(dst, b)
    assert "run_1/x.txt" in refused
    assert not (outside / "x.txt").exists() and not (outside / "target.txt").exists()
    assert (dst / "f.txt").read_bytes() == b"2" and not (dst / "f.txt").is_symlink()


def test_settings_of_the_backend():
    s = Settings()
    assert s.scheduler.backend == "local" and s.scheduler.ray_address == "auto"
    for ok in ("ray://head:10001", "10.0.0.1:6379", "auto"):
        s.scheduler.ray_address = ok
    with pytest.raises(ValueError, match="expected auto, ray://host:port or host:port"):
        s.scheduler.ray_address = "http://x"
    with pytest.raises(ValueError):
        s.scheduler.backend = "slurm"  # type: ignore[assignment]


def test_ray_missing_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ray_cluster.RayNotInstalled, match=r'pip install "aisci\[ray\]"'):
        ray_cluster.ray_module()


def test_hard_links_are_sent_from_the_head_but_not_taken_back(tmp_path):
    root = _folder(tmp_path)
    os.link(root / "run_1" / "data.bin", root / "linked.bin")  # prepared data, linked
    sent = ray_cluster.pack(root, limit_bytes=10_000, links_ok=True)
    assert "linked.bin" in {p for p, _, _ in sent.files}
    back = ray_cluster.pack(root, limit_bytes=10_000)
    assert "linked.bin" in back.skipped and "run_1/data.bin" in back.skipped


class _FakeRay:
    """What RayScheduler reads of a cluster: its node table."""

    def __init__(self, table: list[tuple[str, int]]) -> None:
        self.table = table

    def nodes(self) -> list[dict[str, object]]:
        return [{"Alive": True, "NodeID": nid * 8, "NodeManagerHostname": f"host{nid}",
                 "Resources": {"GPU": gpus, "CPU": 8.0}} for nid, gpus in self.table]


def test_cluster_slots_follow_each_nodes_own_gpu_report(monkeypatch):
    """Per node, from its NVML: GPUs other processes use are left out, the freest cards
    are granted first, pinned by UUID; a node without NVML counts Ray's GPUs."""
    from aisci.engine.run.gpu import GPUInfo, GPUProcess
    from aisci.engine.run.ray_scheduler import RayScheduler

    def card(node: str, i: int, free_gb: int, busy: bool = False) -> GPUInfo:
        return GPUInfo(i, "A100", f"GPU-{node}{i}", 80 << 30, free_gb << 30,
                       (GPUProcess(4242, 9 << 30),) if busy else ())

    reports = {"a" * 8: [card("a", 0, 10), card("a", 1, 70, busy=True)],
               "b" * 8: [card("b", 0, 30), card("b", 1, 60)],
               "c" * 8: None}
    asked: list[list[str]] = []

    def node_gpus(ray, node_ids, timeout=10.0):
        asked.append(sorted(node_ids))
        return {nid: reports[nid] for nid in node_ids}

    monkeypatch.setattr(ray_cluster, "node_gpus", node_gpus)
    s = Settings()
    s.scheduler.backend = "ray"
    fake = _FakeRay([("a", 2), ("b", 2), ("c", 1)])
    sched = RayScheduler(s, fake)
    assert [(x.name, x.cuda_visible_devices) for x in sched.slots] == [
        ("hostb-bbbbbb/gpu1", "GPU-b1"), ("hostb-bbbbbb/gpu0", "GPU-b0"),
        ("hosta-aaaaaa/gpu0", "GPU-a0"), ("hostc-cccccc/gpu0", "0")]
    assert "4 GPU slot(s); 1 GPU(s) skipped (used by other processes)" in sched.note
    # a node that joins later is asked alone, and its slots are offered
    reports["d" * 8] = [card("d", 0, 80)]
    fake.table.append(("d", 1))
    sched.refresh()
    assert asked[-1] == ["d" * 8] and sched.slots[-1].cuda_visible_devices == "GPU-d0"
    # two cards per run: only a node with two idle cards gives a slot
    s.scheduler.run_gpus = 2
    assert [x.cuda_visible_devices for x in RayScheduler(s, _FakeRay(
        [("a", 2), ("b", 2)])).slots] == ["GPU-b1,GPU-b0"]
