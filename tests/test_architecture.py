"""The package layout holds: the GUI stack only under _qt/, files/ without torch, no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import napari_sam2

PACKAGE = Path(napari_sam2.__file__).parent
GUI = ("qtpy", "magicgui", "superqt", "napari", "vispy", "PyQt5", "PyQt6", "PySide2", "PySide6")


def _modules() -> list[str]:
    """Every module of the package, by dotted name (``__main__`` modules left out)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _import_blocked(modules: list[str], blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Import ``modules`` in a fresh interpreter where importing ``blocked`` fails."""
    code = f"""
import importlib, importlib.abc, sys

BLOCKED = {blocked!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import of {{name}}")
        return None

sys.meta_path.insert(0, Blocker())
for name in {modules!r}:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("ok", len({modules!r}))
"""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env=None,
        cwd=PACKAGE.parent,
    )


def test_gui_imports_live_only_in_the_qt_folder():
    outside = [m for m in _modules() if not m.startswith("napari_sam2._qt")]
    assert "napari_sam2.cli.app" in outside and "napari_sam2.engine.session" in outside
    done = _import_blocked(outside, GUI)
    assert done.returncode == 0, done.stderr[-3000:]


def test_files_and_the_registry_import_without_torch():
    light = [m for m in _modules() if m.startswith("napari_sam2.files")]
    light += ["napari_sam2.weights.registry", "napari_sam2.engine.plans", "napari_sam2.errors"]
    light += ["napari_sam2.engine.prompts", "napari_sam2.evaluation.synthetic"]
    done = _import_blocked(light, ("torch", *GUI))
    assert done.returncode == 0, done.stderr[-3000:]


def _imports(module: str) -> set[str]:
    """The package modules that ``module`` imports anywhere in its code (lazy imports too)."""
    known = set(_modules())
    path = PACKAGE.parent / Path(*module.split("."))
    is_pkg = path.is_dir()
    source = path / "__init__.py" if is_pkg else path.with_suffix(".py")
    package = module.split(".") if is_pkg else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" for a in node.names] + [stem]
        else:
            continue
        for target in targets:
            if target in known:
                found.add(target)
                break
    found.discard(module)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles():
    # The compatibility aliases (napari_sam2.video etc.) only point at their targets.
    graph = {m: _imports(m) for m in _modules()}
    assert _imports("napari_sam2.weights.loading") >= {"napari_sam2.weights.registry"}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


@pytest.mark.parametrize("layer", ["modeling"])
def test_the_network_imports_nothing_of_the_package_but_errors(layer):
    for module in _modules():
        if module.startswith(f"napari_sam2.{layer}"):
            others = {m for m in _imports(module) if not m.startswith(f"napari_sam2.{layer}")}
            assert others <= {"napari_sam2.errors", "napari_sam2"}, (module, others)
