"""The layout holds: imports point one way, module names in docs and code exist, modules stay small.

Layers, outermost first: ``cli`` -> ``agent``/``bench``/``lab`` -> ``prime``/``kernel``/``capture``
-> ``conntrack`` -> stdlib. A module may import its own layer and the layers below it, never
one above; ``conntrack`` imports nothing of sniffover outside itself.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sniffover"

# What each subpackage may import from sniffover (besides itself). Top-level modules
# (errors, _stale) are shared by every layer; cli and replay are the entry points.
ALLOWED: dict[str, set[str]] = {
    "conntrack": set(),
    "capture": {"conntrack", "errors"},
    "kernel": {"conntrack", "errors"},
    "prime": {"conntrack", "kernel", "errors"},
    "agent": {"conntrack", "capture", "kernel", "prime", "errors"},
    "lab": {"conntrack", "capture", "kernel", "errors"},
    "bench": {"conntrack", "capture", "kernel", "prime", "agent", "lab", "errors", "replay"},
    "replay": {"conntrack", "capture", "errors"},
    "replay_cli": {"conntrack", "capture", "kernel", "errors", "replay"},
    "check": {"conntrack", "capture", "kernel", "prime", "errors"},
}
PRODUCT_MAX_LINES = 600  # lab/ and bench/ are tooling users run, not the daemon


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _dotted(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the sniffover modules ``path`` imports (lazy imports included)."""
    here = _dotted(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {n for n in out if n == "sniffover" or n.startswith("sniffover.")}


def _layer(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_point_one_way() -> None:
    wrong = []
    for path in _modules():
        layer = _layer(_dotted(path))
        if layer not in ALLOWED:
            continue  # cli, __init__, _stale, errors: the entry point and shared leaves
        for name in _imports(path):
            target = _layer(name)
            if target and target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_product_modules_stay_small() -> None:
    big = []
    for path in _modules():
        if _layer(_dotted(path)) in ("lab", "bench"):
            continue
        n = len(path.read_text().splitlines())
        if n > PRODUCT_MAX_LINES:
            big.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not big, "\n".join(big)


# ``python -m X``, ``python3 -m X`` and argv lists ``"-m", "X"``
_DASH_M = re.compile(
    r"""python3?\s+-m\s+([A-Za-z_][\w.]*\w)|["']-m["'],\s*["']([A-Za-z_][\w.]*\w)["']"""
)


def _texts() -> list[Path]:
    paths = [ROOT / "README.md", ROOT / ".ci" / "run"]
    for top in ("sniffover", "tests", "tools", "fuzz"):
        paths += sorted((ROOT / top).rglob("*.py"))
    paths += sorted((PACKAGE / "examples").iterdir())
    return [p for p in paths if p.is_file()]


def test_every_python_dash_m_names_a_module() -> None:
    missing = []
    for path in _texts():
        for m in _DASH_M.finditer(path.read_text(errors="replace")):
            name = m.group(1) or m.group(2)
            if name.split(".")[0] not in ("sniffover", "tools", "tests"):
                continue  # pytest, pip, venv ...
            if importlib.util.find_spec(name) is None:
                missing.append(f"{path.relative_to(ROOT)}: python -m {name}")
    assert not missing, "\n".join(missing)


def test_every_source_path_in_the_readme_exists() -> None:
    text = (ROOT / "README.md").read_text()
    paths = set(
        re.findall(
            r"(?<![\w/.])((?:sniffover|tests|tools|fuzz)/[\w/]+\.(?:py|toml|sh|service|conf))", text
        )
    )
    assert paths, "the README names no source file: the pattern is wrong"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


@pytest.mark.parametrize("sub", ["capture", "kernel", "prime"])
def test_io_subpackages_import_nothing_on_their_own(sub: str) -> None:
    """Their ``__init__`` stays empty: ``sniffover ctl`` and tests import parts without pcapy."""
    body = ast.parse((PACKAGE / sub / "__init__.py").read_text()).body
    assert not [n for n in body if not isinstance(n, ast.Expr)]
