"""The studio buttons under cutouts."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.transport.services import get_services
from bot.transport.surfaces.press import ButtonPress


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A press of Sticker, Add to my pack, Background (or a colour, Back) or Crop."""
    query = update.callback_query
    if query is not None:
        # The press lifecycle answers at once and ends the press in exactly one reply.
        studio = get_services(context).studio
        await studio.presses.run(ButtonPress(context.bot, query, studio.migrations))
