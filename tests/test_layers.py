"""Imports point one way: a module imports from its own layer or the layers below, never from one above, and
no modules import each other in a circle. Read from the source with `ast` (every import: top level, inside
functions, under TYPE_CHECKING), so the rule holds before anything runs. A function-local import is there on
purpose (a heavy library kept out of a module that must stay light) and says why in a comment."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mllmcl"

LAYERS = ("core", "data", "models", "engine", "eval", "report", "pretrain", "cl", "run", "serve", "bench", "cli")
"""Bottom to top: the top-level packages of mllmcl. The package's own `__init__` (its version) is ground floor;
`__main__` is the command line."""
ROOT_MODULES = {"mllmcl": "core", "mllmcl.__main__": "cli"}
LOCAL_IMPORTS_OWNED_ELSEWHERE = {"mllmcl.data.synth.write"}
"""Modules this rule does not edit: the synthetic-data writer's progress bar import."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    if module in ROOT_MODULES:
        return ROOT_MODULES[module]
    return module.split(".")[1]


def imported(module: str, tree: ast.AST) -> list[tuple[str, int]]:
    """The mllmcl modules `module` imports, with the line: `from a.b import c` is `a.b.c` when that is a
    module, else `a.b`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "mllmcl"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mllmcl":
            assert node.level == 0, f"{module}:{node.lineno}: a relative import"
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                out.append((target if target in MODULES else node.module, node.lineno))
    return out


@functools.cache
def import_graph() -> dict[str, list[tuple[str, int]]]:
    return {name: imported(name, ast.parse(path.read_text())) for name, path in MODULES.items()}


def test_every_module_sits_in_a_layer():
    unknown = sorted({layer(m) for m in MODULES} - set(LAYERS))
    assert not unknown, f"modules outside the layers {LAYERS}: {unknown}"


def test_no_module_imports_from_a_layer_above_its_own():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [f"{module}:{line} ({layer(module)}) imports {target} ({layer(target)})"
              for module, targets in import_graph().items() for target, line in targets
              if rank[layer(target)] > rank[layer(module)]]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle():
    graph = {module: sorted({t for t, _ in targets if t in MODULES and t != module})
             for module, targets in import_graph().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in graph[module]:
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[module] = 2
        path.pop()
        return None

    for module in graph:
        if module not in state:
            circle = visit(module)
            assert circle is None, "modules importing each other: " + " -> ".join(circle)


def _local_imports(tree: ast.AST) -> list[ast.stmt]:
    found = []
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
    return found


def test_a_function_local_import_says_why():
    """A comment on its line, or on the comment line that opens its run of imports."""
    silent = []
    for module in sorted(set(MODULES) - LOCAL_IMPORTS_OWNED_ELSEWHERE):
        lines = MODULES[module].read_text().splitlines()
        for node in _local_imports(ast.parse("\n".join(lines))):
            above = node.lineno - 2
            while above >= 0 and lines[above].strip().startswith(("import ", "from ")):
                above -= 1
            if "#" not in lines[node.end_lineno - 1] and not (above >= 0 and lines[above].strip().startswith("#")):
                silent.append(f"{MODULES[module]}:{node.lineno}")
    assert not silent, "function-local imports without a comment saying why:\n" + "\n".join(silent)
