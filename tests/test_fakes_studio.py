"""The fake Bot API's buttons and stickers follow Telegram's rules, driven by the real PTB Bot."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultCachedSticker,
    InputFile,
    InputSticker,
    Message,
)
from telegram.error import BadRequest, Forbidden

from tests.fakes import FakeTelegram, make_image
from tests.fakes.updates import group_chat, inline_query, private_user, text_message, update

USER = 4242
OTHER = 4343


def webp(size: tuple[int, int], fmt: str = "WEBP") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA" if fmt != "JPEG" else "RGB", size, (200, 0, 0)).save(buffer, format=fmt)
    return buffer.getvalue()


def sticker_upload(size: tuple[int, int] = (512, 300), fmt: str = "WEBP") -> InputSticker:
    return InputSticker(
        # attach=True: a plain InputFile inside InputSticker is serialised as null.
        InputFile(webp(size, fmt), filename="s.webp", attach=True),
        emoji_list=["✂️"],
        format="static",
    )


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d, callback_data=d) for d in data]])


def started(telegram: FakeTelegram, user_id: int = USER) -> None:
    telegram.push_update(update(text_message(private_user(user_id), "/start")))


# --- callback queries -------------------------------------------------------------------------


async def test_callback_query_is_answered_once_while_fresh(
    telegram: FakeTelegram, bot: Bot
) -> None:
    sent = await bot.send_message(USER, "pick", reply_markup=keyboard("a", "b"))
    message = sent.to_dict()
    query_id = telegram.press(private_user(USER), message, "a")
    updates = await bot.get_updates()
    pressed = updates[-1].callback_query
    assert pressed is not None
    assert pressed.data == "a"
    assert pressed.message is not None
    assert pressed.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query_id, text="Working…")
    assert telegram.callback_answer(query_id) == {
        "callback_query_id": query_id,
        "text": "Working…",
    }
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query("12345")

    late = telegram.press(private_user(USER), message, "b")
    telegram.callback_query_ttl = 0.0
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(late)
    telegram.callback_query_ttl = 15.0
    longer = telegram.press(private_user(USER), message, "b")
    with pytest.raises(BadRequest, match=r"(?i)MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(longer, text="x" * 201)
    assert await bot.answer_callback_query(longer, text="x" * 200, show_alert=True)


async def test_callback_data_is_limited_to_64_bytes(telegram: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(USER, "ok", reply_markup=keyboard("é" * 32))
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "too long", reply_markup=keyboard("é" * 33))


async def test_edit_message_reply_markup(telegram: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_document(
        USER, InputFile(make_image("PNG"), filename="c.png"), reply_markup=keyboard("a")
    )
    edited = await bot.edit_message_reply_markup(
        USER, sent.message_id, reply_markup=keyboard("b", "c")
    )
    assert not isinstance(edited, bool)
    assert edited.reply_markup == keyboard("b", "c")
    assert edited.document is not None
    # The press carries the message as it is now.
    telegram.press(private_user(USER), sent.to_dict(), "b")
    pressed = (await bot.get_updates())[-1].callback_query
    assert pressed is not None
    assert isinstance(pressed.message, Message)
    assert pressed.message.reply_markup == keyboard("b", "c")
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(USER, sent.message_id, reply_markup=keyboard("b", "c"))
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_reply_markup(USER, 9999, reply_markup=keyboard("a"))
    users = text_message(private_user(USER), "hello")
    telegram.push_update(update(users))
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_reply_markup(USER, users["message_id"], reply_markup=keyboard("a"))


# --- sendSticker ------------------------------------------------------------------------------


async def test_send_sticker_upload_and_resend(telegram: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_sticker(USER, InputFile(webp((512, 200)), filename="s.webp"))
    assert sent.sticker is not None
    assert (sent.sticker.width, sent.sticker.height) == (512, 200)
    assert not sent.sticker.is_animated
    again = await bot.send_sticker(USER, sent.sticker.file_id)
    assert again.sticker is not None
    assert again.sticker.file_unique_id == sent.sticker.file_unique_id
    assert len(telegram.calls_of("sendSticker")[-1].files) == 0


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (webp((500, 200)), "STICKER_PNG_DIMENSIONS"),
        (webp((600, 512)), "STICKER_PNG_DIMENSIONS"),
        (webp((512, 512), "JPEG"), "STICKER_PNG_NOPNG"),
        (b"not an image", "STICKER_PNG_NOPNG"),
    ],
)
async def test_send_sticker_checks_the_bytes(
    telegram: FakeTelegram, bot: Bot, data: bytes, error: str
) -> None:
    with pytest.raises(BadRequest, match=rf"(?i){error}"):
        await bot.send_sticker(USER, InputFile(data, filename="s.webp"))


async def test_send_sticker_refuses_a_document_file_id(telegram: FakeTelegram, bot: Bot) -> None:
    document = await bot.send_document(USER, InputFile(make_image("PNG"), filename="c.png"))
    assert document.document is not None
    with pytest.raises(BadRequest, match=r"(?i)type of file mismatch"):
        await bot.send_sticker(USER, document.document.file_id)


# --- sticker sets -----------------------------------------------------------------------------


async def test_create_add_and_get_a_sticker_set(telegram: FakeTelegram, bot: Bot) -> None:
    started(telegram)
    name = f"cutouts_{USER}_by_{telegram.username}"
    assert await bot.create_new_sticker_set(USER, name, "My cutouts", [sticker_upload()])
    assert await bot.add_sticker_to_set(USER, name, sticker_upload((300, 512)))
    found = await bot.get_sticker_set(name)
    assert found.name == name
    assert found.title == "My cutouts"
    assert [(s.width, s.height) for s in found.stickers] == [(512, 300), (300, 512)]
    assert all(s.set_name == name and s.emoji == "✂️" for s in found.stickers)
    # The same sticker again leaves the set as it is.
    same = InputSticker(found.stickers[0].file_id, emoji_list=["✂️"], format="static")
    assert await bot.add_sticker_to_set(USER, name, same)
    assert len((await bot.get_sticker_set(name)).stickers) == 2
    with pytest.raises(BadRequest, match=r"(?i)sticker set name is already occupied"):
        await bot.create_new_sticker_set(USER, name, "Again", [sticker_upload()])
    with pytest.raises(BadRequest, match=r"(?i)STICKERSET_INVALID"):
        await bot.get_sticker_set(f"nothing_by_{telegram.username}")


@pytest.mark.parametrize(
    "name",
    [
        "cutouts_by_other_bot",
        "1cutouts_by_{bot}",
        "cut__outs_by_{bot}",
        "cut-outs_by_{bot}",
        "_by_{bot}",
        "c" * 60 + "_by_{bot}",
    ],
)
async def test_sticker_set_name_rules(telegram: FakeTelegram, bot: Bot, name: str) -> None:
    started(telegram)
    with pytest.raises(BadRequest, match=r"(?i)sticker set name invalid"):
        await bot.create_new_sticker_set(
            USER, name.format(bot=telegram.username), "T", [sticker_upload()]
        )


async def test_sticker_set_name_suffix_is_case_insensitive(
    telegram: FakeTelegram, bot: Bot
) -> None:
    started(telegram)
    name = f"Cutouts_by_{telegram.username.upper()}"
    assert await bot.create_new_sticker_set(USER, name, "T", [sticker_upload()])


async def test_sticker_set_rules_on_the_owner_and_title(telegram: FakeTelegram, bot: Bot) -> None:
    name = f"cutouts_{USER}_by_{telegram.username}"
    with pytest.raises(BadRequest, match=r"(?i)PEER_ID_INVALID"):
        await bot.create_new_sticker_set(USER, name, "T", [sticker_upload()])
    # Writing in a group is not starting the bot.
    group_message = text_message(private_user(USER), "hi", chat=group_chat(-100))
    telegram.push_update(update(group_message))
    with pytest.raises(BadRequest, match=r"(?i)PEER_ID_INVALID"):
        await bot.create_new_sticker_set(USER, name, "T", [sticker_upload()])
    started(telegram)
    with pytest.raises(BadRequest, match=r"(?i)PACK_TITLE_INVALID"):
        await bot.create_new_sticker_set(USER, name, "T" * 65, [sticker_upload()])
    with pytest.raises(BadRequest, match=r"(?i)STICKER_PNG_DIMENSIONS"):
        await bot.create_new_sticker_set(USER, name, "T", [sticker_upload((256, 256))])
    with pytest.raises(BadRequest, match=r"(?i)STICKER_EMOJI_INVALID"):
        await bot.create_new_sticker_set(
            USER,
            name,
            "T",
            [InputSticker(webp((512, 512)), emoji_list=[], format="static")],
        )
    assert telegram.sticker_set(name) is None
    assert await bot.create_new_sticker_set(USER, name, "T", [sticker_upload()])
    # Only the owner may add, and only to sets that exist.
    started(telegram, OTHER)
    with pytest.raises(BadRequest, match=r"(?i)STICKERSET_INVALID"):
        await bot.add_sticker_to_set(OTHER, name, sticker_upload())
    with pytest.raises(BadRequest, match=r"(?i)STICKERSET_INVALID"):
        await bot.add_sticker_to_set(USER, f"missing_by_{telegram.username}", sticker_upload())
    telegram.block_chat(USER)
    with pytest.raises(Forbidden):
        await bot.add_sticker_to_set(USER, name, sticker_upload())


async def test_a_static_set_holds_120_stickers(telegram: FakeTelegram, bot: Bot) -> None:
    started(telegram)
    name = f"full_by_{telegram.username}"
    telegram.make_sticker_set(USER, name, 119)
    assert await bot.add_sticker_to_set(USER, name, sticker_upload())
    with pytest.raises(BadRequest, match=r"(?i)STICKERS_TOO_MUCH"):
        await bot.add_sticker_to_set(USER, name, sticker_upload())
    assert len((await bot.get_sticker_set(name)).stickers) == 120


async def test_inline_cached_sticker_must_be_a_sticker(telegram: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_sticker(USER, InputFile(webp((512, 512)), filename="s.webp"))
    document = await bot.send_document(USER, InputFile(make_image("PNG"), filename="c.png"))
    assert sent.sticker is not None
    assert document.document is not None
    user = private_user(USER)
    first = inline_query(user, "x")
    telegram.push_update(first)
    result = InlineQueryResultCachedSticker("1", sent.sticker.file_id)
    assert await bot.answer_inline_query(first["inline_query"]["id"], [result])
    second = inline_query(user, "y")
    telegram.push_update(second)
    wrong = InlineQueryResultCachedSticker("1", document.document.file_id)
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.answer_inline_query(second["inline_query"]["id"], [wrong])
