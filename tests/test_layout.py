"""The package's shape: imports point one way, functions fit on a screen, public names say what
they do (../shared/STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seq2seq"
MAX_FUNCTION_LINES = 50
LIGHTNING_MODULES = {
    "datamodule",
    "lit_module",
    "callbacks",
    "lightning_cli",
    "schedules",
    "metrics",
    "reports",
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", modules(), ids=module_name)
def test_imports_point_one_way(path: Path) -> None:
    name = module_name(path)
    imports = imported(path)
    lightning = {m for m in imports if m.split(".")[0] in ("lightning", "torchmetrics")}
    if name.split(".")[-1] not in LIGHTNING_MODULES:
        assert not lightning, f"{name} imports {lightning}"
    ours = {m for m in imports if m.startswith("seq2seq.")}
    if name.startswith("seq2seq.model."):  # and the users' exception, a leaf module
        assert all(m.startswith("seq2seq.model.") for m in ours - {"seq2seq.errors"}), ours
    if name.startswith(("seq2seq.data.", "seq2seq.decoding.")):
        outside = ours - {"seq2seq.errors", "seq2seq.files"}
        package = name.rsplit(".", 1)[0]
        assert all(m.startswith(package) for m in outside), outside


def definitions(path: Path) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of every module-level class and function, and of methods."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualified = f"{prefix}{child.name}"
                found.append((qualified, child))
                if isinstance(child, ast.ClassDef):  # a function's inner helpers are its own
                    visit(child, qualified + ".")

    visit(ast.parse(path.read_text()), f"{module_name(path)}.")
    return found


def test_no_function_is_longer_than_a_screen() -> None:
    long = [
        f"{name}: {node.end_lineno - node.lineno + 1} lines"
        for path in modules()
        for name, node in definitions(path)
        if not isinstance(node, ast.ClassDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long


def is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split(".")[2:])


def test_public_classes_and_functions_have_docstrings() -> None:
    """Lightning hooks and `forward` overrides included; nested helpers and `_private` not."""
    missing = [
        name
        for path in modules()
        for name, node in definitions(path)
        if is_public(name) and not ast.get_docstring(node)
    ]
    assert not missing
