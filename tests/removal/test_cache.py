"""Never paying twice: result cache and request coalescing, end to end."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from bot.i18n import messages
from tests.conftest import ImageHost, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import photo_message, private_user, text_message, update
from tests.support import only_reply, visible_messages

ANN = private_user(8001, "Ann")
BEN = private_user(8002, "Ben")


def post(telegram: FakeTelegram, message: dict[str, Any]) -> int:
    telegram.push_update(update(message=message))
    return int(message["message_id"])


async def documents_to(telegram: FakeTelegram, chat_id: int, count: int) -> list[Any]:
    await telegram.wait_for(lambda t: len(t.sent_documents(chat_id)) >= count, timeout=15)
    return telegram.sent_documents(chat_id)


async def test_same_photo_twice_costs_one_freepik_call(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    # A limit of one per minute: the cache hit must not count against it.
    await start_bot(rate_limit="1/minute")
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    post(telegram, photo_message(ANN, file_id, unique_id))
    first, *_ = await documents_to(telegram, ANN["id"], 1)
    second_id = post(telegram, photo_message(ANN, file_id, unique_id))
    sent = await documents_to(telegram, ANN["id"], 2)
    resend = sent[1]
    assert len(freepik.calls) == 1
    # Re-sent by Telegram's file id: no upload, no download, no Freepik.
    assert resend.files == {}
    assert resend.params["document"] == first.result["document"]["file_id"]
    assert resend.params["reply_parameters"]["message_id"] == second_id
    assert len(telegram.calls_of("getFile")) == 1
    assert len(freepik.downloads) == 1
    await asyncio.sleep(0.1)
    assert [v.method for v in visible_messages(telegram, ANN["id"])] == ["sendDocument"] * 2


async def test_same_photo_from_another_user_is_a_hit(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    post(telegram, photo_message(ANN, file_id, unique_id))
    await documents_to(telegram, ANN["id"], 1)
    # Forwarded by Ben: Telegram gives it another file_id but the same file_unique_id.
    other_file_id = file_id + "-forwarded"
    post(telegram, photo_message(BEN, other_file_id, unique_id))
    (resend,) = await documents_to(telegram, BEN["id"], 1)
    assert resend.files == {}
    assert len(freepik.calls) == 1
    assert only_reply(telegram, BEN["id"]).method == "sendDocument"


async def test_simultaneous_requests_for_one_link_share_one_job(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    freepik.latency = 0.8
    await start_bot()
    link = image_host.add("vase.jpg", make_image("JPEG"))
    post(telegram, text_message(ANN, link))
    post(telegram, text_message(BEN, link))
    (ann_doc,) = await documents_to(telegram, ANN["id"], 1)
    (ben_doc,) = await documents_to(telegram, BEN["id"], 1)
    assert len(freepik.calls) == 1
    uploads = [d for d in (ann_doc, ben_doc) if d.files]
    assert len(uploads) == 1, "one upload, the other sent by file id"
    await asyncio.sleep(0.1)
    for user in (ANN, BEN):
        assert only_reply(telegram, user["id"]).method == "sendDocument"


async def test_joined_request_does_not_count_against_the_limit(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    freepik.latency = 0.8
    await start_bot(rate_limit="1/minute")
    link = image_host.add("lamp.jpg", make_image("JPEG"))
    other = image_host.add("other.jpg", make_image("JPEG", color=(1, 2, 3)))
    post(telegram, text_message(BEN, other))  # Ben's one image this minute
    await freepik.wait_for_calls(1)
    post(telegram, text_message(ANN, link))
    post(telegram, text_message(BEN, link))  # joins Ann's job: free
    await documents_to(telegram, BEN["id"], 2)
    assert len(freepik.calls) == 2


def told_unreadable(telegram: FakeTelegram, chat_id: int) -> bool:
    # A link Freepik cannot read: the explanation for links (see bot.removal.pipeline).
    told = messages.link_not_an_image()
    return any(v.text == told for v in visible_messages(telegram, chat_id))


async def test_a_failed_job_fails_every_joined_request(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    freepik.latency = 0.5
    freepik.fail_next(400)
    await start_bot()
    link = image_host.add("broken.jpg", make_image("JPEG"))
    post(telegram, text_message(ANN, link))
    post(telegram, text_message(BEN, link))
    for chat_id in (ANN["id"], BEN["id"]):
        await telegram.wait_for(functools.partial(told_unreadable, chat_id=chat_id))
    assert len(freepik.calls) == 1
    # Failures are not cached: a later request tries again.
    post(telegram, text_message(ANN, link))
    await documents_to(telegram, ANN["id"], 1)
    assert len(freepik.calls) == 2


async def test_cache_entries_expire(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(cache_ttl=1)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    post(telegram, photo_message(ANN, file_id, unique_id))
    await documents_to(telegram, ANN["id"], 1)
    await asyncio.sleep(1.2)
    post(telegram, photo_message(ANN, file_id, unique_id))
    await documents_to(telegram, ANN["id"], 2)
    assert len(freepik.calls) == 2
