"""The cutout studio end to end: the real bot, the fake Bot API and Freepik, real presses."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from bot.i18n import messages
from bot.imaging import edits as imaging
from bot.studio.callback import new_token
from bot.studio.packs import pack_name
from bot.transport.keyboards import main_keyboard
from tests.conftest import RunningBot, StartBot
from tests.fakes import FakeFreepik, FakeTelegram
from tests.fakes.tg_methods import BotApi
from tests.fakes.updates import (
    group_chat,
    inline_query,
    photo_message,
    private_user,
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
    buttons,
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
    visible_messages,
)

BOT = "nobg_test_bot"
# The buttons under a cutout: Sticker, Add to my pack, Background, My background, Shop photo,
# Crop, More.
MAIN_BUTTONS = 7


async def switch(
    telegram: FakeTelegram, user: dict[str, Any], message: dict[str, Any], label: str, shows: str
) -> None:
    """Press a keyboard button and wait until the message shows a button labelled `shows`."""
    await press(telegram, user, message, label)

    def shown(t: FakeTelegram) -> bool:
        current = t.state.find_message(message["chat"]["id"], message["message_id"]) or message
        return any(shows in text for text in buttons(current))

    await telegram.wait_for(shown, timeout=15)


def stickers_in(telegram: FakeTelegram, name: str) -> int:
    """How many stickers a pack holds."""
    found = telegram.sticker_set(name)
    assert found is not None
    return len(found["stickers"])


def assert_sticker_bytes(data: bytes) -> None:
    """Telegram's static sticker rules, checked on the uploaded bytes."""
    sticker = opened(data)
    assert sticker.format == "WEBP"
    assert max(sticker.size) == 512
    assert min(sticker.size) <= 512
    assert len(data) <= 512 * 1024
    assert sticker.mode == "RGBA"
    low, _high = sticker.getchannel("A").getextrema()
    assert low == 0


# --- the keyboard -----------------------------------------------------------------------------


async def test_every_cutout_carries_the_studio_keyboard(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    labels = buttons(cutout)
    for word in ("Sticker", "Add to my pack", "My background", "Shop photo", "Crop", "More"):
        assert sum(word in label for label in labels) == 1, labels
    assert sum("Background" in label for label in labels) == 1, labels
    assert all(1 <= len(data.encode()) <= 64 for data in labels.values())
    assert len(set(labels.values())) == MAIN_BUTTONS
    assert len(cutout["reply_markup"]["inline_keyboard"]) <= 4

    # More: the second keyboard, and Back to the first.
    await press(telegram, ANN, cutout, "More")
    [edit] = await finished(telegram, "editMessageReplyMarkup")
    more = buttons(edit.result)
    for word in ("Shadow", "Outline", "Outline to my pack", "Back"):
        assert any(word in label for label in more), more
    assert len(edit.result["reply_markup"]["inline_keyboard"]) <= 4
    await press(telegram, ANN, cutout, "Back")
    await finished(telegram, "editMessageReplyMarkup", count=2)
    current = telegram.state.find_message(STUDIO_USER, cutout["message_id"])
    assert current is not None
    assert buttons(current) == labels


# --- private chat: each button ----------------------------------------------------------------


async def test_sticker_then_the_same_press_again_is_a_resend(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    downloads = len(telegram.file_downloads)
    query_id = await press(telegram, ANN, cutout, "Sticker")
    assert toast(telegram, query_id) == messages.studio_working()
    [sticker] = await finished(telegram, "sendSticker", timeout=15)
    assert sticker.ok
    assert sticker.params["reply_parameters"]["message_id"] == cutout["message_id"]
    assert_sticker_bytes(sticker.files["sticker"].data)
    # Answered before the work: the toast came first.
    calls = telegram.calls
    assert calls.index(next(c for c in calls if c.method == "answerCallbackQuery")) < calls.index(
        sticker
    )
    assert len(telegram.file_downloads) == downloads + 1
    getfiles = len(telegram.calls_of("getFile"))

    await press(telegram, ANN, cutout, "Sticker")
    await finished(telegram, "sendSticker", count=2, timeout=15)
    second = telegram.calls_of("sendSticker")[1]
    assert second.ok
    assert not second.files, "the second sticker is re-sent by file_id"
    assert second.params["sticker"] == sticker.result["sticker"]["file_id"]
    assert len(telegram.file_downloads) == downloads + 1
    assert len(telegram.calls_of("getFile")) == getfiles
    await settle()
    assert len(freepik.calls) == 1
    assert not telegram.calls_of("sendMessage")[1:], "nothing but the stickers was sent"
    counted = 'nobg_studio_presses_total{action="sticker",outcome="ok"} 2.0'
    await telegram.wait_for(lambda _: counted in bot.services.metrics.render().decode())


async def test_crop_is_a_tight_png_document(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    original = telegram.file_bytes(cutout["document"]["file_id"])
    await press(telegram, ANN, cutout, "Crop")
    [document] = (await finished(telegram, "sendDocument", count=2, timeout=15))[1:]
    assert document.ok
    upload = document.files["document"]
    assert (upload.filename or "").endswith("-crop.png")
    cropped = opened(upload.data)
    rgba = imaging.decode_rgba(original)
    box = imaging.subject_box(rgba)
    assert box is not None
    left, top, right, bottom = imaging.with_margin(box, imaging.size_of(rgba))
    assert cropped.size == (right - left, bottom - top)
    assert cropped.size[0] < rgba.width
    assert cropped.size[1] < rgba.height
    assert cropped.mode == "RGBA"
    assert document.params["reply_parameters"]["message_id"] == cutout["message_id"]
    assert len(freepik.calls) == 1


async def test_shop_photo_is_a_square_white_jpeg_document_made_once(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    query_id = await press(telegram, ANN, cutout, "Shop photo")
    assert toast(telegram, query_id) == messages.studio_working()
    [document] = (await finished(telegram, "sendDocument", count=2))[1:]
    assert document.ok
    assert document.params["reply_parameters"]["message_id"] == cutout["message_id"]
    # A document, so Telegram keeps the bytes: no photo recompression.
    assert document.result.get("document")
    assert not document.result.get("photo")
    upload = document.files["document"]
    assert (upload.filename or "").endswith("-shop.jpg")
    shop = opened(upload.data)
    assert shop.format == "JPEG"
    assert shop.size == (2000, 2000)
    assert shop.getpixel((0, 0)) == (255, 255, 255)
    assert shop.getpixel((1999, 1999)) == (255, 255, 255)
    # The disc fills 85% of the side: its middle row is the subject's colour, not white.
    assert shop.getpixel((1000, 1000)) != (255, 255, 255)

    getfiles = len(telegram.calls_of("getFile"))
    await press(telegram, ANN, cutout, "Shop photo")
    [again] = (await finished(telegram, "sendDocument", count=3))[2:]
    assert again.ok
    assert not again.files, "the second shop photo is re-sent by file_id"
    assert again.params["document"] == document.result["document"]["file_id"]
    assert len(telegram.calls_of("getFile")) == getfiles
    assert len(freepik.calls) == 1


async def test_more_gives_a_shadow_png_and_an_outlined_sticker(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    await press(telegram, ANN, cutout, "More")
    await finished(telegram, "editMessageReplyMarkup")

    await press(telegram, ANN, cutout, "Shadow")
    [document] = (await finished(telegram, "sendDocument", count=2))[1:]
    assert document.ok
    upload = document.files["document"]
    assert (upload.filename or "").endswith("-shadow.png")
    shadowed = opened(upload.data)
    assert shadowed.format == "PNG"
    assert shadowed.mode == "RGBA"
    alpha = shadowed.getchannel("A")
    assert alpha.getextrema()[0] == 0  # still transparent far from the subject
    # Below the subject, where the cutout was transparent: the shadow, partly opaque.
    width, height = shadowed.size
    below = [alpha.getpixel((width // 2, y)) for y in range(height - 1, height // 2, -1)]
    assert any(0 < a < 255 for a in below)  # type: ignore[operator]

    await press(telegram, ANN, cutout, "⭕ Outline")
    [sticker] = await finished(telegram, "sendSticker")
    assert sticker.ok
    data = sticker.files["sticker"].data
    assert_sticker_bytes(data)
    outlined = opened(data)
    # The ring: opaque white pixels where the plain sticker has none.
    rgba = outlined.convert("RGBA")
    assert any(
        rgba.getpixel((x, y)) == (255, 255, 255, 255)
        for x in range(0, rgba.width, 2)
        for y in range(0, rgba.height, 2)
    )
    # The More keyboard stays up for the next press; a double tap on More is no reply.
    current = telegram.state.find_message(STUDIO_USER, cutout["message_id"])
    assert current is not None
    assert any("Shadow" in label for label in buttons(current))
    await press(telegram, ANN, cutout, "Back")
    await finished(telegram, "editMessageReplyMarkup", count=2)
    more = data_of(telegram, cutout, "More")
    for query_id in [telegram.press(ANN, cutout, more) for _ in range(2)]:
        await answered(telegram, query_id)
    await finished(telegram, "editMessageReplyMarkup", count=4)
    await press(telegram, ANN, cutout, "Shadow")
    [_, _, again] = await finished(telegram, "sendDocument", count=3)
    assert not again.files, "the second shadow is re-sent by file_id"
    await settle()
    assert len(ok(telegram, "sendDocument")) == 3
    assert len(ok(telegram, "sendMessage")) == 1  # the status, nothing else
    assert len(freepik.calls) == 1
    for name in ("shadow", "outline"):
        counted = f'nobg_studio_presses_total{{action="{name}",outcome="ok"}}'
        assert counted in bot.services.metrics.render().decode()


async def test_the_outlined_sticker_goes_into_the_same_pack(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    telegram.start_user(STUDIO_USER)
    name = pack_name(STUDIO_USER, BOT)
    link = f"https://t.me/addstickers/{name}"
    cutout = await cutout_for(telegram, send_photo(telegram))
    await switch(telegram, ANN, cutout, "More", "Shadow")
    await press(telegram, ANN, cutout, "⭕ Outline")
    [outline] = await finished(telegram, "sendSticker")
    await press(telegram, ANN, cutout, "Outline to my pack")
    [created] = await finished(telegram, "createNewStickerSet")
    assert created.ok
    assert not created.files, "the outlined sticker went in by file_id"
    await telegram.wait_for(lambda t: messages.pack_created(link) in t.texts_to(STUDIO_USER))
    # The plain sticker is another sticker of the same pack.
    await switch(telegram, ANN, cutout, "Back", "Crop")
    await press(telegram, ANN, cutout, "Add to my pack")
    await telegram.wait_for(lambda t: messages.pack_added(link) in t.texts_to(STUDIO_USER))
    assert stickers_in(telegram, name) == 2
    # Each is in once: the outline again only links the pack.
    await switch(telegram, ANN, cutout, "More", "Shadow")
    await press(telegram, ANN, cutout, "Outline to my pack")
    await telegram.wait_for(
        lambda t: t.texts_to(STUDIO_USER).count(messages.pack_added(link)) == 2
    )
    assert stickers_in(telegram, name) == 2
    assert len(telegram.calls_of("createNewStickerSet")) == 1
    assert outline.ok


async def test_background_palette_colour_and_back(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    query_id = await press(telegram, ANN, cutout, "Background")
    assert toast(telegram, query_id) is None
    [edit] = await finished(telegram, "editMessageReplyMarkup", timeout=15)
    assert edit.ok
    palette = buttons(edit.result)
    assert len(palette) >= 9 + 1
    for colour in ("White", "Black", "Light grey"):
        assert any(colour in label for label in palette)
    assert any("Back" in label for label in palette)

    await press(telegram, ANN, cutout, "White")
    [document] = (await finished(telegram, "sendDocument", count=2, timeout=15))[1:]
    assert document.ok
    upload = document.files["document"]
    assert (upload.filename or "").endswith("-white.jpg")
    flat = opened(upload.data)
    assert flat.format == "JPEG"
    assert flat.size == (120, 90)
    assert all(v >= 245 for v in flat.getpixel((1, 1)))  # type: ignore[union-attr]
    assert document.params["reply_parameters"]["message_id"] == cutout["message_id"]
    # The colour is chosen: the cutout shows its main buttons again, not the palette.
    [_, back_to_main] = await finished(telegram, "editMessageReplyMarkup", count=2, timeout=15)
    assert back_to_main.ok
    current = telegram.state.find_message(STUDIO_USER, cutout["message_id"])
    assert current is not None
    assert buttons(current) == buttons(cutout)

    await press(telegram, ANN, cutout, "Background")
    await finished(telegram, "editMessageReplyMarkup", count=3, timeout=15)
    await press(telegram, ANN, cutout, "Back")
    await finished(telegram, "editMessageReplyMarkup", count=4, timeout=15)
    current = telegram.state.find_message(STUDIO_USER, cutout["message_id"])
    assert current is not None
    assert buttons(current) == buttons(cutout)
    # A double tap on Back: "message is not modified" is no crash and no reply.
    query_id = await press(telegram, ANN, cutout, "Background")
    await finished(telegram, "editMessageReplyMarkup", count=5, timeout=15)
    again = telegram.press(ANN, cutout, data_of(telegram, cutout, "Back"))
    twice = telegram.press(ANN, cutout, data_of(telegram, cutout, "Back"))
    await answered(telegram, again)
    await answered(telegram, twice)
    await settle()
    assert len(ok(telegram, "sendDocument")) == 2
    assert len(freepik.calls) == 1


async def test_pack_created_then_added_then_already_there(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    name = pack_name(STUDIO_USER, BOT)
    link = f"https://t.me/addstickers/{name}"
    first = await cutout_for(telegram, send_photo(telegram))
    await press(telegram, ANN, first, "Add to my pack")
    [created] = await finished(telegram, "createNewStickerSet", timeout=15)
    assert created.ok
    await telegram.wait_for(lambda t: any(link in x for x in t.texts_to(STUDIO_USER)), timeout=15)
    assert messages.pack_created(link) in telegram.texts_to(STUDIO_USER)
    sticker_set = telegram.sticker_set(name)
    assert sticker_set is not None
    assert len(sticker_set["stickers"]) == 1
    for upload in created.files.values():
        assert_sticker_bytes(upload.data)

    second = await cutout_for(
        telegram, send_photo(telegram, data=round_subject(color=(200, 0, 0)))
    )
    await press(telegram, ANN, second, "Add to my pack")
    await telegram.wait_for(
        lambda t: messages.pack_added(link) in t.texts_to(STUDIO_USER), timeout=15
    )
    assert len(telegram.sticker_set(name)["stickers"]) == 2  # type: ignore[index]
    assert len(telegram.calls_of("createNewStickerSet")) == 1

    getfiles = len(telegram.calls_of("getFile"))
    await press(telegram, ANN, first, "Add to my pack")
    await telegram.wait_for(
        lambda t: t.texts_to(STUDIO_USER).count(messages.pack_added(link)) == 2, timeout=15
    )
    assert len(telegram.sticker_set(name)["stickers"]) == 2  # type: ignore[index]
    assert len(telegram.calls_of("getFile")) == getfiles
    assert len(freepik.calls) == 2


def count_conversions(bot: RunningBot, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the image functions the bot's CPU pool runs from now on, in order."""
    conversions: list[str] = []
    cpu = bot.services.cpu
    run = cpu.run

    async def counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        conversions.append(fn.__name__)
        return await run(fn, *args, **kwargs)

    monkeypatch.setattr(cpu, "run", counted)
    return conversions


async def test_add_to_my_pack_after_sticker_reuses_the_sticker_made(
    start_bot: StartBot, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_bot()
    conversions = count_conversions(bot, monkeypatch)
    cutout = await cutout_for(telegram, send_photo(telegram))
    downloads = len(telegram.file_downloads)
    await press(telegram, ANN, cutout, "Sticker")
    [sticker] = await finished(telegram, "sendSticker", timeout=15)
    assert conversions == ["sticker"]
    await press(telegram, ANN, cutout, "Add to my pack")
    [created] = await finished(telegram, "createNewStickerSet", timeout=15)
    assert created.ok
    # The sticker already sent goes into the pack by its file id: no second conversion, no
    # second download of the cutout, no upload.
    assert conversions == ["sticker"]
    assert len(telegram.file_downloads) == downloads + 1
    assert not created.files
    [pack_sticker] = created.params["stickers"]
    assert pack_sticker["sticker"] == sticker.result["sticker"]["file_id"]
    assert stickers_in(telegram, pack_name(STUDIO_USER, BOT)) == 1


async def test_add_to_my_pack_pressed_while_the_sticker_is_made_waits_for_it(
    start_bot: StartBot, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_bot()
    conversions = count_conversions(bot, monkeypatch)
    cutout = await cutout_for(telegram, send_photo(telegram))
    getfiles = len(telegram.calls_of("getFile"))
    telegram.latency["getFile"] = 0.5  # the Sticker press is at work for half a second
    telegram.press(ANN, cutout, data_of(telegram, cutout, "Sticker"))
    await telegram.wait_for(lambda t: len(t.calls_of("getFile")) > getfiles, timeout=15)
    await press(telegram, ANN, cutout, "Add to my pack")
    [sticker] = await finished(telegram, "sendSticker", timeout=15)
    [created] = await finished(telegram, "createNewStickerSet", timeout=15)
    assert created.ok
    await settle()
    # The pack waited for the sticker being made and took it by file id: one conversion.
    assert conversions == ["sticker"]
    assert len(telegram.calls_of("getFile")) == getfiles + 1
    assert not created.files
    [pack_sticker] = created.params["stickers"]
    assert pack_sticker["sticker"] == sticker.result["sticker"]["file_id"]


async def test_a_full_pack_gets_a_plain_explanation(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    name = pack_name(STUDIO_USER, BOT)
    telegram.make_sticker_set(STUDIO_USER, name, 120)
    cutout = await cutout_for(telegram, send_photo(telegram))
    await press(telegram, ANN, cutout, "Add to my pack")
    await telegram.wait_for(lambda t: messages.pack_full() in t.texts_to(STUDIO_USER), timeout=15)
    [refused] = telegram.calls_of("addStickerToSet")
    assert "STICKERS_TOO_MUCH" in str(refused.response)
    assert len(telegram.sticker_set(name)["stickers"]) == 120  # type: ignore[index]


async def test_a_cutout_over_20_mb_is_explained(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.result_padding = 21 * 1024 * 1024
    await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    assert cutout["document"]["file_size"] > 20 * 1024 * 1024
    downloads = len(telegram.file_downloads)
    await press(telegram, ANN, cutout, "Sticker")
    await telegram.wait_for(
        lambda t: messages.studio_too_large() in t.texts_to(STUDIO_USER), timeout=15
    )
    assert not telegram.calls_of("sendSticker")
    assert len(telegram.file_downloads) == downloads


async def test_a_press_after_the_answer_deadline_still_gets_its_result(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    telegram.callback_query_ttl = 0.0
    telegram.press(ANN, cutout, data_of(telegram, cutout, "Crop"))
    await finished(telegram, "sendDocument", count=2, timeout=15)
    assert not ok(telegram, "answerCallbackQuery")


@pytest.mark.parametrize(
    "data",
    ["garbage", "s9.st.AAAAAAAAAAAA", "s1.zz.AAAAAAAAAAAA", "s1.st.short", "s1.st.AAAA.AAAAAAAA"],
)
async def test_forged_callback_data_gets_a_toast(
    start_bot: StartBot, telegram: FakeTelegram, data: str
) -> None:
    bot = await start_bot()
    cutout = await cutout_for(telegram, send_photo(telegram))
    query_id = telegram.press(ANN, cutout, data)
    answer = await answered(telegram, query_id)
    assert answer["text"] == messages.studio_invalid()
    counted = 'nobg_studio_presses_total{action="-",outcome="invalid"} 1.0'
    await telegram.wait_for(lambda _: counted in bot.services.metrics.render().decode())
    await settle()
    assert len(visible_messages(telegram, STUDIO_USER)) == 1
    assert not telegram.calls_of("getFile")[1:]


# --- restarts ---------------------------------------------------------------------------------


async def test_buttons_work_after_a_restart_without_shared_storage(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(storage_url="memory://")
    cutout = await cutout_for(telegram, send_photo(telegram))
    await bot.shutdown()
    await start_bot(storage_url="memory://")  # a new process: the memory store is empty
    await press(telegram, ANN, cutout, "Crop")
    [_first, crop] = await finished(telegram, "sendDocument", count=2, timeout=15)
    assert crop.ok
    assert (crop.files["document"].filename or "").endswith("-crop.png")
    assert len(freepik.calls) == 1


# --- groups -----------------------------------------------------------------------------------


async def test_group_only_the_asker_may_press_and_replies_go_to_the_group(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot()
    file_id, unique_id = telegram.add_file(round_subject())
    photo = photo_message(ALICE, file_id, unique_id, chat=group_chat(GROUP))
    telegram.push_update(update(message=photo))
    command = text_message(ALICE, "/removebg", chat=group_chat(GROUP), reply_to_message=photo)
    telegram.push_update(update(message=command))
    cutout = await cutout_for(telegram, command)
    assert len(buttons(cutout)) == MAIN_BUTTONS

    query_id = await press(telegram, BOB, cutout, "Crop")
    assert toast(telegram, query_id) == messages.studio_not_yours()
    for label in ("Shop photo", "More"):
        query_id = await press(telegram, BOB, cutout, label)
        assert toast(telegram, query_id) == messages.studio_not_yours()
    await settle()
    assert len(ok(telegram, "sendDocument")) == 1
    assert not telegram.calls_of("editMessageReplyMarkup")
    # Someone else's press is routine: logged for the record, no warning for the operator.
    lines = [r for r in info_logs.records if "outcome=not_owner" in r.getMessage()]
    assert len(lines) == 3
    assert {line.levelno for line in lines} == {logging.INFO}

    await press(telegram, ALICE, cutout, "Crop")
    [_cutout, crop] = await finished(telegram, "sendDocument", count=2, timeout=15)
    assert crop.ok
    assert crop.chat_id == GROUP
    assert crop.params["reply_parameters"]["message_id"] == cutout["message_id"]

    # Alice never opened a private chat with the bot: Telegram refuses her a pack.
    await press(telegram, ALICE, cutout, "Add to my pack")
    await telegram.wait_for(
        lambda t: messages.pack_needs_start(BOT) in t.texts_to(GROUP), timeout=15
    )
    assert telegram.sticker_set(pack_name(ALICE["id"], BOT)) is None
    assert len(freepik.calls) == 1


async def test_group_buttons_work_after_a_restart_from_the_message_alone(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    bot = await start_bot()
    file_id, unique_id = telegram.add_file(round_subject())
    photo = photo_message(ALICE, file_id, unique_id, chat=group_chat(GROUP))
    telegram.push_update(update(message=photo))
    command = text_message(ALICE, "/removebg", chat=group_chat(GROUP), reply_to_message=photo)
    telegram.push_update(update(message=command))
    cutout = await cutout_for(telegram, command)
    await bot.shutdown()
    await start_bot()
    query_id = await press(telegram, BOB, cutout, "Sticker")
    assert toast(telegram, query_id) == messages.studio_not_yours()
    await press(telegram, ALICE, cutout, "Sticker")
    [sticker] = await finished(telegram, "sendSticker", timeout=15)
    assert sticker.ok
    assert sticker.chat_id == GROUP


# --- albums -----------------------------------------------------------------------------------


async def test_album_follow_up_acts_on_every_cutout(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, redis_url: str
) -> None:
    bot = await start_bot(album_wait=0.3, storage_url=redis_url)
    telegram.start_user(STUDIO_USER)
    colours = [(200, 0, 0), (0, 150, 0), (0, 0, 200)]
    album = [
        send_photo(telegram, data=round_subject(color=c), media_group_id="g-studio")
        for c in colours
    ]
    [follow_up] = await finished(
        telegram, "sendMessage", where=lambda c: "reply_markup" in c.params, timeout=15
    )
    assert follow_up.ok
    message = dict(follow_up.result)
    assert message["text"] == messages.studio_album()
    assert follow_up.params["reply_parameters"]["message_id"] == album[0]["message_id"]
    assert len(buttons(message)) == MAIN_BUTTONS

    await press(telegram, ANN, message, "Sticker")
    stickers = await finished(telegram, "sendSticker", count=3, timeout=20)
    for call in stickers:
        assert call.ok
        assert_sticker_bytes(call.files["sticker"].data)

    # The keyboard's record is in Redis: a restarted bot still knows the album.
    await bot.shutdown()
    await start_bot(album_wait=0.3, storage_url=redis_url)
    await press(telegram, ANN, message, "Background")
    await finished(telegram, "editMessageReplyMarkup", timeout=15)
    await press(telegram, ANN, message, "Black")
    [group] = (await finished(telegram, "sendMediaGroup", count=2, timeout=20))[1:]
    assert group.ok
    assert len(group.result) == 3
    for part in group.files.values():
        flat = opened(part.data)
        assert flat.format == "JPEG"
        assert flat.size == (120, 90)
        assert max(flat.getpixel((1, 1))) <= 8  # type: ignore[arg-type]

    # A chosen colour closes the palette: the main keyboard is back without a "Back" press.
    await finished(telegram, "editMessageReplyMarkup", count=2)
    await press(telegram, ANN, message, "Add to my pack")
    link = f"https://t.me/addstickers/{pack_name(STUDIO_USER, BOT)}"
    await telegram.wait_for(
        lambda t: messages.pack_created(link, 3) in t.texts_to(STUDIO_USER), 15
    )
    sticker_set = telegram.sticker_set(pack_name(STUDIO_USER, BOT))
    assert sticker_set is not None
    assert len(sticker_set["stickers"]) == 3
    # The stickers made for the first press went into the pack by file_id: no new download.
    assert all(not c.files for c in telegram.calls_of("addStickerToSet"))
    assert len(freepik.calls) == 3


async def test_album_shop_photos_and_outlines_cover_every_cutout(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(album_wait=0.3)
    colours = [(200, 0, 0), (0, 150, 0), (0, 0, 200)]
    for colour in colours:
        send_photo(telegram, data=round_subject(color=colour), media_group_id="g-shop")
    [follow_up] = await finished(
        telegram, "sendMessage", where=lambda c: "reply_markup" in c.params
    )
    message = dict(follow_up.result)
    await press(telegram, ANN, message, "Shop photo")
    [_album, shops] = await finished(telegram, "sendMediaGroup", count=2, timeout=30)
    assert shops.ok
    assert len(shops.result) == 3
    for part in shops.files.values():
        shop = opened(part.data)
        assert (shop.format, shop.size) == ("JPEG", (2000, 2000))
        assert shop.getpixel((0, 0)) == (255, 255, 255)
    await switch(telegram, ANN, message, "More", "Shadow")
    await press(telegram, ANN, message, "⭕ Outline")
    for call in await finished(telegram, "sendSticker", count=3, timeout=30):
        assert call.ok
        assert_sticker_bytes(call.files["sticker"].data)
    assert len(freepik.calls) == 3


# --- cache hits and shared jobs ---------------------------------------------------------------


async def test_cache_hit_and_joined_job_cutouts_carry_working_buttons(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    freepik.latency = 0.5
    await start_bot()
    file = telegram.add_file(round_subject())
    leader = send_photo(telegram, file=file)
    other = private_user(STUDIO_USER + 1, "Ben")
    joined = send_photo(telegram, other, file=file)
    first = await cutout_for(telegram, leader)
    second = await cutout_for(telegram, joined)
    hit = await cutout_for(telegram, send_photo(telegram, file=file))
    assert len(freepik.calls) == 1
    for cutout in (first, second, hit):
        assert len(buttons(cutout)) == MAIN_BUTTONS
    await press(telegram, ANN, hit, "Crop")
    await press(telegram, other, second, "Crop")
    crops = await finished(
        telegram, "sendDocument", count=2, where=lambda c: "caption" not in c.params, timeout=15
    )
    assert {c.chat_id for c in crops} == {STUDIO_USER, STUDIO_USER + 1}
    # The same crop of the same cutout: made once, re-sent by file_id the second time.
    assert sum(bool(c.files) for c in crops) == 1


# --- inline mode ------------------------------------------------------------------------------


async def test_inline_answer_offers_the_sticker_beside_the_document(
    start_bot: StartBot, telegram: FakeTelegram, image_host: Any
) -> None:
    await start_bot()
    telegram.start_user(STUDIO_USER)
    url = image_host.add("disc.png", round_subject())
    telegram.push_update(inline_query(ANN, url))
    [answer] = await finished(telegram, "answerInlineQuery", timeout=15)
    assert answer.ok
    kinds = [r["type"] for r in answer.params["results"]]
    assert kinds == ["document", "sticker"]
    sticker_id = answer.params["results"][1]["sticker_file_id"]
    [upload] = ok(telegram, "sendSticker")
    assert upload.result["sticker"]["file_id"] == sticker_id
    assert_sticker_bytes(upload.files["sticker"].data)

    # The next query for the same link: both from the cache, nothing made again.
    telegram.push_update(inline_query(ANN, url))
    answers = await finished(telegram, "answerInlineQuery", count=2, timeout=15)
    results = answers[1].params["results"]
    assert [r["type"] for r in results] == ["document", "sticker"]
    assert results[1]["sticker_file_id"] == sticker_id
    assert len(ok(telegram, "sendSticker")) == 1


# --- cutouts the studio cannot use ------------------------------------------------------------


def plant_cutout(
    telegram: FakeTelegram, data: bytes, user: dict[str, Any] = ANN
) -> dict[str, Any]:
    """A cutout document from the bot in `user`'s chat, with studio buttons (no record stored)."""
    stored = telegram.state.store_file(
        data, kind="document", mime_type="image/png", file_name="odd-nobg.png"
    )
    chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
    return telegram.state.new_message(
        chat,
        document=BotApi._document(stored),
        reply_markup=main_keyboard(new_token()).to_dict(),
    )


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


async def test_a_cutout_over_25_megapixels_is_refused_with_a_reply(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    huge = plant_cutout(telegram, png_bytes(Image.new("LA", (5001, 5000))))
    await press(telegram, ANN, huge, "Crop")
    await telegram.wait_for(
        lambda t: messages.studio_too_many_pixels() in t.texts_to(STUDIO_USER), timeout=20
    )
    await settle()
    assert len(ok(telegram, "sendDocument")) == 0
    assert len(ok(telegram, "sendMessage")) == 1


async def test_a_fully_transparent_cutout_has_nothing_to_trim(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    empty = plant_cutout(telegram, png_bytes(Image.new("RGBA", (200, 100), (0, 0, 0, 0))))
    await press(telegram, ANN, empty, "Sticker")
    await telegram.wait_for(
        lambda t: messages.studio_no_subject() in t.texts_to(STUDIO_USER), timeout=20
    )
    assert not telegram.calls_of("sendSticker")
    # A background still works: the colour alone, at the same size.
    await press(telegram, ANN, empty, "Background")
    await finished(telegram, "editMessageReplyMarkup")
    await press(telegram, ANN, empty, "White")
    [flat] = await finished(telegram, "sendDocument")
    assert opened(flat.files["document"].data).size == (200, 100)


async def test_busy_image_workers_get_a_plain_reply(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot(image_workers=1, image_queue=0)
    big = png_bytes(Image.new("RGB", (5000, 4000), (90, 160, 30)))
    first, second = plant_cutout(telegram, big), plant_cutout(telegram, big)
    for message in (first, second):
        telegram.press(ANN, message, data_of(telegram, message, "Crop"))
    await telegram.wait_for(
        lambda t: messages.studio_busy() in t.texts_to(STUDIO_USER), timeout=30
    )
    [crop] = await finished(telegram, "sendDocument", timeout=30)
    assert crop.ok
    await settle()
    assert len(ok(telegram, "sendMessage")) == 1


async def test_one_users_presses_take_only_their_share_of_the_image_workers(
    start_bot: StartBot, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One worker and room for two more conversions: Ann pressing Crop under 5 big cutouts
    # used to fill all three places, and Bob's press was told the bot is busy.
    bot = await start_bot(image_workers=1, image_queue=2)
    conversions = count_conversions(bot, monkeypatch)
    big = png_bytes(Image.new("RGB", (5000, 4000), (90, 160, 30)))
    mine = [plant_cutout(telegram, big) for _ in range(5)]
    queries = [telegram.press(ANN, m, data_of(telegram, m, "Crop")) for m in mine]
    for query in queries:
        await answered(telegram, query)
    toasts = sorted(toast(telegram, query) or "" for query in queries)
    later = messages.studio_wait_for_yours()
    assert toasts == sorted([messages.studio_working()] * 2 + [later] * 3)

    bobs = plant_cutout(telegram, png_bytes(Image.new("RGB", (300, 200), (9, 9, 9))), BOB)
    bob_query = await press(telegram, BOB, bobs, "Crop")
    assert toast(telegram, bob_query) == messages.studio_working()
    await telegram.wait_for(lambda t: bool(ok(t, "sendDocument", BOB["id"])), timeout=30)
    await telegram.wait_for(lambda t: len(ok(t, "sendDocument", STUDIO_USER)) == 2, timeout=60)
    await settle()
    # Nobody was told the bot is busy, the 3 presses over Ann's share were one toast each
    # and converted nothing, and nothing but the crops was sent.
    assert messages.studio_busy() not in telegram.texts_to(BOB["id"]) + telegram.texts_to(
        STUDIO_USER
    )
    assert conversions == ["crop"] * 3
    assert not ok(telegram, "sendMessage")
    counted = 'nobg_studio_presses_total{action="crop",outcome="user_busy"} 3.0'
    assert counted in bot.services.metrics.render().decode()


async def test_a_single_cutout_is_edited_while_redis_is_down(
    start_bot: StartBot, telegram: FakeTelegram, own_redis: Any
) -> None:
    await start_bot(storage_url=own_redis.url)
    cutout = await cutout_for(telegram, send_photo(telegram))
    own_redis.stop()
    await press(telegram, ANN, cutout, "Crop")
    [_cutout, crop] = await finished(telegram, "sendDocument", count=2, timeout=20)
    assert crop.ok
    assert (crop.files["document"].filename or "").endswith("-crop.png")


async def test_results_stay_in_the_cutouts_forum_topic(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    forum = dict(group_chat(-1005011, "Forum"), is_forum=True)
    await start_bot()
    file_id, unique_id = telegram.add_file(round_subject())
    request = photo_message(ALICE, file_id, unique_id, caption="/removebg", chat=forum)
    request.update(message_thread_id=77, is_topic_message=True)
    telegram.push_update(update(message=request))
    cutout = await cutout_for(telegram, request)
    assert cutout["message_thread_id"] == 77
    await press(telegram, ALICE, cutout, "Sticker")
    await press(telegram, ALICE, cutout, "Crop")
    [sticker] = await finished(telegram, "sendSticker")
    [_cutout, crop] = await finished(telegram, "sendDocument", count=2)
    for call in (sticker, crop):
        assert call.ok, telegram.summary()
        assert call.params["message_thread_id"] == 77
        assert call.result["message_thread_id"] == 77


async def test_album_buttons_survive_a_restart_on_the_sqlite_store(
    start_bot: StartBot, telegram: FakeTelegram, tmp_path: Any
) -> None:
    bot = await start_bot(album_wait=0.3, data_dir=tmp_path)  # the default store: SQLite
    album = [
        send_photo(telegram, data=round_subject(color=c), media_group_id="g-sqlite")
        for c in ((200, 0, 0), (0, 0, 200))
    ]
    [follow_up] = await finished(
        telegram, "sendMessage", where=lambda c: "reply_markup" in c.params
    )
    await bot.shutdown()
    await start_bot(album_wait=0.3, data_dir=tmp_path)
    await press(telegram, ANN, dict(follow_up.result), "Crop")
    [_album, crops] = await finished(telegram, "sendMediaGroup", count=2)
    assert crops.ok
    assert len(crops.result) == 2
    assert crops.params["reply_parameters"]["message_id"] == follow_up.result["message_id"]
    assert album[0]["message_id"] != follow_up.result["message_id"]


async def test_getfile_refusing_a_big_cutout_is_explained(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    await start_bot()
    # A document without file_size (it is optional): only getFile can tell it is over 20 MB.
    message = plant_cutout(telegram, png_bytes(Image.new("L", (8, 8))) + b"\0" * 21_000_000)
    del message["document"]["file_size"]
    telegram.state.remember_message(message)
    await press(telegram, ANN, message, "Crop")
    await telegram.wait_for(
        lambda t: messages.studio_too_large() in t.texts_to(STUDIO_USER), timeout=20
    )
    [refused] = telegram.calls_of("getFile")
    assert "too big" in str(refused.response)
    assert not telegram.file_downloads


async def test_studio_results_follow_a_group_upgraded_to_a_supergroup(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    old = group_chat(-4777, "Family", chat_type="group")
    new_id = -1004777
    await start_bot()
    file_id, unique_id = telegram.add_file(round_subject())
    photo = photo_message(ALICE, file_id, unique_id, chat=old)
    telegram.push_update(update(message=photo))
    command = text_message(ALICE, "/removebg", chat=old, reply_to_message=photo)
    telegram.push_update(update(message=command))
    cutout = await cutout_for(telegram, command)
    telegram.migrate_chat(old["id"], new_id)

    await press(telegram, ALICE, cutout, "Crop")
    await telegram.wait_for(lambda t: len(ok(t, "sendDocument", new_id)) == 1, timeout=15)
    [crop] = ok(telegram, "sendDocument", new_id)
    assert "reply_parameters" not in crop.params  # the cutout stayed in the basic group
    await press(telegram, ALICE, cutout, "Sticker")
    await telegram.wait_for(lambda t: len(ok(t, "sendSticker", new_id)) == 1, timeout=15)
    assert len(ok(telegram, "sendDocument", old["id"])) == 1  # only the cutout itself
    assert len(freepik.calls) == 1
