"""The layout holds: one-way imports between the top-level packages, and no handler
outside edge/ reaching into the `Edge` object (issue #16). Read with `ast`, so a rule
broken anywhere fails here with the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What each package may import of the others: core is the base; analytics and retention
# build on it (retention may also use analytics); edge composes them all.
ALLOWED = {
    "core": set(),
    "analytics": {"core"},
    "retention": {"core", "analytics"},
    "edge": {"core", "analytics", "retention"},
}


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _imported_packages(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module.split(".")[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]


def test_packages_import_one_way():
    wrong = []
    for package, allowed in ALLOWED.items():
        others = set(ALLOWED) - allowed - {package}
        for path, tree in _modules(package):
            wrong += [f"{path.relative_to(ROOT)}:{line} imports {name}"
                      for line, name in _imported_packages(tree) if name in others]
    assert not wrong, "\n".join(wrong)


def test_nothing_outside_edge_reads_the_edge_object():
    """The `Edge` is the composition root's: handlers elsewhere receive what they need as
    dependencies (edge/dependencies.py), and retention reaches a running edge only through
    `retention.hooks.RetentionHooks`. So no `.edge` and no `["edge"]` outside edge/."""
    wrong = []
    for package in ("core", "analytics", "retention"):
        for path, tree in _modules(package):
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "edge" or (
                        isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                        and node.slice.value == "edge"):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, "the Edge object read outside edge/: " + ", ".join(wrong)


def test_tests_mirror_the_layout():
    """Each package's tests live in the folder of the same name."""
    for package in ALLOWED:
        assert (ROOT / "tests" / package).is_dir(), f"tests/{package}/ is missing"
        assert list((ROOT / "tests" / package).glob("test_*.py")), f"tests/{package}/ has no tests"
