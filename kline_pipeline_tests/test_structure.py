"""The package's import arrows point one way (issue 18): no module imports one that imports it,
directly or around a loop, counting imports inside functions too; and nothing imports the command
line (`kline_pipeline.cli`), which sits on top of everything."""

import ast
from pathlib import Path

import kline_pipeline

PACKAGE = Path(kline_pipeline.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("kline_pipeline", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports (at the top or in a function)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        resolved = {resolve(t) for t in targets if t.startswith("kline_pipeline")}
        # The package itself (`from kline_pipeline import clock`) is not an arrow: its __init__ imports only `quiet`.
        graph[name] = {r for r in resolved if r and r not in (name, "kline_pipeline")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_no_import_cycles():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_nothing_imports_the_command_line():
    importers = sorted(name for name, targets in import_graph().items() if "kline_pipeline.cli" in targets)
    assert importers == [], f"{importers} import kline_pipeline.cli: shared helpers belong in cli_support or instance.setup"
