"""The user's own sticker pack: its name and link, and the emoji every studio sticker carries."""

from __future__ import annotations

STICKER_EMOJI = "✂️"


def pack_name(user_id: int, bot_username: str) -> str:
    """The user's own pack: letters, digits, single underscores, `_by_<bot>`, <= 64 chars."""
    return f"cutouts_{user_id}_by_{bot_username}"


def pack_link(name: str) -> str:
    """The link that opens a sticker pack in Telegram."""
    return f"https://t.me/addstickers/{name}"
