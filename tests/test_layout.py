"""Module boundaries the layout promises (issue #16), checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

RETENTION = Path(__file__).resolve().parent.parent / "retention"


def _trees():
    for path in sorted(RETENTION.rglob("*.py")):
        yield path.name, ast.parse(path.read_text(), str(path))


def test_retention_imports_nothing_from_edge():
    """`edge` composes `retention`, never the reverse: what a purge or an offboarding
    needs of a running edge goes through `retention.hooks.RetentionHooks`."""
    for name, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module != "edge" and not module.startswith("edge."), f"retention/{name} imports {module}"


def test_retention_reads_no_edge_attribute():
    """No `state.edge` (nor any `.edge`, nor `state["edge"]`): handlers take what they use
    as dependencies the app registers."""
    for name, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr != "edge", f"retention/{name}:{node.lineno} reads .edge"
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                assert node.slice.value != "edge", f"retention/{name}:{node.lineno} reads ['edge']"
