"""Network namespaces for the lab, the benchmarks and the golden recorders: one mechanism.

Owns the naming (one of the project's prefixes, then this process's pid), the creation
(loopback up), the ``ip netns exec`` command line, the deletion, and the cleanup at
interpreter exit and after a failed creation. It deletes only namespaces it created
itself, never one that existed before: a name that exists already is an error.

Users keep their own prefix (``snflab-`` hub lab, ``snfbench-`` live benchmarks,
``snfprime-`` prime benchmarks, ``snfrec-`` golden recorders) and their own errors;
what they configure inside a namespace (sysctls, links, rulesets) stays with them.
Imports only the standard library.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
from typing import Final

PREFIXES: Final = ("snflab-", "snfbench-", "snfprime-", "snfrec-")


class NetnsError(RuntimeError):
    """A namespace could not be created (or its name is not ours to use)."""


class NetnsExists(NetnsError):
    """The name is taken: by an earlier run, or by someone else."""


_created: list[str] = []


def list_netns() -> list[str]:
    """The names of all namespaces ``ip netns`` knows (ours and others')."""
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def base_name(prefix: str) -> str:
    """``<prefix><pid>``: the stem a process's namespaces share (``snfbench-1234``)."""
    _check_prefix(prefix)
    return f"{prefix}{os.getpid()}"


def exec_argv(name: str, *argv: str) -> list[str]:
    """The command line that runs ``argv`` inside namespace ``name``."""
    return ["ip", "netns", "exec", name, *argv]


def create(name: str, existing: set[str] | None = None) -> str:
    """Create ``name`` with loopback up; it is deleted at exit unless deleted before.

    ``existing`` is a ``list_netns()`` result the caller already holds (one listing for
    several names); without it the namespaces are listed here.
    """
    _check_prefix(name)
    if name in (set(list_netns()) if existing is None else existing):
        raise NetnsExists(f"namespace {name} already exists")
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise NetnsError(f"ip netns add {name} failed ({res.returncode}): {res.stderr.strip()}")
    _created.append(name)
    res = subprocess.run(
        ["ip", "-n", name, "link", "set", "lo", "up"], capture_output=True, text=True, timeout=30
    )
    if res.returncode != 0:
        delete(name)
        raise NetnsError(f"{name}: loopback up failed ({res.returncode}): {res.stderr.strip()}")
    return name


def delete(name: str) -> None:
    """Delete ``name`` if this process created it (and has not deleted it yet)."""
    if name not in _created:
        return
    _created.remove(name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


def created() -> list[str]:
    """The namespaces this process created and has not deleted, oldest first."""
    return list(_created)


@atexit.register
def cleanup() -> None:
    """Delete every namespace still ours, newest first (also run at interpreter exit)."""
    for name in reversed(list(_created)):
        delete(name)


def _check_prefix(name: str) -> None:
    if not name.startswith(PREFIXES):
        raise NetnsError(f"namespace {name!r} does not start with one of {', '.join(PREFIXES)}")
