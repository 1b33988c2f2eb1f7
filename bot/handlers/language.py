"""The user's language: picked for every update at entry, and chosen with /language."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes

from bot import i18n
from bot.services import get_services
from bot.storage import StorageUnavailable

logger = logging.getLogger(__name__)


async def user_locale(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
    """The locale of whoever sent `update`: their /language choice, else their client's."""
    user = update.effective_user
    if user is None:
        return i18n.DEFAULT_LOCALE
    choice: str | None = None
    try:
        choice = await get_services(context).store.get_language(user.id)
    except StorageUnavailable as err:
        # The reply itself will say the storage is down; say it in the client's language.
        logger.debug("Language choice of user %s unavailable: %s", user.id, err)
    return i18n.resolve_locale(choice, user.language_code)


async def set_request_locale(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Runs before every handler: later texts of this update speak the user's language."""
    if isinstance(update, Update):
        i18n.set_locale(await user_locale(update, context))
