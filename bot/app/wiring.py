"""Build the Application and register every handler, in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Bot, BotCommand, BotCommandScopeChat, Update
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    InlineQueryHandler,
    MessageHandler,
    PreCheckoutQueryHandler,
    TypeHandler,
    filters,
)

from bot.app import httpcore_fix
from bot.app.services import ServiceOptions, create_services
from bot.app.telegram_request import AiohttpRequest
from bot.i18n import locales as i18n
from bot.i18n import messages
from bot.requests.journal import ArrivedUpdates, RecordingQueue
from bot.settings import Settings
from bot.storage.base import StateStore, StorageUnavailable
from bot.transport import keyboards
from bot.transport.arrivals import ArrivalQueue
from bot.transport.handlers import errors, group, inline, language, payments, private, studio
from bot.transport.polling import TolerantUpdatesRequest
from bot.transport.services import attach_services, services_of
from bot.transport.telegram_rate import FairRateLimiter
from bot.transport.turns import FairUpdateProcessor

logger = logging.getLogger(__name__)

AnyApplication = Application[Any, Any, Any, Any, Any, Any]
JSONDict = dict[str, Any]

_PROFILE_TASK = "nobg.register_profile"
_UPGRADE_TASK = "nobg.upgrade_store"
# Handlers running at once (python-telegram-bot's `concurrent_updates(True)`), and how many of
# them one user's messages may hold: a flood of messages waits in its own line.
HANDLER_SLOTS = 256
MESSAGES_PER_USER = 4

# The update types the bot handles, for getUpdates and setWebhook. Payments arrive as messages
# (successful_payment, refunded_payment); a checkout must be answered within 10 seconds.
ALLOWED_UPDATES = [
    Update.MESSAGE,
    Update.INLINE_QUERY,
    Update.CALLBACK_QUERY,
    Update.PRE_CHECKOUT_QUERY,
]


async def register_profile(
    bot: Bot, *, payments: bool = False, admin_ids: frozenset[int] = frozenset()
) -> None:
    """Command menu, description and short description, once per language (best effort).

    Admins get the admin commands too, in a menu of their own private chat.
    """
    for locale in i18n.LOCALES:
        # English is also the default for every language without its own texts.
        code = None if locale == i18n.DEFAULT_LOCALE else i18n.telegram_language_code(locale)
        with i18n.using(locale):
            commands = [BotCommand(name, text) for name, text in messages.commands(payments)]
            admin = [BotCommand(name, text) for name, text in messages.admin_commands()]
            description = messages.bot_description()
            short_description = messages.bot_short_description()
        # Each call on its own: one refused text must not cost the others.
        await _best_effort("commands", locale, bot.set_my_commands(commands, language_code=code))
        for admin_id in sorted(admin_ids):
            scope = BotCommandScopeChat(admin_id)
            await _best_effort(
                "admin commands",
                locale,
                bot.set_my_commands(commands + admin, scope=scope, language_code=code),
            )
        await _best_effort(
            "description", locale, bot.set_my_description(description, language_code=code)
        )
        await _best_effort(
            "short description",
            locale,
            bot.set_my_short_description(short_description, language_code=code),
        )


async def _upgrade(store: StateStore) -> None:
    try:
        await store.upgrade()
    except StorageUnavailable as err:  # the next start tries again
        logger.warning("Could not upgrade the stored records: %s", err)


async def _best_effort(what: str, locale: str, call: Awaitable[object]) -> None:
    try:
        await call
    except Exception as err:  # the menu and profile are a nicety; never block the bot on them
        logger.warning("Could not register the %s for %s: %s", what, locale, err)


class JournaledApplication(Application[Any, Any, Any, Any, Any, Any]):
    """The Application with the request lifecycle hook around every update."""

    async def process_update(self, update: object) -> None:
        """Process `update` under its durable record (see `bot.requests.journal`)."""
        if "nobg.services" not in self.bot_data:  # not started through post_init
            await super().process_update(update)
            return
        journal = services_of(self).journal
        await journal.run(update, lambda: super(JournaledApplication, self).process_update(update))


def build_application(settings: Settings, options: ServiceOptions | None = None) -> AnyApplication:
    """Create the Application with its services and handlers (not yet started)."""
    options = options or ServiceOptions()
    root = settings.telegram_api_url
    httpcore_fix.apply()  # before the first connection pool is used
    arrived = ArrivedUpdates()  # polling keeps each update's JSON here for the journal

    async def post_init(application: AnyApplication) -> None:
        services = create_services(settings, application.bot, options, arrived)
        attach_services(application, services)
        services.studio.start()  # My background's waits that run out get their one line
        if isinstance(application.update_queue, RecordingQueue):
            application.update_queue.journal = services.journal
        # In the background, like the profile: a one-time look at every record must not delay
        # the first reply (see docs/behaviour.md on /forget).
        application.bot_data[_UPGRADE_TASK] = asyncio.create_task(
            _upgrade(services.store), name="upgrade_store"
        )
        # In the background: 3 calls per language must not delay the first reply.
        application.bot_data[_PROFILE_TASK] = asyncio.create_task(
            register_profile(
                application.bot,
                payments=settings.payments_enabled,
                admin_ids=settings.admin_ids,
            ),
            name="register_profile",
        )

    async def post_stop(application: AnyApplication) -> None:
        for name in (_PROFILE_TASK, _UPGRADE_TASK):
            task = application.bot_data.pop(name, None)
            if isinstance(task, asyncio.Task) and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def post_shutdown(application: AnyApplication) -> None:
        if "nobg.services" in application.bot_data:
            await services_of(application).aclose()

    # The one update queue: records each update on the way in, notes inline queries' arrival.
    builder = (
        ApplicationBuilder().application_class(JournaledApplication).update_queue(ArrivalQueue())
    )
    if settings.mode == "webhook":
        builder = builder.updater(None)  # updates arrive through our own HTTP server
    else:
        # One update the library cannot parse must not stop polling for good.
        builder = builder.get_updates_request(
            TolerantUpdatesRequest(
                AiohttpRequest(connection_pool_size=1, read_timeout=30.0), arrived
            )
        )
    application: AnyApplication = (
        builder.token(settings.telegram_bot_token.get_secret_value())
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        # One user's slow removal must never hold up another's update, nor one user's backlog
        # another user's turn at a free handler slot.
        .concurrent_updates(FairUpdateProcessor(HANDLER_SLOTS, per_user=MESSAGES_PER_USER))
        # Honours flood waits (RetryAfter) and Telegram's per-group and overall limits; the
        # overall rate is shared between chats in turns, so one chat's backlog delays only it.
        .rate_limiter(
            FairRateLimiter(
                settings.telegram_max_rate,
                inner=BotRateLimiter(overall_max_rate=0, overall_time_period=0, max_retries=3),
            )
        )
        # On aiohttp's connection pool and C parser (see bot.app.telegram_request).
        .request(
            AiohttpRequest(
                connection_pool_size=64, pool_timeout=30.0, read_timeout=30.0, write_timeout=60.0
            )
        )
        .post_init(post_init)
        .post_stop(post_stop)
        .post_shutdown(post_shutdown)
        .build()
    )
    register_handlers(application, settings)
    return application


class BotRateLimiter(AIORateLimiter):
    """`AIORateLimiter`, except that inline answers go out at once and are never retried.

    An inline answer has a deadline: waiting in a queue or sleeping out a flood wait can only
    make it late. The inline flow waits out a flood wait itself, and only if it ends in time.
    """

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        """Pass inline answers straight through; everything else as `AIORateLimiter` does."""
        if endpoint == "answerInlineQuery":
            return await callback(*args, **kwargs)
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


def register_handlers(application: AnyApplication, settings: Settings) -> None:
    """Register every handler; the first matching handler in group 0 wins."""
    messages_only = filters.UpdateType.MESSAGE  # edits are not new requests
    private_messages = filters.ChatType.PRIVATE & messages_only
    group_messages = filters.ChatType.GROUPS & messages_only
    # 0. Before anything else (group -1, same task as the handler that follows): the language
    #    every text of this update is looked up in.
    application.add_handler(TypeHandler(Update, language.set_request_locale), group=-1)
    # 1. /start and /help anywhere (/start <parameter> comes from inline answers' button).
    application.add_handler(
        CommandHandler(["start", "help"], private.cmd_help, filters=messages_only)
    )
    # 1b. /language anywhere (before 5, which would take it for an unknown command).
    application.add_handler(
        CommandHandler("language", language.cmd_language, filters=messages_only)
    )
    # 1c. /cancel anywhere: ends a My background wait (before 5, an unknown command there).
    application.add_handler(CommandHandler("cancel", studio.cmd_cancel, filters=messages_only))
    # 2. /removebg and /nobg (also /removebg@thisbot): the group interface, fine in private too.
    application.add_handler(
        CommandHandler(list(group.REMOVEBG_COMMANDS), group.cmd_removebg, filters=messages_only)
    )
    # 3. A photo or file in a group with /removebg as its caption.
    application.add_handler(
        MessageHandler(
            group_messages
            & (filters.PHOTO | filters.Document.ALL)
            & group.CaptionCommand(group.REMOVEBG_COMMANDS),
            group.cmd_removebg,
        )
    )
    # 3a. Any other reply to the bot in a group: the photo My background waits for (if the
    #     sender waits there); privacy mode lets a bot see replies to its own messages.
    application.add_handler(
        MessageHandler(group_messages & filters.REPLY & ~filters.COMMAND, group.on_reply)
    )
    # 3b. Telegram Stars. What every bot owes its users, always: /paysupport, /privacy, /forget.
    #     /buy and /balance only with payments on (off: unknown commands, as before payments).
    #     Payments themselves are always taken in: an invoice sent before payments were
    #     switched off may still be paid (checkout then says no), or refunded.
    application.add_handler(
        CommandHandler("paysupport", payments.cmd_paysupport, filters=messages_only)
    )
    application.add_handler(CommandHandler("privacy", payments.cmd_privacy, filters=messages_only))
    application.add_handler(CommandHandler("forget", payments.cmd_forget, filters=messages_only))
    if settings.payments_enabled:
        application.add_handler(CommandHandler("buy", payments.cmd_buy, filters=messages_only))
        application.add_handler(
            CommandHandler("balance", payments.cmd_balance, filters=messages_only)
        )
    admins = filters.User(user_id=settings.admin_ids, allow_empty=False)
    application.add_handler(
        CommandHandler("refund", payments.cmd_refund, filters=messages_only & admins)
    )
    application.add_handler(
        CommandHandler("stats", payments.cmd_stats, filters=messages_only & admins)
    )
    application.add_handler(PreCheckoutQueryHandler(payments.on_pre_checkout))
    application.add_handler(
        MessageHandler(filters.SUCCESSFUL_PAYMENT & messages_only, payments.on_successful_payment)
    )
    application.add_handler(
        MessageHandler(
            filters.StatusUpdate.REFUNDED_PAYMENT & messages_only, payments.on_refunded_payment
        )
    )
    # 4. Private photos, files and text: the handler decides if it is an image, a link or neither.
    #    Nothing in groups gets here: plain photos and links there are ignored on purpose.
    application.add_handler(
        MessageHandler(
            private_messages
            & (filters.PHOTO | filters.Document.ALL | filters.TEXT)
            & ~filters.COMMAND,
            private.on_image,
        )
    )
    # 5. Anything else in a private chat (stickers, voice, unknown commands) gets a hint; not
    #    service messages (a pin, an auto-delete timer): nobody asked the bot anything.
    application.add_handler(
        MessageHandler(private_messages & ~filters.StatusUpdate.ALL, private.on_other)
    )
    # 6. Inline mode: "@thisbot <link>" from any chat.
    application.add_handler(InlineQueryHandler(inline.on_inline_query))
    # 7. The buttons of /language (the choice is per user); before 8, which takes any button.
    application.add_handler(
        CallbackQueryHandler(language.on_language_chosen, pattern=f"^{language.CALLBACK_PREFIX}")
    )
    # 7b. /buy's pack buttons and /forget's confirmation.
    application.add_handler(
        CallbackQueryHandler(payments.on_pack_chosen, pattern=f"^{keyboards.BUY_PREFIX}")
    )
    application.add_handler(
        CallbackQueryHandler(payments.on_forget_button, pattern=f"^{payments.FORGET_PREFIX}")
    )
    # 8. The studio buttons under cutouts (Sticker, Add to my pack, Background, Crop).
    application.add_handler(CallbackQueryHandler(studio.on_button))
    application.add_error_handler(errors.on_error)
