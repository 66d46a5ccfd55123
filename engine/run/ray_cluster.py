"""The Ray cluster behind ``scheduler.backend = "ray"``: connecting (bounded, one clear
line when it fails, never a silent fall back to this machine), the live node table, and
moving an idea folder to a node and its outputs back under the same rules as local runs.

Ray is an optional dependency (``pip install "aisci[ray]"``): it is imported only here
and in the other ``ray_*`` modules, inside functions, so the base install never needs it.
Every node must run the same Python environment as the engine (aisci importable, the
interpreter at the same path), as Ray itself expects of a cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.errors import AisciError, UsageError
from aisci.engine.lab import safe_files
from aisci.engine.run import gpu as gpu_mod

NAMESPACE = "aisci"
#: Marker put into every remote run's environment: ``<lab key>:<run id>``. A sweep on a
#: node finds the processes of a dead engine's runs by it (see ray_agent.sweep_orphans).
RUN_MARKER = "AISCI_RAY_RUN"
_SKIP = frozenset({".git", "__pycache__"})
_OBJECT_STORE_BYTES = 78_643_200  # only for a cluster the engine starts itself (tests)
CLIENT_INIT_ATTEMPTS = 2
"""Tries at a ``ray://`` connection whose server the head failed to start (within the
connect timeout)."""


class RayNotInstalled(UsageError):
    """``scheduler.backend = "ray"`` without Ray installed."""


class ClusterUnreachable(AisciError):
    """The configured Ray cluster cannot be reached (the local backend is NOT used)."""


class ShipRefused(AisciError):
    """An idea folder (or a run's outputs) over the size bound, or unsafe to move."""


def ray_module() -> Any:
    """The ``ray`` module, imported on first use (one clear line when it is missing)."""
    try:
        import ray  # optional heavy dependency (~1 s), only with scheduler.backend = "ray"
    except ImportError:
        raise RayNotInstalled(
            'scheduler.backend = "ray" needs Ray: pip install "aisci[ray]"') from None
    return ray


def node_affinity(node_id: str) -> Any:
    """A Ray scheduling strategy that pins an actor to one node (never elsewhere)."""
    import ray.util.scheduling_strategies as strategies  # optional, with ray (see above)
    return strategies.NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def _probe_tcp(address: str, timeout: float) -> None:
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterUnreachable(
            f"Ray cluster at {address} is unreachable ({exc.strerror or exc}); start it "
            "(`ray start --head`) or fix scheduler.ray_address; the local backend is not "
            "used instead") from None


def connect(settings: Settings) -> Any:
    """Connect this process to the configured cluster (once); returns the ray module.
    Bounded by ``scheduler.ray_connect_timeout_s``; failure is one ClusterUnreachable."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    sch = settings.scheduler
    address = sch.ray_address
    if address != "auto":
        _probe_tcp(address, min(sch.ray_connect_timeout_s, 10.0))
    failure: list[BaseException] = []

    deadline = time.monotonic() + sch.ray_connect_timeout_s

    def init() -> None:
        for attempt in range(CLIENT_INIT_ATTEMPTS):
            try:
                ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                         configure_logging=False, include_dashboard=False,
                         ignore_reinit_error=True)
                return
            except ConnectionAbortedError as exc:
                # Ray client: the head's proxy could not start this client's server in
                # time (a loaded head, the first connection after an install); a second
                # try starts another one.
                if (attempt + 1 < CLIENT_INIT_ATTEMPTS and address.startswith("ray://")
                        and time.monotonic() < deadline - 5.0):
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                    continue
                failure.append(exc)
                return
            except BaseException as exc:  # reported in the caller's thread
                failure.append(exc)
                return

    # ray.init has no timeout of its own and may wait minutes on a stale address: it runs
    # in a daemon thread the engine stops waiting for (off the main thread it also leaves
    # the engine's own SIGTERM handling alone, and says so: that notice is dropped).
    logging.getLogger("ray._private.worker").addFilter(_drop_sigterm_notice)
    t = threading.Thread(target=init, name="aisci-ray-connect", daemon=True)
    t.start()
    t.join(sch.ray_connect_timeout_s)
    if t.is_alive() or failure or not ray.is_initialized():
        why = (str(failure[0]).strip().splitlines() or [type(failure[0]).__name__])[0] \
            if failure else f"no answer within {sch.ray_connect_timeout_s:g} s"
        raise ClusterUnreachable(
            f"Ray cluster at {address} is unreachable ({why[:200]}); start it (`ray start "
            "--head`) or fix scheduler.ray_address; the local backend is not used instead")
    return ray


def _drop_sigterm_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("SIGTERM handler is not set")


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    name: str
    """Short label shown in the TUI: host-<first 6 hex of the node id>."""
    gpus: int
    cpus: float
    head: bool = False


def nodes(ray: Any) -> list[NodeInfo]:
    """The cluster's live nodes, sorted by label."""
    out = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources") or {}
        host = str(n.get("NodeManagerHostname") or n.get("NodeManagerAddress") or "node")
        nid = str(n["NodeID"])
        out.append(NodeInfo(nid, f"{host.split('.')[0]}-{nid[:6]}", int(res.get("GPU", 0)),
                            float(res.get("CPU", 0.0)),
                            head=any(k.startswith("node:__internal_head__") for k in res)))
    return sorted(out, key=lambda n: (not n.head, n.name))


GPU_REPORT_TIMEOUT_S = 10.0


def _node_gpus() -> list[gpu_mod.GPUInfo] | None:
    """The GPUs NVML sees on this node (None: no NVML here); runs on the node."""
    probe = gpu_mod.default_probe()
    return None if probe is None else probe.gpus()


def node_gpus(ray: Any, node_ids: list[str], timeout: float = GPU_REPORT_TIMEOUT_S
              ) -> dict[str, list[gpu_mod.GPUInfo] | None]:
    """Each node's GPUs as its own NVML reports them (free memory, other processes),
    from a zero-CPU task pinned to the node; None for a node without NVML or that does
    not answer within ``timeout`` (its GPUs are then counted from Ray's resources)."""
    out: dict[str, list[gpu_mod.GPUInfo] | None] = dict.fromkeys(node_ids)
    if not node_ids:
        return out
    task = ray.remote(num_cpus=0, max_retries=0)(_node_gpus)
    refs = {task.options(scheduling_strategy=node_affinity(nid)).remote(): nid
            for nid in node_ids}
    done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    for ref in done:
        try:
            out[refs[ref]] = ray.get(ref, timeout=1.0)
        except Exception:  # a node that failed the probe: counted from its resources
            continue
    for ref in set(refs) - set(done):
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    return out


def alive_node_ids(ray: Any) -> set[str]:
    return {str(n["NodeID"]) for n in ray.nodes() if n.get("Alive")}


def lab_key(lab_dir: Path | None) -> str:
    """Names this lab's runs on the cluster (actors, process markers)."""
    text = f"{socket.gethostname()}:{Path(lab_dir).resolve() if lab_dir else '-'}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- moving files ----------------------------------------------------------------------

@dataclass
class Bundle:
    """Regular files of a folder, read without following symlinks: (path, mode, bytes)."""

    files: list[tuple[str, int, bytes]] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    """Folders, so empty ones exist on the other side too."""
    skipped: list[str] = field(default_factory=list)
    """Symlinks and special files, never followed nor copied."""
    size: int = 0

    def digests(self) -> dict[str, str]:
        return {p: hashlib.sha256(b).hexdigest() for p, _, b in self.files}


def pack(root: Path, *, limit_bytes: int, exclude: set[str] | None = None,
         only_changed: dict[str, str] | None = None, what: str = "idea folder",
         links_ok: bool = False) -> Bundle:
    """The regular files under ``root`` (bounded walk, no symlink followed, ``.git`` and
    ``__pycache__`` left out); with ``only_changed`` (path -> sha256), only files whose
    content differs. More than ``limit_bytes`` in all: ShipRefused. ``links_ok``: hard
    links are sent too (the head's idea folder, where the engine links prepared data);
    a run's outputs on a node are read with it off (a hard link there is not copied)."""
    out = Bundle()
    exclude = exclude or set()
    for e in safe_files.walk(root, prune=lambda e: e.name in _SKIP):
        if e.name in _SKIP or e.path in exclude:
            continue
        if e.kind == "dir":
            out.dirs.append(e.path)
            continue
        if e.kind != "file":
            out.skipped.append(e.path)
            continue
        if out.size + e.size > limit_bytes:
            raise ShipRefused(f"{what} {root} holds more than {limit_bytes // 2**20} MB "
                              "(scheduler.ray_max_ship_mb); raise it or use a shared "
                              "filesystem (scheduler.ray_shared_fs)")
        try:
            data = safe_files.read_bytes(root, e.path, limit_bytes - out.size,
                                         links_ok=links_ok)
            mode = safe_files.lstat(root, e.path).st_mode & 0o755
        except OSError:  # changed kind meanwhile (now a symlink, gone): not copied
            out.skipped.append(e.path)
            continue
        if only_changed is not None and \
                only_changed.get(e.path) == hashlib.sha256(data).hexdigest():
            continue
        out.files.append((e.path, mode, data))
        out.size += len(data)
    return out


def unpack(root: Path, bundle: Bundle, *, allowed: list[str] | None = None) -> list[str]:
    """Write the bundle's files under ``root`` (temporary file + rename, never through a
    symlink, folders made without following one). ``allowed``: relative prefixes a file
    must lie under (None: anywhere). Returns the paths refused."""
    refused = []

    def inside(rel: str) -> bool:
        parts = PurePosixPath(rel).parts
        return allowed is None or any(
            a in (".", "") or parts[:len(PurePosixPath(a).parts)] == PurePosixPath(a).parts
            for a in allowed)

    for rel in bundle.dirs:  # a folder outside ``allowed`` is left out silently
        if inside(rel):
            try:
                safe_files.make_dirs(root, rel)
            except OSError:
                refused.append(rel + "/")
    for rel, mode, data in bundle.files:
        if not inside(rel):
            refused.append(rel)
            continue
        try:
            safe_files.write_bytes(root, rel, data, make_dirs=True)
            if mode & 0o111:  # keep the executable bit (a script the run calls)
                fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fchmod(fd, 0o600 | (mode & 0o755))
                finally:
                    os.close(fd)
        except OSError:
            refused.append(rel)
    return refused
