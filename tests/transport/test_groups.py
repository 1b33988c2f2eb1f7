"""Group chats: /removebg in its forms, the ignored cases, and per-user and per-chat limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from telegram.ext import AIORateLimiter

from bot.i18n import messages
from bot.transport.telegram_rate import FairRateLimiter
from tests.conftest import ImageHost, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.images import is_transparent_png
from tests.fakes.updates import (
    document_message,
    group_chat,
    photo_message,
    private_user,
    text_message,
    update,
)
from tests.support import only_reply, visible_messages

GROUP = -100500
ALICE = private_user(7001, "Alice")
BOB = private_user(7002, "Bob")


def post(telegram: FakeTelegram, message: dict[str, Any]) -> int:
    """Push a message update; return its message id."""
    telegram.push_update(update(message=message))
    return int(message["message_id"])


def group_photo(telegram: FakeTelegram, user: dict[str, Any] = ALICE, **kw: Any) -> dict[str, Any]:
    """A photo posted in the group."""
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(50, 40)))
    return photo_message(user, file_id, unique_id, chat=group_chat(GROUP), **kw)


def command(text: str, user: dict[str, Any] = ALICE, **kw: Any) -> dict[str, Any]:
    """A command message in the group."""
    return text_message(user, text, chat=group_chat(GROUP), **kw)


async def cutout_in_reply_to(telegram: FakeTelegram, message_id: int) -> Any:
    """Wait for the document replying to `message_id` and return its call."""
    calls = await telegram.wait_for_call(
        "sendDocument",
        where=lambda c: (c.params.get("reply_parameters") or {}).get("message_id") == message_id,
        timeout=15,
    )
    return calls[0]


@pytest.mark.parametrize("text", ["/removebg", "/nobg", "/removebg@nobg_test_bot"])
async def test_command_as_reply_to_a_photo(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, text: str
) -> None:
    await start_bot()
    photo = group_photo(telegram, BOB)
    post(telegram, photo)
    command_id = post(telegram, command(text, reply_to_message=photo))
    call = await cutout_in_reply_to(telegram, command_id)
    assert call.params["chat_id"] == GROUP
    assert is_transparent_png(call.files["document"].data)
    assert len(freepik.calls) == 1
    await asyncio.sleep(0.1)
    assert only_reply(telegram, GROUP).method == "sendDocument"


async def test_command_as_reply_to_an_image_file(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    file_id, unique_id = telegram.add_file(make_image("PNG"))
    document = document_message(
        BOB,
        file_id,
        unique_id,
        file_name="logo.png",
        mime_type="image/png",
        chat=group_chat(GROUP),
    )
    post(telegram, document)
    command_id = post(telegram, command("/removebg", reply_to_message=document))
    call = await cutout_in_reply_to(telegram, command_id)
    assert call.files["document"].filename == "logo-nobg.png"


async def test_command_with_a_link_argument(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot()
    link = image_host.add("mug.jpg", make_image("JPEG"))
    command_id = post(telegram, command(f"/removebg {link}"))
    call = await cutout_in_reply_to(telegram, command_id)
    assert call.files["document"].filename == "mug-nobg.png"
    assert freepik.calls[0].image_url == link


async def test_command_as_a_photo_caption(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    message_id = post(telegram, group_photo(telegram, caption="/removebg please"))
    call = await cutout_in_reply_to(telegram, message_id)
    assert is_transparent_png(call.files["document"].data)


async def test_command_alone_gets_usage(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    post(telegram, command("/removebg"))
    await telegram.wait_for(
        lambda t: any(v.text == messages.removebg_usage() for v in visible_messages(t, GROUP))
    )
    assert freepik.calls == []


@pytest.mark.parametrize(
    "make",
    [
        lambda t: group_photo(t),
        lambda t: group_photo(t, caption="nice pic"),
        lambda t: group_photo(t, caption="/removebg@some_other_bot"),
        lambda t: command("look https://example.com/cat.jpg"),
        lambda t: command("/removebg@some_other_bot https://example.com/cat.jpg"),
        lambda t: document_message(
            ALICE,
            *t.add_file(make_image("PNG")),
            file_name="x.png",
            mime_type="image/png",
            chat=group_chat(GROUP),
        ),
    ],
    ids=["photo", "captioned-photo", "other-bots-caption", "link", "other-bots-command", "file"],
)
async def test_plain_group_messages_are_ignored(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, make: Any
) -> None:
    await start_bot()
    post(telegram, make(telegram))
    # A private message afterwards proves the group update was already handled (in order).
    post(telegram, text_message(BOB, "hello"))
    await telegram.wait_for(lambda t: bool(visible_messages(t, BOB["id"])))
    await asyncio.sleep(0.3)
    assert visible_messages(telegram, GROUP) == []
    assert not [c for c in telegram.calls if c.params.get("chat_id") == GROUP]
    assert freepik.calls == []


async def test_user_limit_counts_across_chats(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(rate_limit="2/minute")
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    post(telegram, photo_message(ALICE, file_id, unique_id))  # private chat
    await telegram.wait_for(lambda t: bool(t.sent_documents(ALICE["id"])))
    photo = group_photo(telegram, BOB)
    first = post(telegram, command("/removebg", reply_to_message=photo))
    await cutout_in_reply_to(telegram, first)
    other = group_photo(telegram, BOB)
    post(telegram, command("/removebg", reply_to_message=other))
    await telegram.wait_for(
        lambda t: any("your limit" in (v.text or "") for v in visible_messages(t, GROUP))
    )
    assert len(freepik.calls) == 2
    # Bob, who posted the photos, is not limited by Alice's use.
    bob_id = post(telegram, command("/removebg", user=BOB, reply_to_message=other))
    await cutout_in_reply_to(telegram, bob_id)
    assert len(freepik.calls) == 3


async def test_chat_limit_protects_the_quota(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(chat_rate_limit="1/minute")
    first = post(telegram, command("/removebg", reply_to_message=group_photo(telegram)))
    await cutout_in_reply_to(telegram, first)
    post(telegram, command("/removebg", user=BOB, reply_to_message=group_photo(telegram)))
    await telegram.wait_for(
        lambda t: any(
            "This chat has reached" in (v.text or "") for v in visible_messages(t, GROUP)
        )
    )
    assert len(freepik.calls) == 1
    # Bob's own private chat is not a group: the chat limit does not apply there.
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    post(telegram, photo_message(BOB, file_id, unique_id))
    await telegram.wait_for(lambda t: bool(t.sent_documents(BOB["id"])))
    assert len(freepik.calls) == 2


async def test_reply_to_one_album_item_handles_that_item(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    items = [group_photo(telegram, BOB, media_group_id="album-1") for _ in range(3)]
    for item in items:
        post(telegram, item)
    command_id = post(telegram, command("/removebg", reply_to_message=items[1]))
    await cutout_in_reply_to(telegram, command_id)
    await asyncio.sleep(0.3)
    assert len(freepik.calls) == 1
    fetched = telegram.calls_of("getFile")
    assert [c.params["file_id"] for c in fetched] == [items[1]["photo"][-1]["file_id"]]


async def test_group_replies_go_through_the_group_rate_limiter(start_bot: StartBot) -> None:
    bot = await start_bot()
    fair = bot.application.bot.rate_limiter
    assert isinstance(fair, FairRateLimiter)
    limiter = fair.inner
    assert isinstance(limiter, AIORateLimiter)
    assert limiter._group_max_rate == 20
    assert limiter._group_time_period == 60
