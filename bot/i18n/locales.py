"""Translations: gettext catalogs in the package, the user's locale per request."""

from __future__ import annotations

import functools
import gettext as _gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

DOMAIN = "messages"
LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_LOCALE = "en"


def _installed_locales() -> tuple[str, ...]:
    # A language is one compiled catalog: adding locale/xx/LC_MESSAGES/messages.mo adds it.
    found = {path.parent.parent.name for path in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")}
    return (DEFAULT_LOCALE, *sorted(found - {DEFAULT_LOCALE}))


LOCALES: tuple[str, ...] = _installed_locales()

_current: ContextVar[str] = ContextVar("nobg_locale", default=DEFAULT_LOCALE)

# IETF tags as Telegram sends them (`pt-br`, `es-419`), lower case with hyphens -> our locale.
_EXACT = {locale.lower().replace("_", "-"): locale for locale in LOCALES}
# The first locale of each language wins its bare code: `pt` -> pt_BR.
_BY_LANGUAGE: dict[str, str] = {}
for _locale in LOCALES:
    _BY_LANGUAGE.setdefault(_locale.split("_")[0].lower(), _locale)


def match_locale(tag: str | None) -> str | None:
    """Our locale for a language tag (`pt-br` -> pt_BR, `es-419` -> es), or None."""
    if not tag:
        return None
    normal = tag.strip().replace("_", "-").lower()
    return _EXACT.get(normal) or _BY_LANGUAGE.get(normal.split("-")[0])


def resolve_locale(choice: str | None, language_code: str | None) -> str:
    """The user's locale: their /language choice, else Telegram's language_code, else English."""
    return match_locale(choice) or match_locale(language_code) or DEFAULT_LOCALE


def telegram_language_code(locale: str) -> str:
    """The two-letter code Telegram takes for per-language commands and descriptions."""
    return locale.split("_")[0].lower()


@functools.cache
def translations(locale: str) -> _gettext.NullTranslations:
    """The compiled catalog of `locale` (English, the source language, needs none)."""
    if locale == DEFAULT_LOCALE or locale not in LOCALES:
        return _gettext.NullTranslations()
    return _gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[locale])


def language_name(locale: str) -> str:
    """The name of the language of `locale` in that language (`Deutsch`, `Русский`)."""
    # TRANSLATORS: the name of your language, in your language (e.g. "Deutsch", "Español").
    return translations(locale).pgettext("language name", "English")


def current_locale() -> str:
    """The locale of the request being handled."""
    return _current.get()


def set_locale(locale: str) -> None:
    """Speak `locale` for the rest of the current request (task)."""
    _current.set(locale if locale in LOCALES else DEFAULT_LOCALE)


@contextmanager
def using(locale: str) -> Iterator[None]:
    """Speak `locale` inside the block, then go back."""
    token = _current.set(locale if locale in LOCALES else DEFAULT_LOCALE)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    """`message` in the current locale."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The plural form for `n` in the current locale (use `.format(...)` on the result)."""
    return translations(_current.get()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """`message` in the current locale, told apart from the same English by `context`."""
    return translations(_current.get()).pgettext(context, message)


def N_(message: str) -> str:
    """Mark `message` for extraction without translating it yet."""
    return message
