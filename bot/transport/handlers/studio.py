"""The studio buttons under cutouts."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.transport.services import get_services


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A press of Sticker, Add to my pack, Background (or a colour, Back) or Crop."""
    if update.callback_query is not None:
        await get_services(context).studio.handle(update.callback_query)
