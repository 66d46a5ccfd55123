"""GPU discovery degrades cleanly without NVML; per-pid memory sums over a tree."""

from __future__ import annotations

from aisci.engine.run import gpu
from aisci.engine.run.gpu import GPUInfo, GPUProcess, tree_gpu_memory


class FakeProbe:
    def __init__(self, gpus: list[GPUInfo]) -> None:
        self._gpus = gpus

    def gpus(self) -> list[GPUInfo]:
        return list(self._gpus)

    def memory_by_pid(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for g in self._gpus:
            for p in g.processes:
                out[p.pid] = out.get(p.pid, 0) + (p.used_bytes or 0)
        return out

    def driver_version(self) -> str | None:
        return "555.42"


def test_without_nvml_there_are_no_gpus():
    probe = gpu.default_probe()
    if probe is None:  # the usual case on CI: no pynvml or no driver
        assert gpu.list_gpus() == []
        assert tree_gpu_memory(None, [1, 2]) is None


def test_tree_gpu_memory_sums_our_pids_only():
    probe = FakeProbe([
        GPUInfo(0, "A100", "GPU-a", 80 << 30, 70 << 30,
                (GPUProcess(10, 1 << 30), GPUProcess(99, 5 << 30))),
        GPUInfo(1, "A100", "GPU-b", 80 << 30, 79 << 30, (GPUProcess(11, 2 << 30),)),
    ])
    assert tree_gpu_memory(probe, [10, 11, 12]) == 3 << 30
    assert tree_gpu_memory(probe, [12]) == 0
    assert gpu.list_gpus(probe)[1].uuid == "GPU-b"
