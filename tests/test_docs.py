"""The docs stay true: every setting documented, README commands CI runs, no page left out."""

from __future__ import annotations

import re

from bot.settings import Settings
from tests.support import ROOT

DOCS = ROOT / "docs"


def _section(text: str, heading: str) -> str:
    """The text under a `## heading`, up to the next heading of that level."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_settings_reference_has_every_setting_and_no_stale_one() -> None:
    documented: set[str] = set()
    rows = re.findall(r"^\| (`[A-Z0-9_]+`(?: / `[A-Z0-9_]+`)*) \|", _read("settings.md"), re.M)
    for row in rows:
        documented.update(re.findall(r"`([A-Z0-9_]+)`", row))
    in_code = {name.upper() for name in Settings.model_fields}
    assert sorted(in_code - documented) == [], "settings missing from docs/settings.md"
    assert sorted(documented - in_code) == [], "docs/settings.md names settings the code lacks"


def test_readme_keeps_the_test_commands_ci_runs() -> None:
    section = _section((ROOT / "README.md").read_text(), "Run the tests")
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    assert block.group(1).splitlines() == ["pip install -e '.[test]'", "python -m pytest"]


def test_readme_links_into_docs_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text())
    assert links
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_every_docs_page_is_in_the_nav() -> None:
    nav = set(re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert pages == nav


def test_architecture_names_every_package() -> None:
    page = _read("architecture.md")
    table = _section(page, "Layers")
    layout = _section(page, "Project layout")
    packages = sorted(p.parent.name for p in (ROOT / "bot").glob("*/__init__.py"))
    assert packages
    assert [p for p in packages if f"| `bot/{p}` |" not in table] == [], "missing in the table"
    assert [p for p in packages if f"\n  {p}/ " not in layout] == [], "missing in the layout"


def _read(page: str) -> str:
    return (DOCS / page).read_text()
