"""The package's layers only look down: no folder (or top-level module) imports one that imports it back."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "unlearn_cli"


def _imports() -> dict[str, set[str]]:
    """Each folder or top-level module of the package -> the others it imports from."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "unlearn_cli":
                parts = node.module.split(".")
                targets = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
                graph.setdefault(source, set()).update(target for target in targets if target != source)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that comes back to where it started, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_one():
    assert _cycle({"io": {"models"}, "models": {"limits", "io"}, "limits": set()}) == ["io", "models", "io"]
    assert _cycle({"io": {"models"}, "models": {"limits"}}) is None


def test_no_folder_imports_one_that_imports_it_back():
    graph = _imports()
    assert {"cli", "io", "models", "data", "config"} <= set(graph)  # the graph was read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # the bottom layer: size limits, signals and streams import nothing of the package but errors (and each other)
    assert graph["limits"] == {"errors"} and "signals" not in graph  # imports nothing
    assert graph["streams"] <= {"errors", "limits", "signals"}
