"""My background end to end: the press asks, the next photo is the background, never a removal."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from bot.app.services import ServiceOptions
from bot.i18n import messages
from tests.conftest import StartBot
from tests.fakes import FakeFreepik, FakeTelegram
from tests.fakes.updates import (
    document_message,
    group_chat,
    photo_message,
    sticker_message,
    text_message,
    update,
)
from tests.support import (
    ALICE,
    ANN,
    BOB,
    GROUP,
    STUDIO_USER,
    answered,
    cutout_for,
    data_of,
    finished,
    ok,
    opened,
    press,
    round_subject,
    send_photo,
    settle,
    toast,
)

SKY = (90, 160, 230)


def background_photo(size: tuple[int, int] = (300, 200), colour: tuple[int, ...] = SKY) -> bytes:
    """A plain JPEG photo to put cutouts on."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def send_background(
    telegram: FakeTelegram,
    user: dict[str, Any] = ANN,
    *,
    file: tuple[str, str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Push a photo message of a plain background (a new file unless `file` repeats one)."""
    file_id, unique_id = file or telegram.add_file(background_photo())
    message = photo_message(
        user,
        file_id,
        unique_id,
        width=300,
        height=200,
        **kwargs,
    )
    telegram.push_update(update(message=message))
    return message


def replies_to(telegram: FakeTelegram, method: str, message: dict[str, Any]) -> list[Any]:
    """Answered calls of `method` replying to `message`."""
    return [
        c
        for c in telegram.calls_of(method)
        if c.ok
        and (c.params.get("reply_parameters") or {}).get("message_id") == message["message_id"]
    ]


def near(pixel: Any, colour: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


async def test_the_next_photo_is_the_background_and_no_removal(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    # Kept: the fake numbers pushed messages apart from the bot's, so a later pushed one may
    # take the cutout's id in the fake's memory.
    my_background = data_of(telegram, cutout, "My background")
    query_id = await press(telegram, ANN, cutout, "My background")
    assert toast(telegram, query_id) is None
    await telegram.wait_for(lambda t: messages.background_ask() in t.texts_to(STUDIO_USER))
    [question] = [
        c for c in ok(telegram, "sendMessage") if c.params["text"] == messages.background_ask()
    ]
    assert question.params["reply_parameters"]["message_id"] == cutout["message_id"]

    file = telegram.add_file(background_photo())
    photo = send_background(telegram, file=file)
    await telegram.wait_for(lambda t: bool(replies_to(t, "sendDocument", photo)))
    [result] = replies_to(telegram, "sendDocument", photo)
    upload = result.files["document"]
    assert (upload.filename or "").endswith("-background.jpg")
    composed = opened(upload.data)
    assert composed.format == "JPEG"
    assert composed.size == (300, 200)  # the background's size
    assert near(composed.getpixel((2, 2)), SKY)  # the photo where the cutout is transparent
    # The subject: bottom-centred, scaled to fit 90% of the photo.
    assert not near(composed.getpixel((150, 150)), SKY)
    await settle()
    # No removal: no Freepik call, no status message, nothing else in reply to the photo.
    assert len(freepik.calls) == 1
    assert replies_to(telegram, "sendMessage", photo) == []
    counted = 'nobg_studio_presses_total{action="my_background",outcome="ok"} 1.0'
    assert counted in bot.services.metrics.render().decode()

    # The wait is over: the next photo is a removal again.
    send_photo(telegram)
    await telegram.wait_for(lambda _: len(freepik.calls) == 2)

    # The same background for the same cutout again: a re-send by file_id.
    getfiles = len(telegram.calls_of("getFile"))
    await answered(telegram, telegram.press(ANN, cutout, my_background))
    again = send_background(telegram, file=file)
    await telegram.wait_for(lambda t: bool(replies_to(t, "sendDocument", again)))
    [resent] = replies_to(telegram, "sendDocument", again)
    assert not resent.files
    assert resent.params["document"] == result.result["document"]["file_id"]
    assert len(telegram.calls_of("getFile")) == getfiles
    assert len(freepik.calls) == 2


async def test_texts_other_files_a_second_press_and_cancel_are_explained(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    first = await cutout_for(telegram, send_photo(telegram))
    second = await cutout_for(
        telegram, send_photo(telegram, data=round_subject(color=(200, 0, 0)))
    )
    later = data_of(telegram, second, "My background")  # see the first test
    await press(telegram, ANN, first, "My background")
    await telegram.wait_for(lambda t: messages.background_ask() in t.texts_to(STUDIO_USER))

    hello = text_message(ANN, "hello")
    telegram.push_update(update(message=hello))
    await telegram.wait_for(lambda t: messages.background_waiting() in t.texts_to(STUDIO_USER))
    telegram.push_update(update(message=sticker_message(ANN)))
    await telegram.wait_for(lambda t: messages.background_not_a_photo() in t.texts_to(STUDIO_USER))
    pdf_id, pdf_unique = telegram.add_file(b"%PDF-1.4 not an image")
    pdf = document_message(
        ANN, pdf_id, pdf_unique, file_name="menu.pdf", mime_type="application/pdf"
    )
    telegram.push_update(update(message=pdf))
    await telegram.wait_for(
        lambda t: t.texts_to(STUDIO_USER).count(messages.background_not_a_photo()) == 2
    )
    # An image file that cannot be read: explained, and the wait goes on.
    bad_id, bad_unique = telegram.add_file(b"\x89PNG\r\n\x1a\n broken")
    broken = document_message(ANN, bad_id, bad_unique, file_name="bg.png", mime_type="image/png")
    telegram.push_update(update(message=broken))
    await telegram.wait_for(lambda t: messages.background_unusable() in t.texts_to(STUDIO_USER))
    # One over the pixel limit, named an image but with no MIME type: refused from its header.
    huge = io.BytesIO()
    Image.new("L", (5001, 5000)).save(huge, format="PNG", compress_level=9)
    huge_id, huge_unique = telegram.add_file(huge.getvalue())
    telegram.push_update(
        update(
            message=document_message(ANN, huge_id, huge_unique, file_name="bg.PNG", mime_type="")
        )
    )
    await telegram.wait_for(
        lambda t: t.texts_to(STUDIO_USER).count(messages.background_unusable()) == 2
    )

    # A second press: the next photo goes behind the newer cutout.
    await answered(telegram, telegram.press(ANN, second, later))
    expected = f"{messages.background_ask_again()}\n{messages.background_ask()}"
    await telegram.wait_for(lambda t: expected in t.texts_to(STUDIO_USER))

    telegram.push_update(update(message=text_message(ANN, "/cancel")))
    await telegram.wait_for(lambda t: messages.background_cancelled() in t.texts_to(STUDIO_USER))
    telegram.push_update(update(message=text_message(ANN, "/cancel")))
    await telegram.wait_for(lambda t: messages.nothing_to_cancel() in t.texts_to(STUDIO_USER))
    await settle()
    assert len(freepik.calls) == 2
    assert not [
        c
        for c in ok(telegram, "sendDocument")
        if c.files.get("document")
        and (c.files["document"].filename or "").endswith("-background.jpg")
    ]

    # Cancelled: a photo is a removal again.
    send_photo(telegram)
    await telegram.wait_for(lambda _: len(freepik.calls) == 3)


async def test_the_wait_ends_by_itself_with_one_line(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(options=ServiceOptions(background_wait=0.5, wait_sweep=0.1))
    cutout = await cutout_for(telegram, send_photo(telegram))
    await press(telegram, ANN, cutout, "My background")
    await telegram.wait_for(lambda t: messages.background_timeout() in t.texts_to(STUDIO_USER), 10)
    [line] = [
        c for c in ok(telegram, "sendMessage") if c.params["text"] == messages.background_timeout()
    ]
    assert line.params["reply_parameters"]["message_id"] == cutout["message_id"]
    await settle()
    assert telegram.texts_to(STUDIO_USER).count(messages.background_timeout()) == 1
    counted = 'nobg_studio_presses_total{action="my_background",outcome="timeout"} 1.0'
    assert counted in bot.services.metrics.render().decode()
    send_background(telegram)
    await telegram.wait_for(lambda _: len(freepik.calls) == 2)


async def test_in_a_group_only_the_askers_reply_is_the_background(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    chat = group_chat(GROUP)
    file_id, unique_id = telegram.add_file(round_subject())
    request = photo_message(ALICE, file_id, unique_id, caption="/removebg", chat=chat)
    telegram.push_update(update(message=request))
    cutout = await cutout_for(telegram, request)
    query_id = await press(telegram, BOB, cutout, "My background")
    assert toast(telegram, query_id) == messages.studio_not_yours()
    await press(telegram, ALICE, cutout, "My background")
    await telegram.wait_for(lambda t: messages.background_ask_group() in t.texts_to(GROUP))
    [asked] = [
        c
        for c in ok(telegram, "sendMessage")
        if c.params["text"] == messages.background_ask_group()
    ]
    question = dict(asked.result)

    # Bob's reply and Alice's photo that replies to nobody are not for the wait.
    bobs = send_background(telegram, BOB, chat=chat, reply_to_message=question)
    loose = send_background(telegram, ALICE, chat=chat)
    await settle()
    for message in (bobs, loose):
        assert replies_to(telegram, "sendDocument", message) == []
        assert replies_to(telegram, "sendMessage", message) == []
    hers = send_background(telegram, ALICE, chat=chat, reply_to_message=question)
    await telegram.wait_for(lambda t: bool(replies_to(t, "sendDocument", hers)))
    [result] = replies_to(telegram, "sendDocument", hers)
    assert result.chat_id == GROUP
    assert opened(result.files["document"].data).size == (300, 200)
    assert len(freepik.calls) == 1


async def test_the_wait_survives_a_restart_and_covers_an_album(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, redis_url: str
) -> None:
    bot = await start_bot(album_wait=0.3, storage_url=redis_url)
    for colour in ((200, 0, 0), (0, 150, 0), (0, 0, 200)):
        send_photo(telegram, data=round_subject(color=colour), media_group_id="g-bg")
    [follow_up] = await finished(
        telegram, "sendMessage", where=lambda c: "reply_markup" in c.params
    )
    await press(telegram, ANN, dict(follow_up.result), "My background")
    await telegram.wait_for(lambda t: messages.background_ask() in t.texts_to(STUDIO_USER))
    await bot.shutdown()
    # Another process (a replica, or this one restarted) finds the wait in Redis.
    await start_bot(album_wait=0.3, storage_url=redis_url)
    photo = send_background(telegram)
    await telegram.wait_for(lambda t: bool(replies_to(t, "sendMediaGroup", photo)), 30)
    [album] = replies_to(telegram, "sendMediaGroup", photo)
    assert len(album.result) == 3
    for part in album.files.values():
        composed = opened(part.data)
        assert (composed.format, composed.size) == ("JPEG", (300, 200))
    assert len(freepik.calls) == 3
