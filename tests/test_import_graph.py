"""The packages import each other in layers: no module imports one that (indirectly) imports it back."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search", "spaces", "evaluators", "hwcost")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, modules: set[str]) -> list[str]:
    """Our modules a module-level import statement (a TYPE_CHECKING block's included) brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        found = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules]
        return found or ([node.module] if node.module in modules else [])
    return []


def _module_level_imports(tree: ast.Module) -> list[ast.AST]:
    """Import statements outside functions: at the top, or under `if` blocks such as TYPE_CHECKING."""
    found, pending = [], list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            pending.extend([*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])])
    return found


def _graph() -> dict[str, set[str]]:
    paths = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")]
    modules = {_module_name(path) for path in paths}
    graph = {}
    for path in paths:
        tree = ast.parse(path.read_text())
        name = _module_name(path)
        graph[name] = {target for node in _module_level_imports(tree) for target in _imported(node, modules)} - {name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_no_module_import_cycle_type_only_imports_included():
    assert _find_cycle(_graph()) == []


def test_lower_layers_never_import_the_search_package():
    graph = _graph()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.split(".")[0] in ("spaces", "evaluators", "hwcost")
        for target in targets
        if target.split(".")[0] == "search"
    )
    assert upward == []
