"""Source checkouts built in place: never run a compiled hot module older than its source.

``pip install -e .`` compiles the hot modules with mypyc beside their ``.py`` files (see
``setup.py``), and Python prefers the compiled file. After an edit or a ``git pull`` the
compiled copy would silently run old code. If any compiled module in the package is older
than its source, every compiled module is bypassed (they call each other natively, so it
is all or nothing), the source runs instead and one warning says how to rebuild. Installed
packages (no ``pyproject.toml`` beside the package) are never checked.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so


def compiled_modules(package_dir: str, package: str) -> dict[str, tuple[str, str]]:
    """Module name -> (source path, compiled path) for every compiled module of the tree."""
    found: dict[str, tuple[str, str]] = {}
    for root, _dirs, files in os.walk(package_dir):
        for name in files:
            if not name.endswith(EXTENSION):
                continue
            stem = name[: -len(EXTENSION)]
            source = os.path.join(root, stem + ".py")
            if os.path.exists(source):
                rel = os.path.relpath(os.path.join(root, stem), os.path.dirname(package_dir))
                found[rel.replace(os.sep, ".")] = (source, os.path.join(root, name))
    return {k: v for k, v in found.items() if k.split(".")[0] == package}


def stale(modules: dict[str, tuple[str, str]]) -> list[str]:
    return sorted(
        m for m, (src, so) in modules.items() if os.stat(src).st_mtime > os.stat(so).st_mtime
    )


class SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the given modules' ``.py`` files ahead of their compiled copies."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def guard(package_dir: str, package: str) -> None:
    """Install the source-first finder if this checkout's compiled modules are stale."""
    checkout = os.path.dirname(package_dir)
    if not os.path.exists(os.path.join(checkout, "pyproject.toml")):
        return
    modules = compiled_modules(package_dir, package)
    old = stale(modules) if modules else []
    if not old:
        return
    sys.meta_path.insert(0, SourceFirst({m: src for m, (src, _so) in modules.items()}))
    warnings.warn(
        f"sniffover: compiled modules older than their source ({', '.join(old)}): running the "
        f"source instead; rebuild with `pip install -e {checkout}` (or delete the .so files)",
        stacklevel=2,
    )
