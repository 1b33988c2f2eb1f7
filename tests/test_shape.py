"""The code keeps the shape a newcomer can read: few top-level modules, no giant classes."""

from __future__ import annotations

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parents[1] / "bot"
MAX_CLASS_LINES = 250
# Settings lists every setting with its validation; it is long by nature.
EXEMPT = {"Settings"}


def class_sizes() -> dict[str, int]:
    """Lines of every class under bot/, by `path:Name`."""
    sizes: dict[str, int] = {}
    for path in BOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                name = f"{path.relative_to(BOT.parent)}:{node.name}"
                sizes[name] = node.end_lineno - node.lineno + 1
    return sizes


def test_no_class_is_over_250_lines() -> None:
    sizes = class_sizes()
    assert sizes  # the walk found the code
    too_big = {
        name: lines
        for name, lines in sizes.items()
        if lines > MAX_CLASS_LINES and name.rsplit(":", 1)[1] not in EXEMPT
    }
    assert too_big == {}, "split these classes"


def test_at_most_ten_modules_directly_in_bot() -> None:
    modules = sorted(p.name for p in BOT.glob("*.py"))
    assert "settings.py" in modules
    assert len(modules) <= 10, modules


def test_every_package_says_what_it_owns() -> None:
    for init in BOT.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.parent.name} has no docstring"
        assert len(doc.splitlines()) == 1, f"{init.parent.name}: one line says what it owns"
