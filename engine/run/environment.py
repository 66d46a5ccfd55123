"""The environment a run really used, recorded by the engine as ``run_<i>/run_env.json``.

The writeup and the integrity check read this file instead of guessing hardware
("V100") or versions. It is collected in the engine process, never by code the model
can edit: the interpreter is the one the engine starts experiments with
(``sys.executable``), library versions come from package metadata (no heavy imports),
GPU facts from NVML when present or ``nvidia-smi``, restricted to the GPUs the run's
slot exposed (``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from aisci.engine.lab import safe_files

RUN_ENV_NAME = "run_env.json"


def _dist_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


@functools.cache
def _torch_build() -> tuple[str | None, str | None]:
    """(cuda, cudnn) versions torch was built with, read from torch/version.py and the
    cuDNN wheel's metadata, so the engine never imports torch just to describe it."""
    spec = importlib.util.find_spec("torch")
    cuda = None
    if spec and spec.submodule_search_locations:
        vfile = Path(next(iter(spec.submodule_search_locations))) / "version.py"
        try:
            m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", vfile.read_text(), re.M)
            cuda = m.group(1) if m else None
        except OSError:
            cuda = None
    cudnn = None
    for dist in ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12", "nvidia-cudnn-cu11"):
        cudnn = _dist_version(dist)
        if cudnn:
            break
    return cuda, cudnn


@functools.cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvml_gpus() -> tuple[list[str], str | None] | None:
    try:
        import pynvml  # optional (not a dependency)
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names, driver.decode() if isinstance(driver, bytes) else str(driver)
    finally:
        pynvml.nvmlShutdown()


def _smi_gpus() -> tuple[list[str], str | None] | None:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    rows = [r.split(",") for r in out.stdout.strip().splitlines() if r.strip()]
    return [r[0].strip() for r in rows], (rows[0][1].strip() if rows and len(rows[0]) > 1 else None)


@functools.cache
def host_gpus() -> tuple[tuple[str, ...], str | None]:
    """All GPU names on the host and the driver version ((), None without GPUs)."""
    found = _nvml_gpus() or _smi_gpus()
    if not found:
        return (), None
    return tuple(found[0]), found[1]


def visible_gpus(cuda_visible_devices: str | None) -> list[str]:
    """The GPUs a child saw: the host's GPUs filtered by CUDA_VISIBLE_DEVICES indices
    ("" = none, None = all)."""
    names, _ = host_gpus()
    if cuda_visible_devices is None:
        return list(names)
    out = []
    for part in cuda_visible_devices.split(","):
        part = part.strip()
        if part.isdigit() and int(part) < len(names):
            out.append(names[int(part)])
    return out


def seeds_from(final_info: dict[str, Any] | None) -> list[Any] | None:
    """Seeds the experiment reported in final_info.json ("seeds" at top level or per
    dataset), deduplicated in order; None when it reported none."""
    if not isinstance(final_info, dict):
        return None
    found: list[Any] = []
    candidates = [final_info.get("seeds")]
    candidates += [v.get("seeds") for v in final_info.values() if isinstance(v, dict)]
    for c in candidates:
        if isinstance(c, list):
            found.extend(s for s in c if isinstance(s, int | str) and s not in found)
    return found or None


def collect_run_env(cuda_visible_devices: str | None = None,
                    final_info: dict[str, Any] | None = None,
                    python: str | None = None) -> dict[str, Any]:
    cuda, cudnn = _torch_build()
    _, driver = host_gpus()
    gpus = visible_gpus(cuda_visible_devices)
    return {
        "python": platform.python_version(),
        "python_executable": python or sys.executable,
        "torch": _dist_version("torch"),
        "cuda": cuda if gpus else None,
        "cuda_build": cuda,
        "cudnn": cudnn if gpus else None,
        "gpus": gpus,
        "driver": driver if gpus else None,
        "cuda_visible_devices": cuda_visible_devices,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "hostname_sha256": hashlib.sha256(socket.gethostname().encode()).hexdigest(),
        "numpy": _dist_version("numpy"),
        "seeds": seeds_from(final_info),
    }


def write_run_env(run_dir: Path, cuda_visible_devices: str | None = None,
                  final_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record the run's environment as ``run_dir/run_env.json``. The run folder was
    written by the experiment: whatever it left at the file's place (a folder, a FIFO,
    a link) goes, the file is replaced (temporary file + rename), never written through
    a symlink or hard link, and a symlinked run folder is refused
    (safe_files.UnsafeFile)."""
    env = collect_run_env(cuda_visible_devices, final_info)
    run_dir = Path(run_dir)
    safe_files.make_dirs(run_dir.parent, run_dir.name)
    safe_files.remove_tree(run_dir.parent, f"{run_dir.name}/{RUN_ENV_NAME}")
    safe_files.write_text(run_dir.parent, f"{run_dir.name}/{RUN_ENV_NAME}",
                          json.dumps(env, indent=2) + "\n")
    return env
