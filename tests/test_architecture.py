"""The import rules of docs/architecture.md, checked over the source tree: no module imports
a package of a higher layer (lazy imports inside functions count), and the module-level
imports have no cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "animlora"

# Bottom to top; a package may import its own layer and those below. Keep in step with
# the table in docs/architecture.md.
LAYERS: list[set[str]] = [
    {"errors", "buckets", "groups", "boxes", "animlora", "data", "prompts"},
    {"config", "io"},
    {"models", "catalog", "records", "workspace"},
    {"text", "video", "pipeline"},
    {"backends", "training"},
    {"identity", "curation"},
    {"stages"},
    {"review", "cli", "__main__"},
]
LAYER = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(tree: ast.Module, *, top_level_only: bool) -> list[tuple[str, int]]:
    """(module imported, line) of every animlora import; top level only: not inside a
    function and not under ``if TYPE_CHECKING``."""
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = True
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = True
            if not (top_level_only and inner):
                if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "animlora":
                    names = [f"{child.module}.{a.name}" for a in child.names]
                    found.append((child.module, child.lineno))
                    found.extend((n, child.lineno) for n in names if _is_module(n))
                elif isinstance(child, ast.Import):
                    found.extend((a.name, child.lineno) for a in child.names if a.name.split(".")[0] == "animlora")
            visit(child, inner)

    visit(tree, False)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def sources() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(SRC.rglob("*.py"))}


def test_every_package_has_a_layer():
    units = {unit_of(m) for m in sources()}
    assert units <= set(LAYER), f"packages without a layer (add them to docs/architecture.md): {units - set(LAYER)}"


def test_no_module_imports_a_layer_above_its_own():
    wrong = []
    for module, tree in sources().items():
        mine = unit_of(module)
        for target, line in imports(tree, top_level_only=False):
            theirs = unit_of(target)
            if LAYER.get(theirs, -1) > LAYER[mine]:
                wrong.append(f"{module}:{line} imports {target} ({theirs} is above {mine})")
    assert wrong == []


def test_module_level_imports_have_no_cycle():
    trees = sources()
    graph = {m: {t for t, _ in imports(tree, top_level_only=True) if t in trees and t != m} for m, tree in trees.items()}
    state: dict[str, int] = {}
    cycles = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_the_rules_catch_a_violation(tmp_path):
    tree = ast.parse("from animlora.stages import get_stage\n\ndef f():\n    from animlora.cli import app\n")
    found = [t for t, _ in imports(tree, top_level_only=False)]
    assert "animlora.stages" in found and "animlora.cli" in found
    assert [t for t, _ in imports(tree, top_level_only=True)] == ["animlora.stages"]
    assert LAYER[unit_of("animlora.cli")] > LAYER[unit_of("animlora.stages.train")] > LAYER[unit_of("animlora.training.engine")]


# SQL lives in records/, the catalog and the runner (docs/architecture.md): no exceptions.
SQL = re.compile(r"\b(SELECT .* FROM|INSERT (OR REPLACE )?INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b|"
                 r"\.(upsert|get_meta|set_meta)\(")


def sql_modules() -> set[str]:
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        if unit_of(module) in ("records", "catalog") or module == "animlora.pipeline.runner":
            continue
        if SQL.search(path.read_text(encoding="utf-8")):
            found.add(module)
    return found


def test_sql_lives_in_records():
    assert sql_modules() == set(), "move this SQL into records/<stage>.py"
    assert SQL.search('catalog.rows("SELECT id FROM frames")') and SQL.search("cat.upsert('videos', rows)")
