"""The tree passes the linters and the type checker CI runs, and its imports keep the
project's shape (no cycles; services apart; shared code free of services and of training),
so a failure shows up in `make test` too."""

import ast
import subprocess
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest

from devstack import ROOT

RUFF = str(Path(sys.executable).with_name("ruff"))


def test_ruff_check_passes():
    result = subprocess.run([RUFF, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied():
    result = subprocess.run(
        [RUFF, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes():
    mypy = str(Path(sys.executable).with_name("mypy"))
    result = subprocess.run([mypy], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# The import graph, read statically (imports inside functions too): a lazy import is a
# dependency all the same, only paid for later.
PACKAGES = (
    "auth_service",
    "inference_service",
    "data_service",
    "slide_service",
    "gateway",
    "common",
    "ml",
    "frontend",
    "devstack",
    "benchmarks",
    "tests",
)
# Services talk over HTTP, never through each other's modules.
SERVICES = (
    "auth_service",
    "inference_service",
    "data_service",
    "slide_service",
    "gateway",
    "frontend",
)
# All of `ml` that shared plumbing may use: decoding and the serving contract, no training.
ML_FOR_COMMON = {"ml.contract"}


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _deepest_module(name: str, modules: Collection[str]) -> str | None:
    """The project module that importing `name` runs last: `a.b` for `a.b.function`."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: Collection[str]) -> set[str]:
    """The project modules `module` imports, wherever in the file the import is."""
    imported: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, `level - 1` packages up
                base = ".".join([*package[: len(package) - node.level + 1], node.module or ""])
            else:
                base = node.module or ""
            names = [f"{base.rstrip('.')}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _deepest_module(name, modules)
            if target is not None and target != module:
                imported.add(target)
    return imported


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def import_cycles(graph: Mapping[str, Collection[str]]) -> list[list[str]]:
    """One cycle, `[a, b, ..., a]`, through each group of modules that import one another
    (directly or through others): the strongly connected components (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in on_stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(_cycle_within(group, graph) for group in groups)


def _cycle_within(group: set[str], graph: Mapping[str, Collection[str]]) -> list[str]:
    """The shortest way from the group's first module back to itself, inside the group."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph.get(module, ())):
                if target == start:
                    path = [module]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if target in group and target not in came_from:
                    came_from[target] = module
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(group)} holds no cycle")  # not strongly connected


def _package(module: str) -> str:
    return module.split(".")[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_the_cycle_finder_finds_a_cycle_and_names_its_modules():
    graph = {
        "a": {"b"},
        "b": {"c", "x"},
        "c": {"a"},
        "d": {"a", "e"},
        "e": {"d"},
        "x": set(),
    }
    assert import_cycles(graph) == [["a", "b", "c", "a"], ["d", "e", "d"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []


def test_the_import_graph_sees_lazy_and_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text("def f():\n    from ..top import g\n")
    (package / "top.py").write_text("import pkg.sub.leaf as leaf\nfrom pkg import sub\n")
    modules = {"pkg", "pkg.sub", "pkg.sub.leaf", "pkg.top"}
    assert imports_of("pkg.sub", package / "sub" / "__init__.py", modules) == {"pkg.sub.leaf"}
    assert imports_of("pkg.sub.leaf", package / "sub" / "leaf.py", modules) == {"pkg.top"}
    assert imports_of("pkg.top", package / "top.py", modules) == {"pkg.sub.leaf", "pkg.sub"}


def test_the_import_graph_covers_every_package(graph):
    assert {_package(module) for module in graph} == set(PACKAGES)


def test_no_import_cycle_between_project_modules(graph):
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_common_imports_no_service_and_of_ml_only_the_contract(graph):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _package(module) == "common"
        for target in targets
        if _package(target) in SERVICES
        or (_package(target) == "ml" and target not in ML_FOR_COMMON)
    )
    assert not wrong, "\n".join(wrong)


def test_no_service_imports_another_service(graph):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _package(module) in SERVICES
        for target in targets
        if _package(target) in SERVICES and _package(target) != _package(module)
    )
    assert not wrong, "\n".join(wrong)
