"""The layering of app/, read from the source (every import, at module level or inside a
function): core and db are the foundation and import no feature; features depend on each other
in one direction only, and no module imports itself back through others."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
FOUNDATION = {"core", "db"}
# The composition roots: they wire every feature together, and nothing imports them.
ROOTS = {"app.main", "app.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in APP.rglob("*.py")}


def imports(module: str) -> set[str]:
    """The app modules ``module`` imports (``from app.x import y`` names module app.x.y when
    there is one, else app.x)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports(module) for module in MODULES}


def package(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    # A parser that found nothing would pass every test below.
    assert "app.core.config" in GRAPH["app.db.engine"]
    assert "app.articles.filters" in GRAPH["app.related.repository"]
    assert "app.embedding.onnx_model" in GRAPH["app.embedding.model"]  # inside a function


def test_core_and_db_import_no_feature() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if package(module) in FOUNDATION
        for target in targets
        if package(target) not in FOUNDATION
    )
    assert wrong == []


def test_nothing_imports_the_composition_roots() -> None:
    assert sorted(m for m, targets in GRAPH.items() if targets & ROOTS) == []


def test_features_do_not_import_each_other_in_circles() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        if module in ROOTS:
            continue
        packages.setdefault(package(module), set()).update(
            package(t) for t in targets if package(t) != package(module)
        )
    assert cycles(packages) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(GRAPH) == []


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
