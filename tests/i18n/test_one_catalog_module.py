"""Every text a user reads lives in bot/i18n/messages.py: no translation calls elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

from babel.messages.extract import extract_from_dir

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "bot"
I18N = PACKAGE / "i18n"
# The lookups of bot.i18n.locales and the standard library's gettext module.
LOOKUPS = {"_", "gettext", "ngettext", "pgettext", "npgettext", "dgettext", "dngettext", "N_"}


def _outside_i18n() -> list[Path]:
    files = sorted(p for p in PACKAGE.rglob("*.py") if I18N not in p.parents)
    assert files
    return files


def _problems(source: str, where: str) -> list[str]:
    """Each import of a gettext function or module and each call of a lookup in `source`."""
    tree = ast.parse(source, filename=where)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                f"{where}:{node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name == "gettext"
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for alias in node.names:
                if module == "gettext" or alias.name in LOOKUPS:
                    found.append(f"{where}:{node.lineno}: from {module} import {alias.name}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in LOOKUPS:
                found.append(f"{where}:{node.lineno}: {name}(...)")
    return found


def test_no_translation_lookups_outside_i18n() -> None:
    """Only bot/i18n/ looks texts up; the rest of the bot calls bot.i18n.messages functions."""
    problems = [
        problem
        for path in _outside_i18n()
        for problem in _problems(
            path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix()
        )
    ]
    assert problems == [], "move these texts into bot/i18n/messages.py"


def test_babel_extracts_texts_from_i18n_only() -> None:
    """What `pybabel extract` finds (README "Translations") all comes from bot/i18n/."""
    found = {
        Path(filename).as_posix()
        for filename, _line, _message, _comments, _context in extract_from_dir(
            str(PACKAGE), [("**.py", "python")]
        )
    }
    assert found, "the extractor found no texts at all"
    assert {name for name in found if not name.startswith("i18n/")} == set()


def test_the_scan_sees_a_lookup() -> None:
    """The scan is not blind: stray lookups and gettext imports are each reported."""
    stray = (
        "import gettext\n"
        "from bot.i18n.locales import ngettext\n"
        "def f(n: int) -> str:\n"
        "    return _('x') + ngettext('a', 'b', n) + gettext.gettext('y')\n"
    )
    assert len(_problems(stray, "stray.py")) == 5
