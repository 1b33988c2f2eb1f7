"""The message catalogs: complete, consistent with the code, and fit for Telegram."""

from __future__ import annotations

import gettext
from collections.abc import Sequence
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from bot import i18n

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = i18n.LOCALE_DIR / f"{i18n.DOMAIN}.pot"


def _msgid(message_id: str | Sequence[str]) -> str:
    return message_id if isinstance(message_id, str) else message_id[0]


def _key(context: str | None, message_id: str | Sequence[str]) -> tuple[str | None, str]:
    return (context, _msgid(message_id))


def test_template_lists_every_text_in_the_code() -> None:
    """`pybabel extract` (README "Translations") was run after the last text changed."""
    method_map = [("bot/**.py", "python")]
    extracted = {
        _key(context, message)
        for _file, _line, message, _comments, context in extract_from_dir(
            str(ROOT), method_map, comment_tags=("TRANSLATORS:",)
        )
    }
    with TEMPLATE.open("rb") as handle:
        template = read_po(handle)
    listed = {_key(m.context, m.id) for m in template if m.id}
    assert extracted - listed == set(), "new texts: run pybabel extract and update the catalogs"
    assert listed - extracted == set(), "texts gone from the code: run pybabel extract/update"


def test_compiled_catalogs_match_their_sources() -> None:
    """The committed .mo files are what `pybabel compile` makes of the committed .po files."""
    sources = sorted(i18n.LOCALE_DIR.glob(f"*/LC_MESSAGES/{i18n.DOMAIN}.po"))
    compiled = sorted(i18n.LOCALE_DIR.glob(f"*/LC_MESSAGES/{i18n.DOMAIN}.mo"))
    assert [p.with_suffix("") for p in sources] == [p.with_suffix("") for p in compiled]
    for po_path in sources:
        with po_path.open("rb") as handle:
            source = read_po(handle)
        with po_path.with_suffix(".mo").open("rb") as handle:
            binary = read_mo(handle)
        expected = {
            _key(m.context, m.id): m.string for m in source if m.id and not m.fuzzy and m.string
        }
        actual = {_key(m.context, m.id): m.string for m in binary if m.id}
        assert actual == expected, f"{po_path}: run pybabel compile"
        with po_path.with_suffix(".mo").open("rb") as handle:
            gettext.GNUTranslations(handle)  # the runtime's own reader accepts it
