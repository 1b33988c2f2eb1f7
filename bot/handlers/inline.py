"""Inline-mode handler."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.services import get_services


async def on_inline_query(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """`@bot <link>`, or an empty query for the user's recent cutouts."""
    if update.inline_query is not None:
        await get_services(context).inline.answer(update.inline_query)
