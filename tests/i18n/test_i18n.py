"""Locale resolution and the per-request language."""

from __future__ import annotations

import asyncio

import pytest

from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.i18n.locales import match_locale, resolve_locale


@pytest.mark.parametrize(
    ("choice", "language_code", "expected"),
    [
        (None, None, "en"),
        (None, "", "en"),
        (None, "en-US", "en"),
        (None, "xx", "en"),
        (None, "zh-hans", "en"),
        ("not-a-locale", "xx", "en"),
    ],
)
def test_unknown_languages_fall_back_to_english(
    choice: str | None, language_code: str | None, expected: str
) -> None:
    assert resolve_locale(choice, language_code) == expected


def test_language_tags_match_installed_locales() -> None:
    for locale in i18n.LOCALES:
        tag = locale.replace("_", "-").lower()
        assert match_locale(tag) == locale
        assert match_locale(locale) == locale
        assert match_locale(tag.upper()) == locale


def test_every_text_defaults_to_english() -> None:
    assert i18n.current_locale() == "en"
    assert messages.working() == "✂️ Removing the background…"
    assert messages.format_wait(0.2) == "1 second"


async def test_locale_is_per_task() -> None:
    seen: dict[str, str] = {}

    async def request(name: str, locale: str) -> None:
        i18n.set_locale(locale)
        await asyncio.sleep(0.01)
        seen[name] = i18n.current_locale()

    last = i18n.LOCALES[-1]
    await asyncio.gather(
        asyncio.create_task(request("a", "en")), asyncio.create_task(request("b", last))
    )
    assert seen == {"a": "en", "b": last}
    assert i18n.current_locale() == "en", "a request's language does not leak out of its task"


def test_using_restores_the_previous_locale() -> None:
    last = i18n.LOCALES[-1]
    with i18n.using(last):
        assert i18n.current_locale() == last
        with i18n.using("nonsense"):
            assert i18n.current_locale() == "en"
    assert i18n.current_locale() == "en"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (30 * 24 * 3600, "30 days"),
        (24 * 3600, "1 day"),
        (2.5 * 24 * 3600, "3 days"),
        (36 * 3600, "36 hours"),
        (600, "10 minutes"),
    ],
)
def test_a_kept_period_is_told_in_days_from_a_day_up(seconds: float, expected: str) -> None:
    assert messages.format_period(seconds) == expected
