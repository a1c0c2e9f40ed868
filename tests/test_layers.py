"""The layers of genapps, checked from the source: no import cycle among its modules (imports
inside functions included), and nothing below the task layer imports genapps.tasks.

Edges are read with ast from every `import`/`from ... import` statement of every module, at any
depth. `from genapps import x` counts as an import of genapps.x when x is a module; importing
a.b.c also runs the packages a.b and a, so it counts as an import of those too (except the
importer's own packages, which are already running).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "genapps"

# Above the task layer: they pick a task by name and run it.
TASK_USERS = {"genapps.cli", "genapps.pipeline", "genapps.__main__"}

# Imports not counted (importer -> imported module), each with the reason; keep this empty.
KNOWN_EDGES: set[tuple[str, str]] = set()  # (importer, imported) allowed despite the rules: none


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its __init__.py)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The genapps modules that module `name` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in known else source)
    edges = set()
    own = set(_ancestors(name)) | {name}
    for target in targets:
        if target in known and (name, target) not in KNOWN_EDGES:
            edges |= {t for t in [*_ancestors(target), target] if t in known and t not in own}
    return edges


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), as sorted lists."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges.get(v, ()):
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_lazy_relative_and_from_imports(tmp_path):
    known = {"genapps": None, "genapps.io": None, "genapps.zoo": None, "genapps.tasks": None,
             "genapps.tasks.up": None, "genapps.tasks.up.models": None}
    src = tmp_path / "zoo.py"
    src.write_text("def f():\n    from genapps import io\n    from .tasks.up.models import G\n")
    assert imports("genapps.zoo", src, known) == {"genapps.io", "genapps.tasks", "genapps.tasks.up",
                                                  "genapps.tasks.up.models"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_genapps_modules():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_nothing_below_the_task_layer_imports_the_tasks():
    wrong = {name: sorted(t for t in targets if t == "genapps.tasks" or t.startswith("genapps.tasks."))
             for name, targets in graph().items()
             if not name.startswith("genapps.tasks") and name not in TASK_USERS}
    wrong = {k: v for k, v in wrong.items() if v}
    assert not wrong, f"modules below the task layer importing genapps.tasks: {wrong}"
