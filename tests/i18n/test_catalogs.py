"""The message catalogs: complete, consistent with the code, and fit for Telegram."""

from __future__ import annotations

import fnmatch
import gettext
import re
import tomllib
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from string import Formatter

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.plurals import get_plural as CLDR_PLURALS
from babel.messages.pofile import read_po

from bot.i18n import locales as i18n
from bot.i18n import messages
from tests.fakes.tg_format import HTML_TAGS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = i18n.LOCALE_DIR / f"{i18n.DOMAIN}.pot"


def _msgid(message_id: str | Sequence[str]) -> str:
    return message_id if isinstance(message_id, str) else message_id[0]


def _key(context: str | None, message_id: str | Sequence[str]) -> tuple[str | None, str]:
    return (context, _msgid(message_id))


def _strings(string: str | Sequence[str] | None) -> tuple[str, ...]:
    """A message's translation as a tuple of forms (one for a message without plural)."""
    if string is None:
        return ()
    return (string,) if isinstance(string, str) else tuple(string)


def test_template_lists_every_text_in_the_code() -> None:
    """`pybabel extract` (docs/languages.md) was run after the last text changed."""
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
            _key(m.context, m.id): _strings(m.string)
            for m in source
            if m.id and not m.fuzzy and any(_strings(m.string))
        }
        actual = {_key(m.context, m.id): _strings(m.string) for m in binary if m.id}
        assert actual == expected, f"{po_path}: run pybabel compile"
        with po_path.with_suffix(".mo").open("rb") as handle:
            gettext.GNUTranslations(handle)  # the runtime's own reader accepts it


# --- every locale: complete, same placeholders, Telegram-legal HTML, fits Telegram's limits ----

REQUIRED = {"en", "es", "pt_BR", "ru", "uk", "de", "fr", "it", "tr", "id", "ar", "fa", "hi"}
TRANSLATED = sorted(set(i18n.LOCALES) - {i18n.DEFAULT_LOCALE})
# Tags Telegram's HTML parse mode accepts: the fake Bot API's list.
TELEGRAM_TAGS = HTML_TAGS
# Translations that are rightly the same as the English (cognates); each must really be equal.
SAME_AS_ENGLISH = {
    ("es", "🏷 Sticker"),
    ("de", "🏷 Sticker"),
    ("de", "🟧 Orange"),
    ("fr", "🟧 Orange"),
    ("fr", "Image {numbers}"),
    ("fr", "Images {numbers}"),
    ("fr", "{count} minute"),
    ("fr", "{count} minutes"),
}
_FIELD = re.compile(r"\{([^{}]*)\}")


def _placeholders(text: str) -> set[str]:
    return {name for _text, name, _spec, _conv in Formatter().parse(text) if name is not None}


def _has_words(text: str) -> bool:
    return any(ch.isalpha() for ch in _FIELD.sub("", text))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.opened: list[str] = []
        self.seen: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS:
            self.problems.append(f"<{tag}> is not a tag Telegram accepts")
        self.opened.append(tag)
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.opened or self.opened.pop() != tag:
            self.problems.append(f"</{tag}> closes nothing open")

    def handle_entityref(self, name: str) -> None:
        if name not in ("lt", "gt", "amp", "quot"):
            self.problems.append(f"&{name}; is not an entity Telegram knows")


def _html(text: str) -> tuple[list[str], list[str]]:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    problems = list(parser.problems)
    if parser.opened:
        problems.append(f"unclosed {parser.opened}")
    if parser.rawdata:
        problems.append(f"unparsed {parser.rawdata!r}")
    return sorted(parser.seen), problems


def _catalog(locale: str) -> Catalog:
    path = i18n.LOCALE_DIR / locale / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def _forms_used(plural_expr: str, nplurals: int) -> dict[int, int]:
    """How many counts in 0..1000 each plural form serves."""
    rule = gettext.c2py(plural_expr)
    used = dict.fromkeys(range(nplurals), 0)
    for n in range(1001):
        used[rule(n)] += 1
    return used


def test_every_required_locale_is_installed() -> None:
    assert set(i18n.LOCALES) >= REQUIRED
    codes = [i18n.telegram_language_code(locale) for locale in i18n.LOCALES]
    assert len(set(codes)) == len(codes), "one catalog per Telegram language code"
    assert all(re.fullmatch(r"[a-z]{2}", code) for code in codes)


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_message_is_translated_with_the_same_placeholders(locale: str) -> None:
    catalog = _catalog(locale)
    with TEMPLATE.open("rb") as handle:
        template = read_po(handle)
    expected = CLDR_PLURALS(locale)
    assert catalog.num_plurals == expected.num_plurals, "Plural-Forms header from CLDR"
    used = _forms_used(catalog.plural_expr, catalog.num_plurals)
    problems: list[str] = []
    for source in template:
        if not source.id:
            continue
        message = catalog.get(source.id, context=source.context)
        name = _msgid(source.id)
        if message is None or message.fuzzy:
            problems.append(f"missing or fuzzy: {name!r}")
            continue
        if isinstance(source.id, str):
            forms = [(source.id, str(message.string), True)]
        else:
            strings = _strings(message.string)
            if len(strings) != catalog.num_plurals:
                problems.append(
                    f"{len(strings)} plural forms, not {catalog.num_plurals}: {name!r}"
                )
                continue
            # A form that serves several counts (Russian's "one" is 1, 21, 31...) must show
            # the count; a form for exactly one count (Arabic's 1 and 2) may spell it out.
            forms = [(source.id[1], s, used[i] > 1) for i, s in enumerate(strings)]
        union: set[str] = set()
        for english, text, needs_all in forms:
            if not text.strip():
                problems.append(f"empty: {name!r}")
                continue
            want, got = _placeholders(english), _placeholders(text)
            union |= got
            if not got <= want or (needs_all and got != want):
                problems.append(f"placeholders {sorted(got)} for {sorted(want)}: {text!r}")
            if text == english and _has_words(text) and (locale, text) not in SAME_AS_ENGLISH:
                problems.append(f"untranslated: {text!r}")
            want_tags, _ = _html(english)
            tags, html_problems = _html(text)
            if TELEGRAM_TAGS.intersection(want_tags):
                # Sent with parse_mode HTML: balanced, legal, and the same markup as English.
                problems.extend(f"{p}: {text!r}" for p in html_problems)
                if tags != want_tags:
                    problems.append(f"tags {tags} for {want_tags}: {text!r}")
            elif TELEGRAM_TAGS.intersection(tags):
                problems.append(f"markup in a plain-text message: {text!r}")
        if union != _placeholders(_msgid(source.id)) | (
            set() if isinstance(source.id, str) else _placeholders(source.id[1])
        ):
            problems.append(f"placeholders {sorted(union)} lost: {name!r}")
    assert problems == []


def test_allowed_english_lookalikes_are_real() -> None:
    for locale, text in SAME_AS_ENGLISH:
        strings = {s for m in _catalog(locale) if m.id for s in _strings(m.string)}
        assert text in strings, f"{locale}: {text!r} is no longer a translation; drop it"


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_texts_fit_telegram_limits(locale: str) -> None:
    with i18n.using(locale):
        commands = messages.commands()
        description = messages.bot_description()
        short_description = messages.bot_short_description()
        buttons = [
            messages.inline_start_button(),
            messages.inline_no_recent_button(),
            messages.studio_sticker(),
            messages.studio_pack(),
            messages.studio_background(),
            messages.studio_crop(),
            messages.studio_back(),
            messages.studio_shop(),
            messages.studio_more(),
            messages.studio_shadow(),
            messages.studio_outline(),
            messages.studio_outline_pack(),
            messages.studio_my_background(),
            *messages.palette_labels(),
        ]
        toasts = [
            messages.language_set(),
            messages.button_expired(),
            messages.temporarily_unavailable(),
            messages.studio_working(),
            messages.studio_not_yours(),
            messages.studio_invalid(),
            messages.studio_expired(),
            messages.studio_storage_down(),
        ]
        pack_title = messages.pack_title("a" * 32)
        name = i18n.language_name(locale)
    assert [c for c, _ in commands] == [c for c, _ in i18n_en_commands()]
    for _command, text in commands:
        assert 1 <= len(text.strip()) <= 256, text
    assert 1 <= len(description) <= 512
    assert 1 <= len(short_description) <= 120
    for label in buttons:
        assert len(label) <= 32, label
    for toast in toasts:  # answerCallbackQuery takes 0-200 characters
        assert len(toast) <= 200, toast
    assert 1 <= len(pack_title) <= 64
    # The /language keyboard shows "✓ " before the current one; it must fit a button too.
    assert 1 <= len(f"✓ {name}") <= 32
    if locale != i18n.DEFAULT_LOCALE:
        assert name != "English", "the language's name, in that language"


def test_button_labels_are_marked_for_translators() -> None:
    with TEMPLATE.open("rb") as handle:
        template = read_po(handle)
    labels = {_msgid(m.id) for m in template if any("button label" in c for c in m.auto_comments)}
    with i18n.using(i18n.DEFAULT_LOCALE):
        assert labels >= {messages.inline_start_button(), messages.inline_no_recent_button()}
    for locale in TRANSLATED:
        catalog = _catalog(locale)
        for label in labels:
            message = catalog.get(label)
            assert message is not None
            assert len(str(message.string)) <= 32, f"{locale}: {message.string!r}"


def i18n_en_commands() -> list[tuple[str, str]]:
    with i18n.using(i18n.DEFAULT_LOCALE):
        return messages.commands()


@pytest.mark.parametrize("locale", TRANSLATED)
def test_runtime_reads_each_catalog_and_its_plural_rule(locale: str) -> None:
    translations = i18n.translations(locale)
    assert isinstance(translations, gettext.GNUTranslations)
    rule = gettext.c2py(_catalog(locale).plural_expr)
    with i18n.using(locale):
        for n in (0, 1, 2, 3, 5, 11, 21, 22, 100, 101):
            index = rule(n)
            message = _catalog(locale).get(("{count} second", "{count} seconds"))
            assert message is not None
            text = i18n.ngettext("{count} second", "{count} seconds", n)
            assert text == _strings(message.string)[index]


def test_pip_install_ships_every_catalog() -> None:
    """`pip install .` copies bot/i18n/locale: every catalog file matches the package data."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        globs = tomllib.load(handle)["tool"]["setuptools"]["package-data"]["bot"]
    package = ROOT / "bot"
    files = [p for p in (package / "i18n" / "locale").rglob("*") if p.is_file()]
    assert files
    for path in files:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatchcase(relative, pattern) for pattern in globs), relative


_CUTOUT = re.compile(r"\bcut ?outs?\b|\bcut out\b", re.IGNORECASE)


@pytest.mark.parametrize("locale", TRANSLATED)
def test_the_crop_button_and_the_cutout_are_different_words(locale: str) -> None:
    """ "Crop" (trim a cutout to its subject) must not read as the bot's own job (cut out)."""
    catalog = _catalog(locale)
    crop = catalog.get("✂️ Crop")
    assert crop is not None
    assert isinstance(crop.string, str)
    word = re.sub(r"\W", "", crop.string).casefold()
    # Verb endings differ between the button and the sentences; short words stay whole.
    stem = word if len(word) <= 4 else word[:-2]
    clashes = [
        _msgid(message.id)[:60]
        for message in catalog
        if message.id
        and _CUTOUT.search(_msgid(message.id))
        and "crop" not in _msgid(message.id).lower()
        and any(stem in form.casefold() for form in _strings(message.string))
    ]
    assert clashes == [], f"{locale}: {crop.string!r} is also the word for a cutout"


RTL_LOCALES = ("ar", "fa")
FSI, PDI = "\u2068", "\u2069"
# Left-to-right tokens in a right-to-left paragraph: URLs, commands, @names, and placeholders
# that hold links or ids. Tag attributes (href="{url}") are not text and stay as they are.
_LTR_TOKEN = re.compile(
    r"https?://[^\s<\"\u2069]+"
    r"|(?<![<\w/])/[A-Za-z]\w*(?:@\{?\w+\}?)?"
    r"|@\{?\w+\}?"
    r"|\{(?:link|url|code|user|username)\}"
)
_TAG = re.compile(r"<[^>]*>")


def _ltr_tokens(text: str) -> list[tuple[int, int]]:
    tags = [match.span() for match in _TAG.finditer(text)]
    return [
        match.span()
        for match in _LTR_TOKEN.finditer(text)
        if not any(start <= match.start() < end for start, end in tags)
    ]


@pytest.mark.parametrize("locale", [locale for locale in RTL_LOCALES if locale in TRANSLATED])
def test_left_to_right_tokens_are_isolated_in_right_to_left_texts(locale: str) -> None:
    """`/removebg`, `@bot` and links keep their order inside Arabic or Persian sentences."""
    bare: list[str] = []
    for message in _catalog(locale):
        if not message.id:
            continue
        for form in _strings(message.string):
            for start, end in _ltr_tokens(form):
                if form[start - 1 : start] != FSI or form[end : end + 1] != PDI:
                    bare.append(f"{form[start:end]!r} in {_msgid(message.id)[:50]!r}")
    assert bare == [], f"wrap in U+2068 ... U+2069 ({locale}): " + "; ".join(bare[:10])


def test_the_isolate_check_finds_bare_tokens() -> None:
    assert _ltr_tokens('أرسل /help. أو @{username} و <a href="{url}">{url}</a>') == [
        (5, 10),
        (15, 26),
        (45, 50),
    ]
