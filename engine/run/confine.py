"""The isolation layer used where bubblewrap cannot run, and the engine's own hardening.

For a child: Landlock (filesystem; TCP, signal and abstract-socket scoping where the
kernel's ABI has them), no-new-privileges, a seccomp filter and, for a root engine, an
empty capability set. :func:`build_plan` prepares everything in the engine (the
Landlock ruleset with all its rules, the seccomp program, the capability structures);
the child's pre-exec hook (:meth:`Plan.apply`) then only makes a handful of syscalls on
objects that already exist.

Seccomp: a hand-written classic BPF program loaded with prctl(PR_SET_SECCOMP), not
libseccomp through ctypes. The filter is a short deny list with four argument checks;
written by hand it needs no runtime library (libseccomp is absent from minimal images),
it is built and can be inspected in the engine, and the child loads it with one prctl
on bytes that already exist (libseccomp would compile it after the fork). It covers
x86_64 and aarch64 and kills the process on any other syscall ABI (i386, x32).

For the engine: :func:`harden_engine` makes it non-dumpable (its children cannot read
its /proc environ or memory, nor ptrace it) and scrubs secret values from its initial
environment block, the bytes /proc/<pid>/environ shows.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import glob
import os
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aisci.engine.errors import AisciError

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long] * 5
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_capset = _libc.capset
_capset.restype = ctypes.c_int
_capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

# -- constants (linux/landlock.h, linux/prctl.h, linux/seccomp.h, linux/filter.h) --------

_SYS_LANDLOCK_CREATE_RULESET = 444  # the same on x86_64 and aarch64
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
_FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
_FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

READ_EXEC = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
READ_ONLY = FS_READ_FILE | FS_READ_DIR
DEVICE = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV | FS_READ_DIR
ALL_FS = _FS_ABI1 | FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_SECUREBITS = 28
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SECCOMP_MODE_FILTER = 2
# NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED and NO_CAP_AMBIENT_RAISE, each locked.
_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
_CAP_SETPCAP = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_BPF_LD_W_ABS = 0x20
_BPF_JEQ = 0x15
_BPF_JGE = 0x35
_BPF_JSET = 0x45
_BPF_RET = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_X32_SYSCALL_BIT = 0x40000000

_AF_UNIX = 1
_F_SETOWN = 8
_F_SETOWN_EX = 15
_CLONE_NEW_NAMESPACES = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                         | 0x20000000 | 0x40000000)  # NEWNS CGROUP UTS IPC USER PID NET

#: Syscalls refused with EPERM: kernel attack surface, other processes' memory, mounts,
#: namespaces, io_uring (its socket and connect operations would bypass this filter).
_DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
           "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
           "fsmount", "fspick", "mount_setattr", "bpf", "perf_event_open", "kexec_load",
           "kexec_file_load", "init_module", "finit_module", "delete_module", "keyctl",
           "add_key", "request_key", "userfaultfd", "open_by_handle_at", "name_to_handle_at",
           "unshare", "setns", "io_uring_setup", "io_uring_enter", "io_uring_register",
           "quotactl_fd")

_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "socket": 41, "clone": 56, "clone3": 435, "kill": 62, "tkill": 200, "tgkill": 234,
        "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "pidfd_open": 434,
        "pidfd_send_signal": 424, "fcntl": 72,
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438,
        "kcmp": 312, "mount": 165, "umount2": 166, "pivot_root": 155, "move_mount": 429,
        "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "bpf": 321, "perf_event_open": 298, "kexec_load": 246,
        "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "keyctl": 250, "add_key": 248, "request_key": 249,
        "userfaultfd": 323, "open_by_handle_at": 304, "name_to_handle_at": 303,
        "unshare": 272, "setns": 308, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "quotactl_fd": 443, "iopl": 172, "ioperm": 173,
    },
    "aarch64": {
        "socket": 198, "clone": 220, "clone3": 435, "kill": 129, "tkill": 130, "tgkill": 131,
        "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "pidfd_open": 434,
        "pidfd_send_signal": 424, "fcntl": 25,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438,
        "kcmp": 272, "mount": 40, "umount2": 39, "pivot_root": 41, "move_mount": 429,
        "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "bpf": 280, "perf_event_open": 241, "kexec_load": 104,
        "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "keyctl": 219, "add_key": 217, "request_key": 218,
        "userfaultfd": 282, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "unshare": 97, "setns": 268, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "quotactl_fd": 443,
    },
}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X86_ONLY = ("iopl", "ioperm")

#: Read + execute for the child: the system's programs and libraries. /etc is added
#: entry by entry (see :func:`split_tree`), /proc and /sys read-only, /dev node by node.
SYSTEM_READ_EXEC = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/opt",
                    "/nix/store", "/var/lib/texmf", "/var/cache/fontconfig")
SYSTEM_READ_ONLY = ("/proc", "/sys")
#: Device nodes the child may open read-write. /dev/shm (POSIX shared memory and
#: semaphores, which multiprocessing and torch need) is shared with the host's processes
#: of the same user: a known limit of this layer (bubblewrap gives a private one).
DEVICE_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
DEVICE_DIRS_RW = ("/dev/shm",)
_MAX_TREE_ENTRIES = 20_000
_MAX_ENV_BYTES = 64 * 1024 * 1024


class ConfineError(AisciError, OSError):
    """The isolation layer cannot be prepared (one line, names what failed)."""


def machine() -> str | None:
    """"x86_64" or "aarch64" for a 64-bit process on those; None elsewhere."""
    m = os.uname().machine
    m = {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)
    return m if m in _SYSCALLS and struct.calcsize("P") == 8 else None


# -- Landlock ---------------------------------------------------------------------------

class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    # Packed (12 bytes) in the kernel; the kernel reads only those, so the natural layout's
    # trailing padding is harmless and no _pack_ is needed.
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _errno_text(err: int) -> str:
    return errno.errorcode.get(err, str(err))


@functools.lru_cache(maxsize=1)
def landlock_abi() -> tuple[int, str]:
    """(ABI version, "") when Landlock is usable, else (0, why not)."""
    if machine() is None:
        return 0, f"no Landlock support in aisci for this architecture ({os.uname().machine})"
    abi = _syscall(_SYS_LANDLOCK_CREATE_RULESET, 0, 0, _LANDLOCK_CREATE_RULESET_VERSION, 0)
    if abi >= 1:
        return int(abi), ""
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return 0, "the kernel has no Landlock (needs Linux >= 5.13 with CONFIG_SECURITY_LANDLOCK)"
    if err == errno.EOPNOTSUPP:
        return 0, "Landlock is disabled at boot (add landlock to the lsm= kernel parameter)"
    return 0, f"landlock_create_ruleset failed: {_errno_text(err)}"


def _fs_rights(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def describe(abi: int) -> str:
    """What the layer enforces at this ABI, including its gaps."""
    parts = [f"Landlock ABI {abi}: filesystem"]
    if abi >= 4:
        parts.append("TCP")
    if abi >= 6:
        parts.append("signal and abstract-socket scoping")
    text = ", ".join(parts) + "; no-new-privileges"
    arch = machine()
    text += f", seccomp filter ({arch})" if arch else ", no seccomp filter"
    if os.geteuid() == 0:
        text += ", all capabilities dropped"
    gaps = []
    if abi < 3:
        gaps.append("truncate() of outside files not restricted")
    if abi < 6:
        gaps.append("abstract unix sockets reachable, signals guarded by seccomp only")
    if gaps:
        text += " (gaps: " + "; ".join(gaps) + ")"
    return text


@functools.lru_cache(maxsize=4)
def split_tree(root: str) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(grant, private) for a system tree such as /etc: ``grant`` covers every entry a
    user other than its owner may read (whole subtrees where nothing inside is private),
    ``private`` lists what only the owner or group may read (/etc/shadow, ssl/private).
    A symlink adds its target only when that is a world-readable file under /run or /var
    (resolv.conf managed by systemd-resolved or NetworkManager); other targets are under
    the system grants already. A root engine's child is uid 0 too: without this it could
    read those files through a read grant on the whole tree."""
    budget = [_MAX_TREE_ENTRIES]
    private: list[Path] = []
    targets: list[Path] = []

    def public(st: os.stat_result) -> bool:
        if stat.S_ISDIR(st.st_mode):
            return bool(st.st_mode & stat.S_IROTH and st.st_mode & stat.S_IXOTH)
        return bool(st.st_mode & stat.S_IROTH)

    def walk(path: Path) -> tuple[list[Path], bool]:
        grants: list[Path] = []
        whole = True
        try:
            entries = list(os.scandir(path))
        except OSError:
            return [], False
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0:
                return grants, False  # too large to vet: what was not vetted stays hidden
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            child = Path(entry.path)
            if stat.S_ISLNK(st.st_mode):
                target = Path(os.path.realpath(child))
                if target.parts[1:2] in (("run",), ("var",)) and target.is_file() and \
                        public(target.stat()):
                    targets.append(target)
                continue
            if not public(st):
                private.append(child)
                whole = False
            elif stat.S_ISDIR(st.st_mode):
                sub, sub_whole = walk(child)
                if sub_whole:
                    grants.append(child)
                else:
                    grants.extend(sub)
                    whole = False
            else:
                grants.append(child)
        return grants, whole

    top = Path(root)
    if not top.is_dir():
        return (), ()
    grants, whole = walk(top)
    return ((top,) if whole else tuple(grants)) + tuple(targets), tuple(private)


@dataclass(frozen=True)
class Policy:
    """What a confined child may touch. Paths are granted with everything beneath them;
    whatever no rule names is invisible (reads fail) and unwritable."""

    read_exec: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    read_write: tuple[Path, ...] = ()
    devices: tuple[Path, ...] = ()
    list_only: tuple[Path, ...] = ()
    network: bool = False

    def rules(self) -> list[tuple[Path, int]]:
        out = [(p, READ_EXEC) for p in self.read_exec]
        out += [(p, READ_ONLY) for p in self.read_only]
        out += [(p, DEVICE) for p in self.devices]
        out += [(p, FS_READ_DIR) for p in self.list_only]
        out += [(p, ALL_FS) for p in self.read_write]
        return out


def run_policy(*, read_exec: Iterable[Path], read_write: Iterable[Path],
               network: bool) -> Policy:
    """The standard policy for a run: the system (read + execute), /etc minus its private
    entries, /proc and /sys read-only, the usual device nodes and GPUs, plus the run's own
    read + execute and read-write paths."""
    etc, _ = split_tree("/etc")
    devices = [Path(p) for p in DEVICE_NODES]
    devices += [Path(p) for p in sorted(glob.glob("/dev/nvidia*"))] + [Path("/dev/dri")]
    return Policy(
        read_exec=(*(Path(p) for p in SYSTEM_READ_EXEC), *etc, *read_exec),
        read_only=tuple(Path(p) for p in SYSTEM_READ_ONLY),
        read_write=(*(Path(p) for p in DEVICE_DIRS_RW), *read_write),
        devices=tuple(devices), list_only=(Path("/dev"), Path("/etc")), network=network)


# -- seccomp ----------------------------------------------------------------------------

class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_Jump = int | str
_Op = tuple[int, _Jump, _Jump, int] | str  # an instruction, or a label


def _assemble(ops: list[_Op]) -> list[tuple[int, int, int, int]]:
    labels: dict[str, int] = {}
    at = 0
    for op in ops:
        if isinstance(op, str):
            labels[op] = at
        else:
            at += 1
    out: list[tuple[int, int, int, int]] = []
    for op in ops:
        if isinstance(op, str):
            continue
        code, jt, jf, k = op
        here = len(out) + 1
        offs = [labels[j] - here if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= o <= 255 for o in offs):
            raise ConfineError("seccomp program: jump out of range")
        out.append((code, offs[0], offs[1], k))
    return out


def _arg(n: int, high: bool = False) -> int:
    """Offset of the low (or high) 32 bits of syscall argument n in seccomp_data."""
    base = 16 + 8 * n
    return base + (4 if high == (sys.byteorder == "little") else 0)


OWN_PGID = "own-pgid"  # placeholder: -(the child's pid), patched in by Plan.apply


def seccomp_program(arch: str, *, network: bool, guard_signals: bool, engine_pid: int
                    ) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """The filter's instructions and the indexes whose constant is the child's negated
    process-group id (only known after the fork).

    Always: EPERM for :data:`_DENIED`, ENOSYS for clone3 (whose flags cannot be read; libc
    falls back to clone), EPERM for clone with namespace flags. Without network: socket()
    of any family but AF_UNIX gets EPERM. With ``guard_signals`` (Landlock cannot scope
    signals here): kill/tgkill/rt_(tg)sigqueueinfo/pidfd_open/F_SETOWN aimed at the engine,
    at -1 or at a process group other than the child's own get EPERM, as do tkill and
    pidfd_send_signal, whose target cannot be checked.
    """
    nr = _SYSCALLS[arch]
    placeholders: list[str] = []
    denied = [nr[n] for n in _DENIED] + ([nr[n] for n in _X86_ONLY] if arch == "x86_64" else [])
    ops: list[_Op] = [(_BPF_LD_W_ABS, 0, 0, 4), (_BPF_JEQ, 0, "kill", _AUDIT_ARCH[arch]),
                      (_BPF_LD_W_ABS, 0, 0, 0)]
    if arch == "x86_64":
        ops.append((_BPF_JGE, "kill", 0, _X32_SYSCALL_BIT))
    ops += [(_BPF_JEQ, "eperm", 0, n) for n in denied]
    ops += [(_BPF_JEQ, "enosys", 0, nr["clone3"]), (_BPF_JEQ, "clone", 0, nr["clone"])]
    if not network:
        ops.append((_BPF_JEQ, "socket", 0, nr["socket"]))
    if guard_signals:
        ops += [(_BPF_JEQ, "pid", 0, nr["kill"]), (_BPF_JEQ, "fcntl", 0, nr["fcntl"])]
        ops += [(_BPF_JEQ, "tgid", 0, nr[n]) for n in
                ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")]
        ops += [(_BPF_JEQ, "eperm", 0, nr[n]) for n in ("tkill", "pidfd_send_signal")]
    ops += [(_BPF_RET, 0, 0, _RET_ALLOW),
            "clone", (_BPF_LD_W_ABS, 0, 0, _arg(0)),
            (_BPF_JSET, "eperm", "allow", _CLONE_NEW_NAMESPACES)]
    if not network:
        ops += ["socket", (_BPF_LD_W_ABS, 0, 0, _arg(0)), (_BPF_JEQ, "allow", "eperm", _AF_UNIX)]
    if guard_signals:
        engine = engine_pid & 0xFFFFFFFF
        ops += ["tgid", (_BPF_LD_W_ABS, 0, 0, _arg(0)), (_BPF_JEQ, "eperm", "allow", engine),
                "fcntl", (_BPF_LD_W_ABS, 0, 0, _arg(1)),
                (_BPF_JEQ, "eperm", 0, _F_SETOWN_EX), (_BPF_JEQ, 0, "allow", _F_SETOWN),
                (_BPF_LD_W_ABS, 0, 0, _arg(2)), (_BPF_JEQ, "target", "target", 0),
                "pid", (_BPF_LD_W_ABS, 0, 0, _arg(0)),
                # kill(pid): the engine, every process (-1) or a foreign group is refused.
                "target", (_BPF_JEQ, "eperm", 0, engine), (_BPF_JEQ, "eperm", 0, 0xFFFFFFFF),
                (_BPF_JSET, 0, "allow", 0x80000000), OWN_PGID,
                (_BPF_JEQ, "allow", "eperm", 0)]
        placeholders.append(OWN_PGID)
    ops += ["allow", (_BPF_RET, 0, 0, _RET_ALLOW),
            "eperm", (_BPF_RET, 0, 0, _RET_ERRNO | errno.EPERM),
            "enosys", (_BPF_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),
            "kill", (_BPF_RET, 0, 0, _RET_KILL_PROCESS)]
    # Placeholder labels mark the next instruction; find their indexes after assembly.
    index, slots = 0, []
    for op in ops:
        if isinstance(op, str):
            if op in placeholders:
                slots.append(index)
        else:
            index += 1
    return _assemble(ops), slots


def seccomp_bytes(*, network: bool) -> bytes | None:
    """The filter as the raw ``struct sock_filter`` array bubblewrap's --seccomp reads
    (no signal guard: bubblewrap's pid namespace already hides the engine); None on an
    architecture without a syscall table here."""
    arch = machine()
    if arch is None:
        return None
    program, _ = seccomp_program(arch, network=network, guard_signals=False, engine_pid=0)
    return b"".join(struct.pack("=HBBI", *ins) for ins in program)


# -- the plan ---------------------------------------------------------------------------

class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class _Refused(Exception):
    pass


def _cap_effective() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


class Plan:
    """One child's confinement, prepared in the engine. Pass :meth:`apply` (or a hook
    calling it last) as ``preexec_fn``; call :meth:`close` once the child has started."""

    def __init__(self, ruleset_fd: int, abi: int, program: list[tuple[int, int, int, int]],
                 slots: list[int], drop_caps: bool, drop_bounding: bool) -> None:
        self.ruleset_fd = ruleset_fd
        self.abi = abi
        self._filter = (_SockFilter * max(1, len(program)))(*(_SockFilter(*i) for i in program))
        self._fprog = _SockFprog(len(program), ctypes.addressof(self._filter))
        self._slots = slots
        self._drop_caps = drop_caps
        self._drop_bounding = drop_bounding
        self._last_cap = _last_cap()
        self._cap_header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        self._cap_data = (_CapData * 2)()

    @property
    def has_seccomp(self) -> bool:
        return int(self._fprog.len) > 0

    def close(self) -> None:
        if self.ruleset_fd >= 0:
            os.close(self.ruleset_fd)
            self.ruleset_fd = -1

    def apply(self) -> None:
        """In the child, between fork and exec: drop capabilities, set no-new-privs,
        enter the Landlock domain, load the seccomp filter. Any failure ends the child
        with exit status 126 and one line on its stderr: it never runs unconfined."""
        try:
            self._apply()
        except _Refused as exc:
            os.write(2, f"aisci: could not confine the process: {exc}\n".encode())
            os._exit(126)

    def _apply(self) -> None:
        def check(rc: int, what: str) -> None:
            if rc < 0:
                raise _Refused(f"{what}: {_errno_text(ctypes.get_errno())}")

        if self._drop_caps:
            if self._drop_bounding:
                check(_prctl(_PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0), "PR_SET_SECUREBITS")
                for cap in range(self._last_cap + 1):
                    check(_prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "PR_CAPBSET_DROP")
            _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # EINVAL before 4.3
            check(_capset(ctypes.addressof(self._cap_header), ctypes.addressof(self._cap_data)),
                  "capset")
        check(_prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        check(_syscall(_SYS_LANDLOCK_RESTRICT_SELF, self.ruleset_fd, 0, 0, 0),
              "landlock_restrict_self")
        if self.has_seccomp:
            own = (-os.getpid()) & 0xFFFFFFFF  # the child leads its own session and group
            for i in self._slots:
                self._filter[i].k = own
            check(_prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER,
                         ctypes.addressof(self._fprog), 0, 0), "PR_SET_SECCOMP")


def _add_rule(fd: int, path: Path, rights: int, handled: int) -> None:
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # absent here: nothing to grant
    try:
        allowed = rights & handled
        if not stat.S_ISDIR(os.fstat(pfd).st_mode):
            allowed &= _FS_FILE_RIGHTS
        if not allowed:
            return
        attr = _PathBeneathAttr(allowed, pfd)
        if _syscall(_SYS_LANDLOCK_ADD_RULE, fd, _LANDLOCK_RULE_PATH_BENEATH,
                    ctypes.addressof(attr), 0) < 0:
            raise ConfineError(f"landlock_add_rule {path}: "
                               f"{_errno_text(ctypes.get_errno())}")
    finally:
        os.close(pfd)


def build_plan(policy: Policy, *, engine_pid: int | None = None,
               max_abi: int | None = None) -> Plan:
    """Prepare the confinement of one child (in the engine, before the fork).
    ``max_abi`` caps the Landlock ABI used (tests exercise the older kernels' paths)."""
    abi, why = landlock_abi()
    if abi < 1:
        raise ConfineError(why)
    if max_abi is not None:
        abi = max(1, min(abi, max_abi))
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, 0, 0)
    if abi >= 4 and not policy.network:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP  # no rule: all denied
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    fd = _syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.addressof(attr), ctypes.sizeof(attr),
                  0, 0)
    if fd < 0:
        raise ConfineError(f"landlock_create_ruleset: {_errno_text(ctypes.get_errno())}")
    fd = int(fd)
    try:
        for path, rights in policy.rules():
            _add_rule(fd, path, rights, handled)
        arch = machine()
        program: list[tuple[int, int, int, int]] = []
        slots: list[int] = []
        if arch is not None:
            program, slots = seccomp_program(
                arch, network=policy.network, guard_signals=abi < 6,
                engine_pid=os.getpid() if engine_pid is None else engine_pid)
        caps = _cap_effective()
        return Plan(fd, abi, program, slots, drop_caps=os.geteuid() == 0 or caps != 0,
                    drop_bounding=bool(caps & (1 << _CAP_SETPCAP)))
    except BaseException:
        os.close(fd)
        raise


@functools.lru_cache(maxsize=1)
def probe() -> tuple[bool, str]:
    """(usable, detail): runs /bin/true confined the way a run would be."""
    abi, why = landlock_abi()
    if abi < 1:
        return False, why
    true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    with tempfile.TemporaryDirectory(prefix="aisci-probe-") as tmp:
        try:
            plan = build_plan(run_policy(read_exec=[Path(true)], read_write=[Path(tmp)],
                                         network=False))
        except ConfineError as exc:
            return False, str(exc)
        try:
            proc = subprocess.run([true], cwd=tmp, preexec_fn=plan.apply, capture_output=True,
                                  timeout=10, check=False, close_fds=True)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"a confined test process could not start: {exc}"
        finally:
            plan.close()
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return False, err[-1] if err else f"a confined test process exited {proc.returncode}"
    return True, describe(abi)


# -- the engine itself ------------------------------------------------------------------

_scrubbed = False


def harden_engine(is_secret: Callable[[str], bool]) -> int:
    """Make this process non-dumpable and overwrite the values of secret variables in
    its initial environment block (what /proc/<pid>/environ shows). ``os.environ`` and
    the C environment keep every value (the SDKs and inherited environments read them):
    each secret is first re-set with setenv, which moves it to the heap, then its bytes
    in the initial block are zeroed. Idempotent; returns how many values were scrubbed."""
    global _scrubbed
    _prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if _scrubbed:
        return 0
    _scrubbed = True
    try:
        raw = Path("/proc/self/stat").read_bytes()
    except OSError:
        return 0
    fields = raw[raw.rfind(b")") + 2:].split()
    if len(fields) < 49:
        return 0
    start, end = int(fields[47]), int(fields[48])  # stat fields 50 and 51: env_start/end
    if start <= 0 or not 0 < end - start <= _MAX_ENV_BYTES:
        return 0
    block = ctypes.string_at(start, end - start)
    spans: list[tuple[int, int]] = []
    offset = 0
    for entry in block.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and value and is_secret(os.fsdecode(name)):
            current = os.environ.get(os.fsdecode(name))
            if current is not None:
                os.putenv(os.fsdecode(name), current)
            spans.append((start + offset + len(name) + 1, len(value)))
        offset += len(entry) + 1
    for address, size in spans:
        ctypes.memset(address, 0, size)
    return len(spans)


def is_dumpable() -> bool:
    return bool(_prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))
