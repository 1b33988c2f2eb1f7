"""End to end: the bot speaks each user's language; /language; the per-language menu."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.ext import Application, CommandHandler

from bot.i18n import locales as i18n
from bot.i18n import messages
from tests.conftest import StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import (
    group_chat,
    inline_query,
    photo_message,
    private_user,
    text_message,
    update,
)
from tests.redis_server import RedisServer
from tests.support import visible_messages

GROUP = -100777


def in_language(locale: str, text: Callable[[], str]) -> str:
    """What `text` says in `locale` (and it must not be the English)."""
    with i18n.using(locale):
        translated = text()
    with i18n.using(i18n.DEFAULT_LOCALE):
        assert translated != text(), f"{locale} has its own words"
    return translated


def user(user_id: int, language_code: str | None) -> dict[str, Any]:
    """A user whose Telegram client is set to `language_code` (None: the client sends none)."""
    made = private_user(user_id)
    if language_code is None:
        made.pop("language_code")
    else:
        made["language_code"] = language_code
    return made


def send(telegram: FakeTelegram, message: dict[str, Any]) -> int:
    """Push a message update; return the message id."""
    telegram.push_update(update(message=message))
    return int(message["message_id"])


def texts(telegram: FakeTelegram, chat_id: int) -> list[str]:
    """What the chat shows now (edits applied, deleted messages gone)."""
    return [v.text for v in visible_messages(telegram, chat_id) if v.text]


async def sent_text(telegram: FakeTelegram, chat_id: int, text: str) -> None:
    """Wait until the bot sent `text` to the chat (possibly edited away later)."""
    await telegram.wait_for_call(
        "sendMessage",
        where=lambda c: c.params.get("chat_id") == chat_id and c.params.get("text") == text,
        timeout=15,
    )


async def shows(telegram: FakeTelegram, chat_id: int, text: str) -> None:
    """Wait until the chat shows `text`."""
    await telegram.wait_for(lambda t: text in texts(t, chat_id), timeout=15)


@pytest.mark.parametrize(("language_code", "locale"), [("es", "es"), ("ru", "ru"), ("ar", "ar")])
async def test_help_status_and_errors_in_the_clients_language(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    language_code: str,
    locale: str,
) -> None:
    await start_bot(rate_limit="5/minute;50/day")
    person = user(2001, language_code)

    send(telegram, text_message(person, "/help"))
    username = telegram.username
    help_text = in_language(locale, lambda: messages.help_text("5/minute;50/day", username))
    await sent_text(telegram, 2001, help_text)

    # A failing removal: the status message, then the explanation, both in the language.
    freepik.fail_next(500, times=9)
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(40, 30)))
    send(telegram, photo_message(person, file_id, unique_id))
    await sent_text(telegram, 2001, in_language(locale, messages.working))
    await shows(telegram, 2001, in_language(locale, messages.unavailable))

    # A bad input, answered at once.
    send(telegram, text_message(person, "hello"))
    await shows(telegram, 2001, in_language(locale, messages.no_link))

    # And the finished cutout's caption.
    freepik.reset()
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(40, 30)))
    send(telegram, photo_message(person, file_id, unique_id))
    (document,) = await telegram.wait_for_call("sendDocument", timeout=15)
    assert document.params["caption"] == in_language(locale, messages.done_caption)


@pytest.mark.parametrize(
    ("language_code", "locale"),
    [("pt-br", "pt_BR"), ("pt", "pt_BR"), ("es-419", "es"), ("de-AT", "de"), ("zh-hans", "en")],
)
async def test_regional_and_unknown_language_codes(
    start_bot: StartBot, telegram: FakeTelegram, language_code: str, locale: str
) -> None:
    await start_bot()
    send(telegram, text_message(user(2002, language_code), "hello"))
    with i18n.using(locale):
        expected = messages.no_link()
    await shows(telegram, 2002, expected)


async def test_no_language_code_means_english(start_bot: StartBot, telegram: FakeTelegram) -> None:
    await start_bot()
    send(telegram, text_message(user(2003, None), "hello"))
    await shows(telegram, 2003, messages.no_link())


async def test_inline_answers_in_the_users_language(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    pushed = inline_query(user(2004, "ru"), "a cat on a sofa")
    telegram.push_update(pushed)
    (call,) = await telegram.wait_for_call("answerInlineQuery", timeout=10)
    (article,) = call.params["results"]
    assert article["title"] == in_language("ru", messages.inline_no_link_title)
    assert article["input_message_content"]["message_text"] == in_language(
        "ru", messages.inline_no_link_text
    )


@pytest.fixture(params=["redis", "sqlite"])
def lasting_storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A STORAGE_URL whose data outlives the bot process."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'data' / 'state.sqlite3'}"
    return str(request.getfixturevalue("redis_url"))


async def test_language_command_switches_and_survives_a_restart(
    start_bot: StartBot, telegram: FakeTelegram, lasting_storage: str
) -> None:
    storage_url = lasting_storage
    bot = await start_bot(storage_url=storage_url)
    person = user(2005, "en")

    send(telegram, text_message(person, "/language"))
    (keyboard,) = await telegram.wait_for_call(
        "sendMessage", where=lambda c: "reply_markup" in c.params, timeout=10
    )
    assert keyboard.params["text"] == messages.language_prompt()
    rows = keyboard.params["reply_markup"]["inline_keyboard"]
    labels = {b["callback_data"]: b["text"] for row in rows for b in row}
    assert labels["lang:en"] == "✓ English", "the current language is ticked"
    assert labels["lang:ru"] == "Русский"
    assert labels["lang:ar"] == "العربية"
    assert all(len(row) <= 2 for row in rows)

    query_id = telegram.press(person, keyboard.result, "lang:ru")
    await telegram.wait_for(lambda t: t.callback_answer(query_id) is not None, timeout=10)
    await shows(telegram, 2005, in_language("ru", messages.language_set))
    edited = telegram.calls_of("editMessageText")[-1]
    assert "reply_markup" not in edited.params, "the keyboard is gone once a language is chosen"

    # The stored choice beats the client's language_code...
    send(telegram, text_message(person, "hello"))
    await shows(telegram, 2005, in_language("ru", messages.no_link))

    # ...and holds after a restart on the same storage.
    await bot.shutdown()
    telegram.reset_calls()
    await start_bot(storage_url=storage_url)
    send(telegram, text_message(person, "/help"))
    await telegram.wait_for_call("sendMessage", timeout=10)
    sent = telegram.calls_of("sendMessage")[0].params["text"]
    username = telegram.username
    assert sent == in_language("ru", lambda: messages.help_text("", username))


async def test_group_commands_answer_in_the_issuers_language(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    group = group_chat(GROUP)
    send(telegram, text_message(user(2006, "de"), "/removebg", chat=group))
    await shows(telegram, GROUP, in_language("de", messages.removebg_usage))
    send(telegram, text_message(user(2007, "ar"), "/removebg", chat=group))
    await shows(telegram, GROUP, in_language("ar", messages.removebg_usage))


async def test_language_buttons_in_a_group_are_per_presser(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    group = group_chat(GROUP)
    send(telegram, text_message(user(2008, "en"), "/language", chat=group))
    (keyboard,) = await telegram.wait_for_call(
        "sendMessage", where=lambda c: "reply_markup" in c.params, timeout=10
    )
    # Someone else presses: their choice, their toast; the keyboard stays for the others.
    other = user(2009, "en")
    query_id = telegram.press(other, keyboard.result, "lang:uk")
    await telegram.wait_for(lambda t: t.callback_answer(query_id) is not None, timeout=10)
    answer = telegram.callback_answer(query_id)
    assert answer is not None
    assert answer["text"] == in_language("uk", messages.language_set)
    assert not telegram.calls_of("editMessageText")
    send(telegram, text_message(other, "/removebg", chat=group))
    await shows(telegram, GROUP, in_language("uk", messages.removebg_usage))
    send(telegram, text_message(user(2008, "en"), "/removebg", chat=group))
    await shows(telegram, GROUP, messages.removebg_usage())


async def test_a_stale_language_button_is_answered(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    person = user(2010, "en")
    send(telegram, text_message(person, "/language"))
    (keyboard,) = await telegram.wait_for_call(
        "sendMessage", where=lambda c: "reply_markup" in c.params, timeout=10
    )
    query_id = telegram.press(person, keyboard.result, "lang:xx")
    await telegram.wait_for(lambda t: t.callback_answer(query_id) is not None, timeout=10)
    answer = telegram.callback_answer(query_id)
    assert answer is not None
    assert answer["text"] == messages.button_expired()


def handled_commands(application: Application[Any, Any, Any, Any, Any, Any]) -> set[str]:
    """Every command the application has a handler for."""
    return {
        command
        for handlers in application.handlers.values()
        for handler in handlers
        if isinstance(handler, CommandHandler)
        for command in handler.commands
    }


async def test_menu_and_descriptions_are_registered_for_every_language(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await start_bot()
    admin = {c for c, _ in messages.admin_commands()}
    # Every command a user can give is in the menu (the admins' in theirs).
    assert handled_commands(bot.application) - admin == {c for c, _ in messages.commands()}
    count = len(i18n.LOCALES)
    for method in ("setMyCommands", "setMyDescription", "setMyShortDescription"):
        await telegram.wait_for_call(method, count=count, timeout=15)
    state = telegram.state
    for locale in i18n.LOCALES:
        code = "" if locale == i18n.DEFAULT_LOCALE else i18n.telegram_language_code(locale)
        with i18n.using(locale):
            commands = [{"command": c, "description": d} for c, d in messages.commands()]
            description = messages.bot_description()
            short_description = messages.bot_short_description()
        key = next(k for k in state.commands if k.endswith(f'"{code}"]'))
        assert state.commands[key] == commands, locale
        assert state.descriptions[code] == description
        assert state.short_descriptions[code] == short_description
    assert len(state.commands) == count
    assert {c.params.get("language_code") or "" for c in telegram.calls_of("setMyCommands")} == {
        "" if loc == "en" else i18n.telegram_language_code(loc) for loc in i18n.LOCALES
    }


async def test_storage_outage_falls_back_to_the_clients_language(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, own_redis: RedisServer
) -> None:
    bot = await start_bot(mode="webhook", storage_url=own_redis.url)
    app = bot.application
    own_redis.stop()
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(40, 30)))
    message = photo_message(user(2011, "es"), file_id, unique_id)
    # Straight onto the queue, as the webhook route does once an update is accepted.
    await app.update_queue.put(Update.de_json(update(message=message, update_id=7), app.bot))
    await shows(telegram, 2011, in_language("es", messages.temporarily_unavailable))
    assert freepik.calls == []


async def test_a_refused_registration_skips_only_itself(
    start_bot: StartBot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.fail_next("setMyCommands", error_code=400, description="Bad Request: test refusal")
    await start_bot()
    count = len(i18n.LOCALES)
    await telegram.wait_for_call("setMyShortDescription", count=count, timeout=15)
    assert len(telegram.state.descriptions) == count
    assert len(telegram.state.commands) == count - 1
    assert "Could not register the commands for en" in caplog.text
    send(telegram, text_message(user(2012, "it"), "hello"))
    await shows(telegram, 2012, in_language("it", messages.no_link))
