"""GPU discovery through NVML: which GPUs exist, their free memory, which processes use
them, and GPU memory per pid (for the process pane).

``pynvml`` (package nvidia-ml-py) is optional: without it, or without a driver, every
function degrades to "no GPUs" and the scheduler uses CPU slots. Anything with the
:class:`GPUProbe` shape can stand in (tests use a fake).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class GPUProcess:
    pid: int
    used_bytes: int | None


@dataclass(frozen=True)
class GPUInfo:
    index: int
    name: str
    uuid: str
    memory_total: int
    memory_free: int
    processes: tuple[GPUProcess, ...] = field(default_factory=tuple)


class GPUProbe(Protocol):
    def gpus(self) -> list[GPUInfo]: ...

    def memory_by_pid(self) -> dict[int, int]: ...

    def driver_version(self) -> str | None: ...


class NvmlProbe:
    """The real probe. Construct with :func:`default_probe`, which returns None when NVML
    cannot be initialised (no package, no driver, no GPU)."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()  # NVML handles are not documented as thread-safe

    def _procs(self, handle: Any) -> list[GPUProcess]:
        nv = self._nvml
        out: list[GPUProcess] = []
        for getter in ("nvmlDeviceGetComputeRunningProcesses",
                       "nvmlDeviceGetGraphicsRunningProcesses"):
            fn = getattr(nv, getter, None)
            if fn is None:
                continue
            with contextlib.suppress(nv.NVMLError):
                for p in fn(handle):
                    used = getattr(p, "usedGpuMemory", None)
                    out.append(GPUProcess(int(p.pid), int(used) if used else None))
        return out

    def gpus(self) -> list[GPUInfo]:
        nv = self._nvml
        out: list[GPUInfo] = []
        with self._lock:
            try:
                count = nv.nvmlDeviceGetCount()
            except nv.NVMLError:
                return []
            for i in range(count):
                try:
                    h = nv.nvmlDeviceGetHandleByIndex(i)
                    mem = nv.nvmlDeviceGetMemoryInfo(h)
                    name = nv.nvmlDeviceGetName(h)
                    uuid = nv.nvmlDeviceGetUUID(h)
                except nv.NVMLError:
                    continue
                out.append(GPUInfo(
                    index=i, name=name.decode() if isinstance(name, bytes) else str(name),
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    memory_total=int(mem.total), memory_free=int(mem.free),
                    processes=tuple(self._procs(h))))
        return out

    def memory_by_pid(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for gpu in self.gpus():
            for p in gpu.processes:
                out[p.pid] = out.get(p.pid, 0) + (p.used_bytes or 0)
        return out

    def driver_version(self) -> str | None:
        nv = self._nvml
        with self._lock, contextlib.suppress(nv.NVMLError):
            v = nv.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        return None


_default: list[NvmlProbe | None] = []
_default_lock = threading.Lock()


def default_probe() -> NvmlProbe | None:
    """The NVML probe, initialised once; None without pynvml, driver or GPU."""
    with _default_lock:
        if not _default:
            _default.append(_init_nvml())
        return _default[0]


def _init_nvml() -> NvmlProbe | None:
    try:
        import pynvml  # optional (not a dependency)
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError subclasses vary by driver; any of them means "no GPU"
        return None
    return NvmlProbe(pynvml)


def list_gpus(probe: GPUProbe | None = None) -> list[GPUInfo]:
    probe = probe if probe is not None else default_probe()
    return probe.gpus() if probe is not None else []


def tree_gpu_memory(probe: GPUProbe | None, pids: list[int]) -> int | None:
    """GPU memory used by these pids together; None when there is no NVML to ask."""
    if probe is None:
        return None
    by_pid = probe.memory_by_pid()
    return sum(by_pid.get(p, 0) for p in pids)
