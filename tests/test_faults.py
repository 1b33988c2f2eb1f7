"""Bad input and faults (issue 13): each is answered plainly and never breaks the bot."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot import inline, messages
from tests.conftest import StartBot
from tests.fakes import FakeFreepik, FakeTelegram
from tests.fakes.updates import group_chat, inline_query, private_user, text_message, update
from tests.support import only_reply, visible_messages

USER = private_user(13001, "Dana")
GROUP = -100_1313

MALFORMED_LINKS = [
    "http://[::1/cat.jpg",
    "http://[not-an-ip]/x.png",
    "http://example\uff0ecom\uff0fcat.jpg",  # full-width dot and slash in the host
    "https://example.com:99999/cat.jpg",
]


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No ERROR line and no traceback was logged."""
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


# --- 1. malformed links ----------------------------------------------------------------------


@pytest.mark.parametrize("link", MALFORMED_LINKS)
async def test_malformed_link_in_private_chat_gets_the_plain_explanation(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    caplog: pytest.LogCaptureFixture,
    link: str,
) -> None:
    await start_bot()
    telegram.push_update(update(message=text_message(USER, f"cut this {link}")))
    await telegram.wait_for(lambda t: bool(visible_messages(t, USER["id"])), timeout=10)
    await asyncio.sleep(0.2)
    assert only_reply(telegram, USER["id"]).text == messages.not_http()
    assert not freepik.calls
    no_errors_logged(caplog)


@pytest.mark.parametrize("link", MALFORMED_LINKS[:2])
async def test_malformed_link_after_removebg_in_a_group_is_answered(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    caplog: pytest.LogCaptureFixture,
    link: str,
) -> None:
    await start_bot()
    message = text_message(USER, f"/removebg {link}", chat=group_chat(GROUP))
    telegram.push_update(update(message=message))
    await telegram.wait_for(lambda t: bool(visible_messages(t, GROUP)), timeout=10)
    await asyncio.sleep(0.2)
    reply = only_reply(telegram, GROUP)
    assert reply.text == messages.not_http()
    assert reply.reply_to == message["message_id"]
    assert not freepik.calls
    no_errors_logged(caplog)


async def test_malformed_link_inline_gets_the_not_http_article(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    pushed = inline_query(USER, MALFORMED_LINKS[0])
    telegram.push_update(pushed)
    query_id = pushed["inline_query"]["id"]
    (call,) = await telegram.wait_for_call(
        "answerInlineQuery", where=lambda c: c.params.get("inline_query_id") == query_id
    )
    (article,) = call.params["results"]
    assert article["title"] == inline.not_http_title()
    assert not freepik.calls


async def test_an_unexpected_error_in_a_group_still_gets_one_reply(
    start_bot: StartBot,
    telegram: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr("bot.handlers.group.find_source", broken)
    await start_bot()
    message = text_message(USER, "/removebg https://example.com/a.png", chat=group_chat(GROUP))
    telegram.push_update(update(message=message))
    await telegram.wait_for(lambda t: bool(visible_messages(t, GROUP)), timeout=10)
    await asyncio.sleep(0.2)
    reply = only_reply(telegram, GROUP)
    assert reply.text == messages.internal_error()
