"""The user's own sticker pack on Telegram: add a sticker, making the pack on first use."""

from __future__ import annotations

from telegram import Bot, InputSticker
from telegram.error import BadRequest

from bot.i18n import messages
from bot.studio.making import Declined, Made
from bot.studio.packs import STICKER_EMOJI, pack_name


async def add_sticker(bot: Bot, owner: int, made: Made) -> bool:
    """Add one sticker to `owner`'s pack, making the pack first if needed (True)."""
    name = pack_name(owner, bot.username)
    sticker = InputSticker(
        made.file_id if made.file_id is not None else (made.data or b""),
        emoji_list=[STICKER_EMOJI],
        format="static",
    )
    try:
        await bot.add_sticker_to_set(user_id=owner, name=name, sticker=sticker)
        return False
    except BadRequest as err:
        if "stickerset_invalid" not in err.message.lower():
            raise _refusal(err, bot.username) from err
    try:
        await bot.create_new_sticker_set(
            user_id=owner, name=name, title=messages.pack_title(bot.username), stickers=[sticker]
        )
    except BadRequest as err:
        if "occupied" not in err.message.lower():
            raise _refusal(err, bot.username) from err
        # Made meanwhile by another press or replica: add to it after all.
        try:
            await bot.add_sticker_to_set(user_id=owner, name=name, sticker=sticker)
        except BadRequest as again:
            raise _refusal(again, bot.username) from again
        return False
    return True


def _refusal(err: BadRequest, username: str) -> Exception:
    """What to tell the user about a refused pack call (the error itself when it is a bug)."""
    problem = err.message.lower()
    if "stickers_too_much" in problem:
        return Declined("pack_full", messages.pack_full)
    if "peer_id_invalid" in problem or "user not found" in problem:
        text = messages.pack_needs_start(username)
        return Declined("needs_start", lambda: text)
    return err
