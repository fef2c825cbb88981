"""No import cycles anywhere in tfbuild or its agent.

A cycle makes a module's behaviour depend on which module was imported first and
forces lazy imports to paper over it. The graph is read from the source with `ast`
(no import is executed), counting imports inside functions too: a lazy import is
still a dependency. Only `if TYPE_CHECKING:` blocks are left out, and a module's
imports of its own parent packages (the normal package/submodule relation).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"tfbuild": REPO / "builder", "tfbuild_agent": REPO / "entrypoint"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom,
             modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        bases = [alias.name for alias in node.names]
        names: list[str] = []
    else:
        if node.level:
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{node.module}" if node.module else package
        else:
            base = node.module or ""
        bases = [base]
        names = [f"{base}.{alias.name}" for alias in node.names]
    out = {b for b in bases if b in modules}
    out |= {n for n in names if n in modules}
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in _import_nodes(tree):
            edges |= _targets(name, path, node, modules)
        # A submodule importing its own ancestors is the package relation, not a cycle.
        graph[name] = {t for t in edges if t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_real_tree() -> None:
    graph = import_graph()
    assert "tfbuild.cli" in graph or "tfbuild.cli.main" in graph or any(
        m.startswith("tfbuild.cli") for m in graph
    )
    # The builder depends on the agent's contract, never the other way round.
    agent_deps = {t for m, ts in graph.items() if m.startswith("tfbuild_agent") for t in ts}
    assert not {t for t in agent_deps if t.split(".")[0] == "tfbuild"}


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (break them by moving the shared piece down):\n" + "\n".join(
        " -> ".join(c) for c in found
    )


def test_every_package_folder_is_listed_in_pyproject() -> None:
    # A sub-package missing from pyproject's explicit list imports fine from an editable
    # install and is silently absent from a wheel (`pip install tfbuild`).
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {v: k for k, v in config["package-dir"].items()}
    found = set()
    for folder in ("builder", "entrypoint"):
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([roots[folder], *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages"


def test_test_files_have_unique_names() -> None:
    # pytest imports test files by basename (no packages under tests/): two files of one
    # name in different tiers break collection of the whole suite.
    names: dict[str, list[str]] = {}
    for path in (REPO / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
