"""Inline-mode handler."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.transport.arrivals import arrival_of
from bot.transport.services import get_services


async def on_inline_query(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """`@bot <link>`, or an empty query for the user's recent cutouts."""
    query = update.inline_query
    if query is not None:
        received = arrival_of(context.application.update_queue, query.id)
        await get_services(context).inline.answer(query, received=received)
