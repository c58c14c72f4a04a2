"""The floors of the house, checked on the source: core/ imports nothing else of the project,
kernels/, methods/ and metrics/ never import bench/, reports and commands sit on top, and
no two modules import each other (directly or around a longer loop)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.paths import REPO_DIR

REPO = REPO_DIR
PACKAGES = ("core", "kernels", "methods", "metrics", "bench")
# What each floor may import from the project (its own package always).
ALLOWED = {
    "core": set(),
    "kernels": {"core"},
    "methods": {"core", "kernels"},
    "metrics": {"core", "kernels"},
    "bench": {"core", "kernels", "methods", "metrics"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported project module, at module level?) for every import in the file; imports under
    ``if TYPE_CHECKING:`` are left out (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.append((name, id(node) in top))
    return found


def source_files() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def graph() -> dict[str, set[str]]:
    """Module -> project modules it imports at module level (``from a.b import c`` counts as
    a.b, or a.b.c when that is a module)."""
    files = source_files()
    return {mod: {name for name, top in project_imports(path) if top and name in files and name != mod}
            for mod, path in files.items()}


@pytest.mark.parametrize("package", PACKAGES)
def test_each_floor_imports_only_the_floors_below(package):
    wrong = sorted({f"{mod} imports {name.split('.')[0]}" for mod, path in source_files().items()
                    if mod.split(".")[0] == package for name, _ in project_imports(path)
                    if name.split(".")[0] not in ALLOWED[package] | {package}})
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_a_cycle_and_a_floor_violation(tmp_path, monkeypatch):
    """The checks above can fail: a planted two-module loop and a core module importing bench."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text("from core.b import x\nimport bench.run\n")
    (tmp_path / "core" / "b.py").write_text("from core.a import y\n")
    (tmp_path / "bench" / "run.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    with pytest.raises(AssertionError, match="core.a -> core.b -> core.a"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match="core.a imports bench"):
        test_each_floor_imports_only_the_floors_below("core")
