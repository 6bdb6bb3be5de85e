"""The package's import graph has no cycle, counting imports inside functions and the pipeline's
"module:function" stage targets; and the layers point one way: no stage module imports the
pipeline or the CLI, and the run-folder names have one source of truth."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

from distillqa.layout import MADE_BY
from distillqa.pipeline import STAGES

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "distillqa"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """distillqa modules imported anywhere in `tree` (module level, in functions, under TYPE_CHECKING)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distillqa"):
            for alias in node.names:  # `from distillqa.teacher import generate` imports a module
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    return out & modules


def import_graph() -> nx.DiGraph:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        for target in imported(ast.parse(path.read_text(encoding="utf-8")), set(files)):
            if target != name and target != "distillqa":
                graph.add_edge(name, target)
    for stage in STAGES:  # pipeline imports each stage's module by name when it runs
        graph.add_edge("distillqa.pipeline", stage.target.partition(":")[0])
    return graph


def test_no_import_cycles() -> None:
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert cycles == []


def test_only_the_cli_and_the_app_import_the_pipeline() -> None:
    graph = import_graph()
    importers = {m for m in graph.predecessors("distillqa.pipeline")}
    assert importers <= {"distillqa.cli"} | {m for m in graph if m.startswith("distillqa.app.")}
    assert set(graph.predecessors("distillqa.cli")) == {"distillqa.__main__"}


def test_the_cycle_finder_sees_function_level_imports() -> None:
    tree = ast.parse("def f():\n    from distillqa.a import x\n")
    assert imported(tree, {"distillqa.a"}) == {"distillqa.a"}


def test_each_run_folder_file_is_made_by_the_stage_named_for_it() -> None:
    made = {out: stage.name for stage in STAGES for out in stage.outputs}
    assert {k: v for k, v in MADE_BY.items() if k in made} == made
    assert set(MADE_BY.values()) <= {s.name for s in STAGES}
