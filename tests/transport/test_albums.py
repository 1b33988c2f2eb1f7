"""Albums in a private chat: the real Application against the fake Bot API and Freepik."""

from __future__ import annotations

import time

import pytest

from bot.i18n import messages
from bot.removal.sources import ImageSource, SourceKind
from bot.requests.outcomes import Outcome
from bot.storage.base import StoredCutout
from tests.conftest import BOT_TOKEN, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, TgCall, make_image
from tests.fakes.images import is_transparent_png
from tests.fakes.updates import document_message, private_user
from tests.support import (
    ALBUM_WAIT,
    USER,
    album_done,
    is_studio_buttons,
    ok_calls,
    photos,
    send_album,
    send_all,
    texts,
    visible_messages,
)


def file_ids(call: TgCall) -> list[str]:
    """The document file ids of the messages a sendMediaGroup call created."""
    return [message["document"]["file_id"] for message in call.result]


async def test_album_comes_back_as_one_album_of_transparent_pngs(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot(album_wait=ALBUM_WAIT)
    album = photos(telegram, 3, "g-three")
    lines = await send_album(telegram, info_logs, album)

    groups = ok_calls(telegram, "sendMediaGroup")
    assert len(groups) == 1
    call = groups[0]
    assert [item["type"] for item in call.params["media"]] == ["document"] * 3
    assert call.params["reply_parameters"]["message_id"] == album[0]["message_id"]
    assert len(call.files) == 3
    assert all(is_transparent_png(upload.data) for upload in call.files.values())
    names = {upload.filename for upload in call.files.values()}
    assert names == {f"cutout-{m['photo'][-1]['file_unique_id']}.png" for m in album}
    assert not telegram.calls_of("sendDocument")
    assert not telegram.calls_of("sendPhoto")
    assert len(freepik.calls) == 3

    # It showed it was working, then cleaned up: no text is left, only the album.
    status, buttons = telegram.calls_of("sendMessage")
    assert is_studio_buttons(buttons)
    assert status.params["text"] == messages.album_working(3)
    assert status.params["reply_parameters"]["message_id"] == album[0]["message_id"]
    assert telegram.calls_of("sendChatAction")[0].params["action"] == "upload_document"
    assert not texts(telegram)
    [deleted] = telegram.calls_of("deleteMessage")
    assert int(deleted.params["message_id"]) == status.result["message_id"]

    assert len(lines) == 1
    assert f"album user={USER} chat={USER} items=3 ok=3 failed=0 limited=0" in lines[0]
    ours = [r.getMessage() for r in info_logs.records if r.name.startswith("bot")]
    assert not any(BOT_TOKEN in line for line in ours)


async def test_rate_limit_names_the_images_over_it_in_one_reply(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot(album_wait=ALBUM_WAIT, rate_limit="2/minute")
    album = photos(telegram, 3, "g-limited")
    lines = await send_album(telegram, info_logs, album)

    groups = ok_calls(telegram, "sendMediaGroup")
    assert len(groups) == 1
    assert len(groups[0].params["media"]) == 2
    uploaded = {upload.filename for upload in groups[0].files.values()}
    assert uploaded == {f"cutout-{m['photo'][-1]['file_unique_id']}.png" for m in album[:2]}
    assert len(freepik.calls) == 2

    [reply] = texts(telegram)
    assert "Image 3:" in reply
    assert "Image 1" not in reply
    assert "Image 2" not in reply
    assert "limit" in reply
    assert "second" in reply
    assert "items=3 ok=2 failed=0 limited=1" in lines[0]


async def test_twelve_images_come_back_as_albums_of_ten_and_two(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot(album_wait=ALBUM_WAIT, max_concurrent_jobs=12)
    album = photos(telegram, 12, "g-twelve")
    await send_album(telegram, info_logs, album)

    groups = ok_calls(telegram, "sendMediaGroup")
    assert [len(call.params["media"]) for call in groups] == [10, 2]
    assert all(
        call.params["reply_parameters"]["message_id"] == album[0]["message_id"] for call in groups
    )
    # The cutouts come back in the order the images were sent.
    expected = [f"cutout-{m['photo'][-1]['file_unique_id']}.png" for m in album]
    sent = [
        call.files[item["media"].removeprefix("attach://")].filename
        for call in groups
        for item in call.params["media"]
    ]
    assert sent == expected
    assert not telegram.calls_of("sendDocument")
    assert len(freepik.calls) == 12
    assert not texts(telegram)


async def test_pdf_in_a_document_album_is_named_and_the_rest_come_back(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot(album_wait=ALBUM_WAIT)
    user = private_user(USER)
    group = "g-docs"
    album = [
        document_message(
            user,
            *telegram.add_file(make_image("PNG", color=(20, 200, 20))),
            file_name="first.png",
            media_group_id=group,
        ),
        document_message(
            user,
            *telegram.add_file(b"%PDF-1.4 not an image"),
            file_name="notes.pdf",
            mime_type="application/pdf",
            media_group_id=group,
        ),
        document_message(
            user,
            *telegram.add_file(make_image("JPEG", color=(20, 20, 200))),
            file_name="third.jpg",
            mime_type="image/jpeg",
            media_group_id=group,
        ),
    ]
    lines = await send_album(telegram, info_logs, album)

    [call] = ok_calls(telegram, "sendMediaGroup")
    assert sorted(upload.filename or "" for upload in call.files.values()) == [
        "first-nobg.png",
        "third-nobg.png",
    ]
    assert len(freepik.calls) == 2
    [reply] = texts(telegram)
    assert "Image 2: it isn't an image" in reply
    assert "Image 1" not in reply
    assert "Image 3" not in reply
    assert "Cut out 2 of 3 images" in reply
    assert "items=3 ok=2 failed=1 limited=0" in lines[0]


async def test_the_same_album_twice_is_resent_by_file_id(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot(album_wait=ALBUM_WAIT)
    first = photos(telegram, 3, "g-first")
    await send_album(telegram, info_logs, first)
    [first_call] = ok_calls(telegram, "sendMediaGroup")
    assert len(freepik.calls) == 3

    files = [(m["photo"][-1]["file_id"], m["photo"][-1]["file_unique_id"]) for m in first]
    again = photos(telegram, 3, "g-again", files=files)
    await send_album(telegram, info_logs, again, count=2)

    assert len(freepik.calls) == 3
    second_call = ok_calls(telegram, "sendMediaGroup")[1]
    assert second_call.files == {}
    assert [item["media"] for item in second_call.params["media"]] == file_ids(first_call)
    assert second_call.params["reply_parameters"]["message_id"] == again[0]["message_id"]
    assert not texts(telegram)


async def test_freepik_fault_on_one_image_is_named_with_its_reason(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    freepik.fail_next(400)
    await start_bot(album_wait=ALBUM_WAIT)
    album = photos(telegram, 3, "g-fault")
    lines = await send_album(telegram, info_logs, album)

    # Which image hit the fault depends on which POST arrived first: find it.
    [rejected] = [call for call in freepik.calls if call.status == 400]
    paths = [telegram.stored_file(m["photo"][-1]["file_id"]) for m in album]
    [number] = [
        n
        for n, stored in enumerate(paths, start=1)
        if stored and rejected.image_url.endswith(stored.file_path)
    ]

    [call] = ok_calls(telegram, "sendMediaGroup")
    assert len(call.params["media"]) == 2
    [reply] = texts(telegram)
    assert f"Image {number}: I couldn't read it" in reply
    assert all(f"Image {n}" not in reply for n in (1, 2, 3) if n != number)
    assert "items=3 ok=2 failed=1 limited=0" in lines[0]


async def test_one_usable_image_is_sent_as_a_single_document(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot(album_wait=ALBUM_WAIT)
    user = private_user(USER)
    group = "g-one"
    album = [
        document_message(
            user,
            *telegram.add_file(b"PK\x03\x04"),
            file_name="archive.zip",
            mime_type="application/zip",
            media_group_id=group,
        ),
        document_message(
            user, *telegram.add_file(make_image("PNG")), file_name="cat.png", media_group_id=group
        ),
    ]
    await send_album(telegram, info_logs, album)

    assert not telegram.calls_of("sendMediaGroup")
    [document] = ok_calls(telegram, "sendDocument")
    assert document.files["document"].filename == "cat-nobg.png"
    assert is_transparent_png(document.files["document"].data)
    assert document.params["reply_parameters"]["message_id"] == album[0]["message_id"]
    [reply] = texts(telegram)
    assert "Image 1: it isn't an image" in reply
    # The cutout, the summary and the studio buttons for the one cutout.
    assert len(visible_messages(telegram, USER)) == 3


async def test_album_of_nothing_usable_gets_one_reply_and_no_freepik_call(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot(album_wait=ALBUM_WAIT)
    user = private_user(USER)
    album = [
        document_message(
            user,
            *telegram.add_file(b"%PDF-1.4"),
            file_name=f"doc{n}.pdf",
            mime_type="application/pdf",
            media_group_id="g-none",
        )
        for n in range(2)
    ]
    lines = await send_album(telegram, info_logs, album)

    assert not freepik.calls
    [only] = visible_messages(telegram, USER)
    assert only.method == "sendMessage"
    assert only.reply_to == album[0]["message_id"]
    assert "I couldn't cut out any of these 2 images" in (only.text or "")
    assert "Images 1 and 2: it isn't an image" in (only.text or "")
    assert "items=2 ok=0 failed=2 limited=0" in lines[0]


async def test_failed_album_upload_turns_the_status_into_the_explanation(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    telegram.fail_next("sendMediaGroup", error_code=400, description="Bad Request: oops")
    await start_bot(album_wait=ALBUM_WAIT)
    lines = await send_album(telegram, info_logs, photos(telegram, 2, "g-unsent"))

    assert not ok_calls(telegram, "sendMediaGroup")
    [only] = visible_messages(telegram, USER)
    assert only.method == "sendMessage"
    assert "Images 1 and 2: I made the cutout but couldn't send it" in (only.text or "")
    assert "items=2 ok=0 failed=2" in lines[0]


async def test_user_who_blocked_the_bot_is_logged_and_skipped(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot(album_wait=ALBUM_WAIT)
    telegram.block_chat(USER)
    lines = await send_album(telegram, info_logs, photos(telegram, 2, "g-blocked"))

    assert "items=2 ok=0 failed=2" in lines[0]
    assert any("Cannot write to chat" in r.getMessage() for r in info_logs.records)
    assert not ok_calls(telegram, "sendMessage")
    assert not ok_calls(telegram, "sendMediaGroup")
    assert not bot.task.done()


async def test_album_caught_by_shutdown_still_gets_a_reply(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    # Memory storage: nothing outlives the process, so the album is answered before the exit
    # (the durable default finishes it within the grace instead).
    bot = await start_bot(album_wait=1.0, storage_url="memory://")
    last = send_all(telegram, photos(telegram, 2, "g-shutdown"))
    # Stop while the album is still being collected: the bot must answer before it exits.
    # The next poll confirming the updates means they were handed to the handlers.
    await telegram.wait_for_call(
        "getUpdates", where=lambda c: int(c.params.get("offset") or 0) > last
    )
    await bot.shutdown()
    lines = await album_done(info_logs)

    assert not freepik.calls
    [reply] = texts(telegram)
    assert "Images 1 and 2: the bot restarted" in reply
    assert "items=2 ok=0 failed=2" in lines[0]


async def test_rejected_cached_file_id_in_an_album_is_dropped_and_remade_once(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot(album_wait=ALBUM_WAIT)
    album = photos(telegram, 2, "g-stale")
    sources = [
        ImageSource.telegram_file(
            SourceKind.PHOTO, m["photo"][-1]["file_id"], m["photo"][-1]["file_unique_id"]
        )
        for m in album
    ]
    # Image 1's cached cutout is another bot's file id; image 2's is one Telegram holds.
    stale = StoredCutout("BQACAgIAAxkBAAIstale-album-item", "cutout.png", time.time())
    good_id, _ = telegram.add_file(make_image("PNG", size=(20, 20)))
    good = StoredCutout(good_id, "cutout-2.png", time.time())
    await bot.services.store.put_cutout(sources[0].key, stale, 3600)
    await bot.services.store.put_cutout(sources[1].key, good, 3600)

    lines = await send_album(telegram, info_logs, album)

    rejected, sent = telegram.calls_of("sendMediaGroup")
    assert not rejected.ok
    assert "wrong file identifier" in rejected.response["description"]
    assert [item["media"] for item in rejected.params["media"]] == [stale.file_id, good_id]
    assert sent.ok, telegram.summary()
    # Only the rejected image was made again (one Freepik call); the good one kept its id.
    assert len(freepik.calls) == 1
    assert sent.params["media"][1]["media"] == good_id
    assert len(sent.files) == 1
    assert not texts(telegram)
    assert "items=2 ok=2 failed=0" in lines[0]
    fresh = await bot.services.store.get_cutout(sources[0].key)
    assert fresh is not None
    assert fresh.file_id == file_ids(sent)[0]
    assert await bot.services.store.get_cutout(sources[1].key) == good


async def test_album_refused_without_a_culprit_remakes_its_cached_images_once(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot(album_wait=ALBUM_WAIT)
    album = photos(telegram, 2, "g-unnamed")
    for message in album:
        size = message["photo"][-1]
        source = ImageSource.telegram_file(
            SourceKind.PHOTO, size["file_id"], size["file_unique_id"]
        )
        held, _ = telegram.add_file(make_image("PNG", size=(20, 20)))
        await bot.services.store.put_cutout(
            source.key, StoredCutout(held, "cutout.png", time.time()), 3600
        )
    # Refused twice over: once with the cached file ids, once with the fresh uploads.
    telegram.fail_next(
        "sendMediaGroup",
        error_code=400,
        description="Bad Request: wrong file identifier/HTTP URL specified",
        times=2,
    )
    lines = await send_album(telegram, info_logs, album)

    first, second = telegram.calls_of("sendMediaGroup")
    assert not first.ok
    assert not second.ok
    assert len(second.files) == 2  # getFile confirmed no culprit: both made again
    assert len(freepik.calls) == 2  # once each, not a third time
    [summary] = texts(telegram)
    assert "Images 1 and 2" in summary
    assert messages.album_outcome_reason(Outcome.UNDELIVERABLE) in summary
    assert "items=2 ok=0 failed=2" in lines[0]
