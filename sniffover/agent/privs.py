"""Least privilege: after the sockets are open, keep only the capabilities the agent needs.

``drop_privileges()`` uses libc's ``prctl`` and ``capset`` through ctypes (no libcap, no
extra package):

1. every capability outside ``keep`` leaves the bounding set (``PR_CAPBSET_DROP``) and the
   ambient set is cleared, so nothing executed later can regain one;
2. optionally the process becomes ``user`` (supplementary groups cleared, gid, then uid)
   with ``PR_SET_KEEPCAPS`` so the permitted set survives the uid change;
3. ``capset``: permitted = effective = ``keep``, inheritable empty;
4. ``PR_SET_NO_NEW_PRIVS``: no set-uid/file-capability gains on ``execve``.

Capabilities, keep-caps and no-new-privs are per *thread* in Linux: call it from the main
thread before other threads start (it refuses otherwise unless ``allow_threads``), so every
thread created later inherits the reduced sets.

Sockets already open (AF_PACKET captures, the ctnetlink socket) keep working; new ones of
those kinds can still be opened with CAP_NET_RAW / CAP_NET_ADMIN. Anything needing another
capability (chown, binding ports < 1024 by a non-root user, module loading, ...) fails
with EPERM afterwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import threading
from collections.abc import Iterable

from ..errors import CliError

# linux/capability.h
CAP_NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBERS = {name: i for i, name in enumerate(CAP_NAMES)}

# linux/prctl.h
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(CliError):
    """Privileges could not be reduced as asked; the message is one line."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        _libc.prctl.restype = ctypes.c_int
    return _libc


def _prctl(what: str, option: int, arg2: int = 0) -> int:
    res = _lib().prctl(option, arg2, 0, 0, 0)
    if res < 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot drop privileges: {what}: {os.strerror(err)}")
    return int(res)


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(CAP_NAMES) - 1


def cap_name(n: int) -> str:
    return CAP_NAMES[n] if n < len(CAP_NAMES) else f"CAP_{n}"


def cap_mask(names: Iterable[str]) -> int:
    """The 64-bit mask of capability ``names`` ("CAP_NET_RAW" or "net_raw")."""
    mask = 0
    for name in names:
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        if key not in CAP_NUMBERS:
            raise PrivilegeError(f"cannot drop privileges: unknown capability {name!r}")
        mask |= 1 << CAP_NUMBERS[key]
    return mask


def get_caps() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) masks of the calling thread (``capget``)."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _lib().capget(ctypes.byref(hdr), data) < 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot drop privileges: capget: {os.strerror(err)}")
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def _set_caps(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = effective >> shift & 0xFFFFFFFF
        data[i].permitted = permitted >> shift & 0xFFFFFFFF
        data[i].inheritable = inheritable >> shift & 0xFFFFFFFF
    if _lib().capset(ctypes.byref(hdr), data) < 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot drop privileges: capset: {os.strerror(err)}")


def drop_privileges(
    keep: Iterable[str] = ("CAP_NET_ADMIN", "CAP_NET_RAW"),
    user: str | None = None,
    *,
    allow_threads: bool = False,
) -> list[str]:
    """Keep only ``keep`` (permitted, effective, bounding), optionally as ``user``.

    Returns what was done, one short line per step (for the log). Raises
    ``PrivilegeError`` (one line) if a step fails or the result is not what was asked:
    e.g. a capability to keep is not held now, the user does not exist, or the process
    lacks CAP_SETPCAP (bounding set) / CAP_SETUID / CAP_SETGID (user switch).
    """
    keep = tuple(keep)
    want = cap_mask(keep)
    if not allow_threads and threading.active_count() > 1:
        raise PrivilegeError(
            "cannot drop privileges: other threads are running (capabilities are per thread:"
            " call drop_privileges before starting them)"
        )
    eff, prm, _inh = get_caps()
    missing = want & ~prm
    if missing:
        names = ", ".join(cap_name(n) for n in range(64) if missing >> n & 1)
        raise PrivilegeError(f"cannot drop privileges: {names} not held (run as root?)")
    pw = None
    if user is not None:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise PrivilegeError(f"cannot drop privileges: no such user {user!r}") from None
    done: list[str] = []

    # 1. bounding set (needs CAP_SETPCAP in the effective set), ambient set. A service
    # user started with ambient capabilities (the example unit: User=sniffover) has no
    # CAP_SETPCAP: its bounding set is the service manager's (CapabilityBoundingSet=),
    # and with the ambient and inheritable sets empty and no_new_privs nothing it runs
    # gains a capability anyway.
    setpcap = eff >> CAP_NAMES.index("CAP_SETPCAP") & 1
    dropped = []
    for n in range(last_cap() + 1):
        if want >> n & 1 or not setpcap:
            continue
        if _prctl("PR_CAPBSET_READ", PR_CAPBSET_READ, n) == 1:
            try:
                _prctl(f"PR_CAPBSET_DROP {cap_name(n)}", PR_CAPBSET_DROP, n)
            except PrivilegeError as exc:
                raise PrivilegeError(f"{exc} (needs CAP_SETPCAP)") from None
            dropped.append(n)
    if setpcap:
        done.append(f"bounding set: dropped {len(dropped)} capabilities")
    else:
        done.append("bounding set: left to the service manager (no CAP_SETPCAP)")
    _prctl("PR_CAP_AMBIENT_CLEAR_ALL", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    done.append("ambient set cleared")

    # 2. user switch, keeping the permitted set across setuid
    if pw is not None:
        _prctl("PR_SET_KEEPCAPS", PR_SET_KEEPCAPS, 1)
        try:
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        except OSError as exc:
            raise PrivilegeError(
                f"cannot drop privileges: switching to user {user!r}: {exc.strerror}"
            ) from None
        _prctl("PR_SET_KEEPCAPS 0", PR_SET_KEEPCAPS, 0)
        done.append(f"switched to user {user} (uid {pw.pw_uid}, gid {pw.pw_gid}, no groups)")

    # 3. permitted = effective = keep (setuid cleared the effective set: raised again)
    _set_caps(want, want, 0)
    done.append("capabilities kept: " + ", ".join(cap_name(n) for n in range(64) if want >> n & 1))

    # 4. no new privileges through execve
    _prctl("PR_SET_NO_NEW_PRIVS", PR_SET_NO_NEW_PRIVS, 1)
    done.append("no_new_privs set")

    eff, prm, inh = get_caps()
    if eff != want or prm != want or inh:
        raise PrivilegeError(
            f"cannot drop privileges: capabilities are eff={eff:#x} prm={prm:#x} inh={inh:#x},"
            f" expected {want:#x}"
        )
    return done
