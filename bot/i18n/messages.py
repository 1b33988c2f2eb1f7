"""Every text the bot shows to users, in one place, translated at reply time.

Each text is a function: it looks the words up in the catalog of the current request's
locale (`bot.i18n.locales`), so nothing is translated at import time. Placeholders are named
(`{name}`) and filled with `str.format` after the lookup; HTML texts escape what they insert.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import limits

from bot.i18n.locales import gettext as _
from bot.i18n.locales import ngettext

INLINE_START_PARAMETER = "inline"
# `/start buy`: the private chat opened to buy credits (from /buy in a group, or inline).
BUY_START_PARAMETER = "buy"


# --- private and group chats: status, replies and help ------------------------------------------


def working() -> str:
    """Status while one image is being cut out."""
    return _("✂️ Removing the background…")


def not_an_image() -> str:
    """The message holds no image we can use."""
    return _(
        "I can only cut out images. Send a photo, an image file (JPEG or PNG) "
        "or a link to an image."
    )


def input_too_large() -> str:
    """The file is over the Bot API's download limit."""
    return _(
        "This file is too big: Telegram lets bots download files up to 20 MB. "
        "Please send a smaller image."
    )


def source_unavailable() -> str:
    """Telegram would not hand over the file."""
    return _("I couldn't get this file from Telegram. Please send it again.")


def no_link() -> str:
    """Text without a link, stickers and the like in a private chat."""
    return _(
        "Send me a photo, an image file or a link to an image and I'll send it back "
        "with the background removed. /help has the details."
    )


def not_http() -> str:
    """A link with another scheme than http(s)."""
    return _("Only http:// and https:// links work. Please send a web link to the image.")


def image_rejected() -> str:
    """Freepik could not read the image."""
    return _(
        "Sorry, I couldn't read this image. Send a JPEG or PNG photo up to 20 MB "
        "(or a direct link to one)."
    )


def link_not_found() -> str:
    """Freepik could not download anything from the link (gone, 404, unreachable)."""
    return _(
        "I couldn't get an image from this link: the page is gone or doesn't open. "
        "Check the link and send it again."
    )


def link_not_an_image() -> str:
    """Freepik fetched the link but read no image there (a web page, another format...)."""
    return _(
        "This link doesn't lead to a JPEG or PNG image; it may be a web page around the "
        "image. Open the image itself and send its link."
    )


def misconfigured() -> str:
    """Freepik refused the API key."""
    return _(
        "Sorry, the background-removal service is misconfigured right now. "
        "The operator has been notified; please try again later."
    )


def busy() -> str:
    """Freepik's quota or rate limit is exhausted."""
    return _(
        "The background-removal service is busy right now. Please try again in a few minutes."
    )


def out_of_capacity() -> str:
    """Freepik says the account is out of credits or over its quota."""
    return _("The background-removal service is out of capacity for now. Please try again later.")


def budget_used_up() -> str:
    """FREEPIK_DAILY_BUDGET is spent for today: no new jobs until midnight UTC."""
    return _(
        "Today's capacity for new images is used up. Please try again after 00:00 UTC. "
        "Images I have already cut out still come back at once."
    )


def unavailable() -> str:
    """Freepik is down or answered nonsense."""
    return _("The background-removal service is unavailable right now. Please try again later.")


def too_many_pixels() -> str:
    """The image's dimensions are over what the bot will decode."""
    return _(
        "This image has too many pixels for me to handle. Please send a smaller version of it."
    )


def timed_out() -> str:
    """The job or its result download ran past its deadline."""
    return _("This image took too long to process, so I gave up on it. Please try again later.")


def result_too_large() -> str:
    """The PNG is over Telegram's upload limit."""
    return _("The cutout is larger than Telegram's 50 MB limit. Try a smaller image.")


def undeliverable() -> str:
    """The cutout exists but Telegram did not take it."""
    return _("I made the cutout but couldn't send it to you. Please try again.")


def aborted() -> str:
    """The bot shut down in the middle of the job."""
    return _(
        "The bot is restarting and couldn't finish this image. Please send it again in a minute."
    )


def gave_up() -> str:
    """A request was resumed after crashes too many times and is given up."""
    return _(
        "Sorry, I tried several times but couldn't finish this request (the bot kept failing "
        "while working on it). Please send it again."
    )


def internal_error() -> str:
    """Something unexpected broke."""
    return _("Something went wrong on my side. Please try again.")


def temporarily_unavailable() -> str:
    """The storage backend cannot be reached."""
    return _(
        "I'm temporarily unavailable (my storage can't be reached). Please try again in a minute."
    )


def done_caption() -> str:
    """Caption of the finished PNG."""
    return _("Background removed.")


def removebg_usage() -> str:
    """/removebg without anything to work on."""
    return _(
        "Reply to a photo or image file with /removebg, write /removebg <link>, "
        "or send a photo with /removebg as its caption."
    )


def inline_help(username: str) -> str:
    """/start opened from an inline answer's button (HTML)."""
    return _(
        "<b>Inline mode</b>\n\n"
        "In any chat, type my username followed by a link to an image, e.g.\n"
        "<code>@{username} https://example.com/cat.jpg</code>\n"
        "and pick the cutout to send it there. With nothing after my username you get your "
        "recent cutouts. Inline results are uploaded to this chat first, so keep it open "
        "(don't block me)."
    ).format(username=escape(username))


def queued(position: int) -> str:
    """Status shown while a job waits for a free slot."""
    ahead = position - 1
    if ahead <= 0:
        return _("⏳ You're next in line; I'll start in a moment…")
    return ngettext(
        "⏳ Queued: {count} image ahead of yours. Hang on…",
        "⏳ Queued: {count} images ahead of yours. Hang on…",
        ahead,
    ).format(count=ahead)


def rate_limited(wait_text: str, scope: str = "user") -> str:
    """Reply when the user (or, in a group, the chat; or the bot's daily budget) is over."""
    if scope == "budget":
        return budget_used_up()
    if scope == "chat":
        return _(
            "This chat has reached its limit for now. The next image can be sent in {wait}."
        ).format(wait=wait_text)
    return _("You've reached your limit for now. You can send your next image in {wait}.").format(
        wait=wait_text
    )


def format_wait(seconds: float) -> str:
    """A wait rounded up to a friendly unit: `42 seconds`, `3 minutes`, `2 hours`."""
    whole = max(1, math.ceil(seconds))
    if whole < 90:
        return ngettext("{count} second", "{count} seconds", whole).format(count=whole)
    minutes = math.ceil(whole / 60)
    if minutes < 90:
        return ngettext("{count} minute", "{count} minutes", minutes).format(count=minutes)
    hours = math.ceil(minutes / 60)
    return ngettext("{count} hour", "{count} hours", hours).format(count=hours)


def format_period(seconds: float) -> str:
    """How long something is kept: whole days from a day up (`30 days`), else as `format_wait`."""
    days = seconds / 86400
    if days >= 2 or (days >= 1 and days.is_integer()):
        whole = math.ceil(days)
        return ngettext("{count} day", "{count} days", whole).format(count=whole)
    return format_wait(seconds)


def _per_period(amount: int, unit: str) -> str:
    if unit == "second":
        return ngettext("{count} image per second", "{count} images per second", amount)
    if unit == "minute":
        return ngettext("{count} image per minute", "{count} images per minute", amount)
    if unit == "hour":
        return ngettext("{count} image per hour", "{count} images per hour", amount)
    if unit == "day":
        return ngettext("{count} image per day", "{count} images per day", amount)
    if unit == "month":
        return ngettext("{count} image per month", "{count} images per month", amount)
    return ngettext("{count} image per year", "{count} images per year", amount)


def _limit_part(item: limits.RateLimitItem) -> str:
    if item.multiples == 1:
        return _per_period(item.amount, item.GRANULARITY.name).format(count=item.amount)
    period = format_wait(item.get_expiry())
    return ngettext(
        "{count} image every {period}", "{count} images every {period}", item.amount
    ).format(count=item.amount, period=period)


def join_list(parts: list[str]) -> str:
    """`a`, `a and b`, `a, b and c` in the current language."""
    if len(parts) <= 1:
        return "".join(parts)
    # TRANSLATORS: separator between items of a list, e.g. "1, 2 and 3".
    head = _(", ").join(parts[:-1])
    return _("{items} and {last}").format(items=head, last=parts[-1])


def describe_limits(rate_limit: str) -> str:
    """Human wording of a `limits` string such as `5/minute;50/day`."""
    if not rate_limit:
        return _("There is no limit on how many images you can send.")
    parts = [_limit_part(item) for item in limits.parse_many(rate_limit)]
    return _("You can send up to {limits}.").format(limits=join_list(parts))


def help_text(rate_limit: str, username: str) -> str:
    """The /start and /help text (HTML)."""
    paragraphs = [
        _("<b>I remove the background from images.</b>"),
        _(
            "Send me:\n"
            "• a <b>photo</b> (or an album of photos),\n"
            "• an <b>image file</b> (JPEG or PNG, up to 20 MB), or\n"
            "• a <b>link</b> to an image (http or https)."
        ),
        _("I'll reply with a transparent PNG as a file, so the transparency is kept."),
        _(
            "Under each cutout, buttons make it a <b>sticker</b>, add it to <b>your own "
            "sticker pack</b>, put it on a <b>white or coloured background</b> or "
            "<b>crop</b> it to the subject, at no extra cost."
        ),
        _(
            "<b>In groups:</b> reply to a photo or image file with /removebg (or /nobg), "
            "write <code>/removebg &lt;link&gt;</code>, or send a photo with /removebg as "
            "its caption.\n"
            "<b>In any chat:</b> type <code>@{username} &lt;link&gt;</code> to "
            "send a cutout there; with nothing after my name you get your recent cutouts."
        ).format(username=escape(username)),
        _(
            "<b>Limits:</b> {limits} Images I have already cut out come back at once "
            "and don't count."
        ).format(limits=escape(describe_limits(rate_limit))),
        _(
            "<b>Privacy:</b> to do the work, your image is sent to Freepik's "
            "background-removal API, which fetches it from a temporary link; Freepik's "
            "result links expire after 5 minutes. I keep no copy of your image: only "
            "Telegram's id of each finished cutout (so the same image is never processed "
            "twice), your recent cutouts for inline mode, and counters for the limits."
        ),
    ]
    return "\n\n".join(paragraphs)


# --- cutout studio: the buttons under every cutout --------------------------------------------


def studio_sticker() -> str:
    """Button: the cutout as a sticker."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("🏷 Sticker")


def studio_pack() -> str:
    """Button: the cutout as a sticker in the user's own pack."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("➕ Add to my pack")


def studio_background() -> str:
    """Button: show the background colours."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("🎨 Background")


def studio_crop() -> str:
    """Button: the cutout cropped to its subject."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("✂️ Crop")


def studio_shop() -> str:
    """Button: a marketplace main image (2000 px square, pure white)."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("🛍 Shop photo")


def studio_my_background() -> str:
    """Button: put the cutout on a photo the user sends next."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("🖼 My background")


def studio_more() -> str:
    """Button: show the second keyboard (Shadow, Outline)."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("More ➡️")


def studio_shadow() -> str:
    """Button: the cutout over a soft drop shadow (PNG)."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("🌗 Shadow")


def studio_outline() -> str:
    """Button: a sticker with a white outline around the subject."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("⭕ Outline")


def studio_outline_pack() -> str:
    """Button: the outlined sticker into the user's own pack."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("➕ Outline to my pack")


def studio_back() -> str:
    """Button: from the colours back to the first buttons."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("⬅️ Back")


def palette_labels() -> tuple[str, ...]:
    """The background colour buttons, in keyboard order (colours in bot/studio/actions.py)."""
    # TRANSLATORS: button labels (one per colour), at most 32 characters each.
    return (
        _("⬜ White"),
        _("⬛ Black"),
        _("◻️ Light grey"),
        _("🟥 Red"),
        _("🟧 Orange"),
        _("🟨 Yellow"),
        _("🟩 Green"),
        _("🟦 Blue"),
        _("🩷 Pink"),
    )


def background_ask() -> str:
    """My background in a private chat: the one reply to the press."""
    return _(
        "Send me the photo to put this cutout on, within 10 minutes. /cancel to stop waiting."
    )


def background_ask_group() -> str:
    """My background in a group: the photo must reply to the bot (privacy mode)."""
    return _(
        "Reply to this message with the photo to put this cutout on, within 10 minutes. "
        "/cancel to stop waiting."
    )


def background_ask_again() -> str:
    """First line when My background is pressed while the bot already waits for a photo."""
    return _("You pressed My background again: the photo you send next goes behind this cutout.")


def background_waiting() -> str:
    """A text while My background waits for a photo."""
    return _(
        "I'm waiting for a photo to put your cutout on. Send a photo, or /cancel to stop waiting."
    )


def background_not_a_photo() -> str:
    """A sticker, voice note or other file while My background waits for a photo."""
    return _(
        "That isn't a photo I can put your cutout on. Send a photo, or /cancel to stop waiting."
    )


def background_unusable() -> str:
    """The photo sent for My background cannot be used; the wait goes on."""
    return _(
        "I couldn't use that image as a background: it has to be a photo or image file I can "
        "read, under 20 MB and 25 megapixels. Send another one, or /cancel to stop waiting."
    )


def background_cancelled() -> str:
    """/cancel ended a My background wait."""
    return _("OK, I stopped waiting for a background photo.")


def nothing_to_cancel() -> str:
    """/cancel with nothing going on."""
    return _("There is nothing to cancel.")


def background_timeout() -> str:
    """No photo came for My background in time."""
    return _(
        "No photo came within 10 minutes, so I stopped waiting. Press My background again "
        "when you have one."
    )


def studio_album() -> str:
    """The follow-up message carrying an album's buttons (albums cannot carry them)."""
    return _("Edit these cutouts: each button works on every cutout of the album above.")


def studio_working() -> str:
    """Toast right after a button press."""
    return _("Working…")


def studio_not_yours() -> str:
    """Toast for someone pressing another person's buttons in a group."""
    return _("Only the person who asked for this cutout can use these buttons.")


def studio_invalid() -> str:
    """Toast for button data the bot did not make (forged or from an old version)."""
    return _("This button doesn't work. Send the image again to get fresh buttons.")


def studio_expired() -> str:
    """Toast for buttons whose record is gone."""
    return _("These buttons have expired. Send the image again to get fresh ones.")


def studio_storage_down() -> str:
    """Toast while the storage cannot be reached."""
    return _("I'm temporarily unavailable. Please try again in a minute.")


def studio_too_large() -> str:
    """The cutout is over the Bot API's 20 MB download limit."""
    return _(
        "This cutout is too large to edit here: bots can only download files up to 20 MB. "
        "It was sent as a file, which you can still save and use."
    )


def studio_too_many_pixels() -> str:
    """The cutout is over 25 megapixels."""
    return _("This cutout is over 25 megapixels, too big to edit here.")


def studio_no_subject() -> str:
    """A fully transparent cutout: nothing to trim to."""
    return _(
        "This cutout is completely transparent, so there is nothing to make a sticker of "
        "or crop to."
    )


def studio_unreadable() -> str:
    """The cutout's bytes could not be decoded."""
    return _("I couldn't read this cutout to edit it. Please send the image again.")


def studio_gone() -> str:
    """Telegram no longer hands out the cutout."""
    return _("I couldn't get this cutout from Telegram any more. Please send the image again.")


def studio_busy() -> str:
    """Every image worker is busy and the queue is full."""
    return _("I'm busy editing other images right now. Please press the button again in a minute.")


def studio_wait_for_yours() -> str:
    """A press while the same user's earlier presses are still being made (a toast)."""
    return _("I'm still making your last edits. Press again once they are here.")


def studio_failed() -> str:
    """Something unexpected broke while editing."""
    return _("Something went wrong while editing this cutout. Please try again.")


def studio_partly() -> str:
    """First line of the reply naming album cutouts that could not be edited."""
    return _("Some cutouts of this album could not be edited:")


def studio_item_problem(number: int, reason: str) -> str:
    """One line per album cutout that could not be edited."""
    return _("• Cutout {number}: {reason}").format(number=number, reason=reason)


def pack_full() -> str:
    """The user's pack already holds 120 stickers."""
    return _(
        "Your sticker pack is full: Telegram allows 120 stickers in a pack. Remove some "
        "(in Telegram's sticker settings or with @Stickers), then press the button again."
    )


def pack_title(bot_username: str) -> str:
    """Title of a user's own sticker pack (Telegram allows 64 characters)."""
    return _("My cutouts by @{username}").format(username=bot_username)[:64]


def pack_added(link: str, count: int = 1) -> str:
    """Reply after stickers went into the user's pack."""
    return ngettext(
        "The sticker is in your sticker pack: {link}",
        "{count} stickers are in your sticker pack: {link}",
        count,
    ).format(link=link, count=count)


def pack_created(link: str, count: int = 1) -> str:
    """Reply after the user's pack was made with its first stickers."""
    return ngettext(
        "I made your own sticker pack with this sticker: {link}\nOpen the link to add it.",
        "I made your own sticker pack with {count} stickers: {link}\nOpen the link to add it.",
        count,
    ).format(link=link, count=count)


def pack_needs_start(bot_username: str) -> str:
    """Telegram refuses a pack for a user who never opened a private chat with the bot."""
    return _(
        "Telegram only lets me make a sticker pack for you once you have started a private "
        "chat with me: open @{username}, press Start, then press the button again."
    ).format(username=bot_username)


# --- the bot's profile and command menu (registered per language at start) -----------------


def commands(payments: bool = False) -> list[tuple[str, str]]:
    """The command menu: each command and what it does (/buy and /balance with payments)."""
    menu = [
        ("start", _("What this bot does")),
        ("help", _("What to send, limits and privacy")),
        ("removebg", _("Remove the background (reply to an image, or add a link)")),
        ("nobg", _("Same as /removebg")),
        ("language", _("Change the bot's language")),
        ("cancel", _("Stop waiting for a My background photo")),
    ]
    if payments:
        menu += [
            ("buy", _("Buy credits with Telegram Stars")),
            ("balance", _("Free removals left and your credits")),
        ]
    return [
        *menu,
        ("paysupport", _("Help with payments and refunds")),
        ("privacy", _("What I keep about you")),
        ("forget", _("Delete what I keep about you")),
    ]


def admin_commands() -> list[tuple[str, str]]:
    """Commands only admins see in their menu."""
    return [
        ("stats", _("Admin: today and the last 7 days")),
        ("refund", _("Admin: refund a payment by its charge id")),
    ]


def bot_description() -> str:
    """The text of an empty chat with the bot (at most 512 characters)."""
    return _(
        "I remove the background from images. Send me a photo, an image file or a link to an "
        "image and I'll send it back as a transparent PNG.\n\n"
        "In groups, reply to an image with /removebg. In any chat, type my username and a link "
        "to an image to use me inline."
    )


def bot_short_description() -> str:
    """The bot's profile line (at most 120 characters)."""
    return _("I remove the background from images: send a picture, get a transparent PNG back.")


# --- /language ----------------------------------------------------------------------------------


def language_prompt() -> str:
    """/language: above the keyboard of languages."""
    return _("Choose the language I speak with you:")


def language_set() -> str:
    """After a language was picked, in that language."""
    return _("Done: I'll speak English with you from now on.")


def button_expired() -> str:
    """A button of an old message that no longer does anything."""
    return _("This button no longer works. Send /language again.")


# --- inline mode: results, their titles and buttons ---------------------------------------------


def inline_cutout_title() -> str:
    """Title of a finished cutout among the inline results."""
    return _("Background removed")


def inline_stored_caption() -> str:
    """Caption of the copy uploaded to the storage chat (the user's own chat when none is set)."""
    return _("Background removed (made for inline mode).")


def inline_working_title() -> str:
    """Title of the answer when the job outlives the inline deadline."""
    return _("✂️ Still removing the background…")


def inline_working_text() -> str:
    """Description of the "still working" answer."""
    return _(
        "This image takes a little longer. Keep typing, or send the same query again in a few "
        "seconds, and the cutout will be here."
    )


def inline_no_link_title() -> str:
    """Title when the query holds no link."""
    return _("Type a link to an image")


def inline_no_link_text() -> str:
    """Description when the query holds no link."""
    return _(
        "Type a link to a JPEG or PNG image after my username to get it back without its "
        "background. With nothing after my username you get your recent cutouts."
    )


def inline_not_http_title() -> str:
    """Title when the link is not http(s)."""
    return _("Only http(s) links work")


def inline_not_http_text() -> str:
    """Description when the link is not http(s)."""
    return _("Only http:// and https:// links work. Type a web link to the image.")


def inline_limit_title() -> str:
    """Title when the user is over the rate limit."""
    return _("Limit reached")


def inline_limit_text(wait_text: str) -> str:
    """Explanation when the user is over the rate limit."""
    return _(
        "You've reached your limit for now. You can cut out the next image in {wait}."
    ).format(wait=wait_text)


def inline_credits_title() -> str:
    """Title when the user's free removals and credits are used up."""
    return _("Free removals used up")


def inline_credits_text(wait_text: str, username: str) -> str:
    """Explanation when the user's free removals and credits are used up."""
    return _(
        "You've used your free removals. The next free one comes in {wait}, or open "
        "@{username} to buy credits."
    ).format(wait=wait_text, username=username)


def inline_buy_button() -> str:
    """Button above inline results: opens the private chat on the packs."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("Buy credits in the bot")


def inline_failed_title() -> str:
    """Title of every failure answer."""
    return _("Couldn't remove the background")


def inline_store_failed_text() -> str:
    """The cutout could not be uploaded for inline use."""
    return _("I made the cutout but couldn't prepare it for inline mode. Please try again.")


def inline_start_button() -> str:
    """Button text when the user must start the bot first."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("Start the bot to use inline mode")


def inline_no_recent_button() -> str:
    """Button text for an empty query with no recent cutouts."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("No cutouts yet: open the bot")


def inline_made_ago(seconds: float) -> str:
    """Description of a recent cutout, e.g. `Made 3 minutes ago`."""
    return _("Made {time} ago").format(time=format_wait(seconds))


# --- albums: status and the summary of images that did not come back ----------------------------


def album_working(count: int) -> str:
    """Status shown while the images of an album are being cut out."""
    return ngettext(
        "✂️ Removing the background from {count} image…",
        "✂️ Removing the background from {count} images…",
        count,
    ).format(count=count)


def album_summary_header(ok: int, total: int) -> str:
    """First line of the reply naming the images that did not come back."""
    if ok:
        return ngettext(
            "Cut out {ok} of {total} image. These didn't work:",
            "Cut out {ok} of {total} images. These didn't work:",
            total,
        ).format(ok=ok, total=total)
    return ngettext(
        "I couldn't cut out {total} image:",
        "I couldn't cut out any of these {total} images:",
        total,
    ).format(total=total)


def album_limited_reason(count: int, wait_text: str, scope: str = "user") -> str:
    """Why images over the rate limit were skipped, and when to resend them."""
    if scope == "budget":
        return ngettext(
            "today's capacity is used up; send it again after 00:00 UTC",
            "today's capacity is used up; send them again after 00:00 UTC",
            count,
        )
    if scope == "credits":
        return ngettext(
            "your free removals and credits ran out; the next free one comes in {wait}, or "
            "send /buy and then send it again",
            "your free removals and credits ran out; the next free one comes in {wait}, or "
            "send /buy and then send them again",
            count,
        ).format(wait=wait_text)
    return ngettext(
        "you've reached your limit for now; you can send it again in {wait}",
        "you've reached your limit for now; you can send them again in {wait}",
        count,
    ).format(wait=wait_text)


def album_credits_missing(missing: int) -> str:
    """An album needs more credits than the user has: nothing was processed; above the packs."""
    return ngettext(
        "This album needs {count} more credit than you have, so I haven't processed any of it. "
        "Buy credits and send the album again:",
        "This album needs {count} more credits than you have, so I haven't processed any of "
        "it. Buy credits and send the album again:",
        missing,
    ).format(count=missing)


def album_problem_reason(problem: str) -> str:
    """Short form of a single-image explanation, for one line per image in the summary."""
    reasons = {
        not_an_image(): _("it isn't an image (send photos, or JPEG or PNG files)"),
        input_too_large(): _("it's over Telegram's 20 MB limit for bots"),
        not_http(): _("only http:// and https:// links work"),
    }
    return reasons.get(problem, problem)


def album_outcome_reason(outcome: str) -> str:
    """Short reason an image failed, by the job's outcome (`Outcome` value), for the summary."""
    # Keyed by the values of bot.requests.outcomes.Outcome (a StrEnum): i18n sits below requests.
    reasons = {
        "input_too_large": _("it's over Telegram's 20 MB limit for bots"),
        "source_unavailable": _("I couldn't get it from Telegram; please send it again"),
        "rejected": _("I couldn't read it (JPEG or PNG up to 20 MB work)"),
        "bad_key": _("the background-removal service is misconfigured right now"),
        "busy": _("the background-removal service is busy; try again in a few minutes"),
        "unavailable": _("the background-removal service is unavailable; try again later"),
        "result_too_large": _("the cutout is larger than Telegram's 50 MB limit"),
        "undeliverable": _("I made the cutout but couldn't send it to you; please try again"),
        "aborted": _("the bot restarted before it was done; please send it again"),
        "timed_out": _("it took too long to process; please try again later"),
        "internal_error": _("something went wrong on my side; please try again"),
        "storage_down": _("I'm temporarily unavailable; please try again in a minute"),
        "out_of_capacity": _("the background-removal service is out of capacity for now"),
        "misconfigured": _("the background-removal service is misconfigured right now"),
        "budget_spent": _("today's capacity is used up; please try again after 00:00 UTC"),
    }
    return reasons.get(outcome, reasons["internal_error"])


def album_image_names(numbers: Sequence[int]) -> str:
    """`Image 3`, `Images 2 and 5`, `Images 1, 2 and 4`."""
    listed = join_list([str(n) for n in numbers])
    return ngettext("Image {numbers}", "Images {numbers}", len(numbers)).format(numbers=listed)


def album_summary_line(names: str, reason: str) -> str:
    """One line of the summary: the images and what went wrong with them."""
    return _("• {images}: {reason}.").format(images=names, reason=reason)


# --- Telegram Stars: credits, payments, support -------------------------------------------------


def credits_count(count: int) -> str:
    """`1 credit`, `10 credits` (a credit is one background removal)."""
    return ngettext("{count} credit", "{count} credits", count).format(count=count)


def stars_count(count: int) -> str:
    """`1 Star`, `25 Stars` (Telegram Stars)."""
    return ngettext("{count} Star", "{count} Stars", count).format(count=count)


def buy_intro() -> str:
    """/buy: above the buttons of packs."""
    return _(
        "One credit is one background removal. A credit is only used when a new image is "
        "processed, and comes back if that fails. Pick a pack:"
    )


def out_of_removals(wait_text: str, kept: bool = False) -> str:
    """A photo past the free allowance with no credits left: above the buttons of packs."""
    if kept:
        return _(
            "You've used your free removals. The next free one comes in {wait}, or buy "
            "credits: I'll cut out this image as soon as the payment arrives."
        ).format(wait=wait_text)
    return _(
        "You've used your free removals. The next free one comes in {wait}, or buy credits "
        "and send the image again:"
    ).format(wait=wait_text)


def kept_gone() -> str:
    """The image kept until the payment can no longer be fetched."""
    return _(
        "I couldn't get the image you sent before paying any more, so no credit was used for "
        "it. Please send it again."
    )


def pack_button(credits: int, stars: int) -> str:
    """Button: one pack (at most 32 characters)."""
    # TRANSLATORS: button label, at most 32 characters; e.g. "10 credits · 25 ⭐".
    return _("{credits} · {stars} ⭐").format(credits=credits_count(credits), stars=stars)


def invoice_description(credits: int) -> str:
    """The invoice's description (at most 255 characters)."""
    return _("{credits} for background removals: each new image uses one.").format(
        credits=credits_count(credits)
    )


def buy_in_private(username: str) -> str:
    """/buy or /balance in a group."""
    return _("Payments work in a private chat: open @{username} and send /buy there.").format(
        username=username
    )


def open_private_chat_button() -> str:
    """Button under /buy in a group: opens the private chat with the packs."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("Buy in a private chat")


def pack_gone() -> str:
    """Toast: a pack button of an offer that changed."""
    return _("This pack is no longer on sale. Send /buy to see the current ones.")


def checkout_refused(problem: str) -> str:
    """Why a payment is refused at checkout (Telegram shows it to the payer)."""
    if problem == "payments_off":
        return _("Payments are switched off right now. Nothing was charged.")
    if problem == "not_buyer":
        return _("This invoice was made for someone else. Send /buy to get your own.")
    return _("This offer has changed. Send /buy to see the current packs. Nothing was charged.")


def payment_received(credits: int, balance: int, kept: bool = False) -> str:
    """After a successful payment (`kept`: the image that ran out is being processed now)."""
    text = _("Thank you! {credits} added. Your credits: {balance}.").format(
        credits=credits_count(credits), balance=balance
    )
    if kept:
        text += "\n" + _("Now cutting out the image you sent before paying…")
    return text


def payment_not_recorded(charge_id: str) -> str:
    """A payment arrived but the storage could not record it."""
    return _(
        "Your payment arrived, but I couldn't record it just now. Your Stars are safe: send "
        "/paysupport and give this code: {code}"
    ).format(code=charge_id)


def payment_refunded(stars: int, balance: int) -> str:
    """A payment was refunded (by an admin or by Telegram)."""
    return _(
        "{stars} went back to you, and the unspent credits of that purchase were removed. "
        "Your credits: {balance}."
    ).format(stars=stars_count(stars), balance=balance)


def balance_text(
    free_left: int | None, free_wait: str | None, credits: int, admin: bool = False
) -> str:
    """/balance: free removals left, when the next comes back, and credits."""
    if admin:
        return _("You're an admin: nothing is counted for you.")
    lines = []
    if free_left is None:
        lines.append(_("Your removals are free: there is no limit."))
    else:
        lines.append(_("Free removals left: {count}").format(count=free_left))
        if free_left == 0 and free_wait:
            lines.append(_("The next free one comes back in {wait}.").format(wait=free_wait))
    lines.append(_("Your credits: {count}").format(count=credits))
    lines.append(_("Send /buy for more credits."))
    return "\n".join(lines)


def paysupport_default() -> str:
    """/paysupport when PAYSUPPORT_TEXT is not set."""
    return _(
        "Payments are in Telegram Stars. A credit is used only when a new image is sent to "
        "the background-removal service, and it comes back by itself if that fails. Unspent "
        "credits of a purchase can be refunded: write to the bot's operator (see the bot's "
        "profile) with the transaction ID from your Stars history (Settings → My Stars). A "
        "refund gives you the Stars back and removes that purchase's credits."
    )


def privacy_text(privacy_url: str, studio_ttl: float) -> str:
    """/privacy: what is kept, for how long, who gets the image (HTML; `studio_ttl` seconds)."""
    paragraphs = [
        _("<b>What I keep about you</b>"),
        # TRANSLATORS: {period} is how long the button records are kept, e.g. "30 days".
        _(
            "• your Telegram user id and, if you picked one, your language (a year);\n"
            "• Telegram's ids of your recent cutouts, for inline mode (90 days);\n"
            "• the records behind the buttons under your cutouts ({period});\n"
            "• counters for the limits (they expire with their window);\n"
            "• a request until it is answered;\n"
            "• if you pay: a ledger of your payments and credits."
        ).format(period=format_period(studio_ttl))
        + "\n"
        + _(
            "• the image you sent when your free removals ran out (Telegram's id of it and "
            "where to reply), until you pay or for a day at most."
        )
        + "\n"
        + _(
            "• while I wait for your photo after you press My background: the chat, your user "
            "id and language, which cutouts and until when (10 minutes at most; /cancel ends "
            "it sooner)."
        ),
        _(
            "To remove a background, your image is sent to Freepik's background-removal API, "
            "which fetches it from a temporary link. I keep no copy of your image; finished "
            "cutouts are remembered by Telegram's file id so the same image is never "
            "processed twice."
        ),
        _(
            "/forget deletes everything I keep about you except the payment ledger, which is "
            "kept for refunds and disputes."
        ),
    ]
    if privacy_url:
        paragraphs.append(
            _('Privacy policy: <a href="{url}">{url}</a>').format(url=escape(privacy_url))
        )
    return "\n\n".join(paragraphs)


def forget_prompt() -> str:
    """/forget: above the confirm button."""
    return _(
        "Delete your language choice, recent cutouts, button records, an image kept until a "
        "payment and a wait for a My background photo? The payment ledger stays (it is kept for "
        "refunds and disputes)."
    )


def forget_yes() -> str:
    """Button: confirm /forget."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("🗑 Yes, delete")


def forget_no() -> str:
    """Button: cancel /forget."""
    # TRANSLATORS: button label, at most 32 characters.
    return _("Cancel")


def forget_done() -> str:
    """After /forget deleted the user's records."""
    return _("Done: I deleted what I kept about you (the payment ledger stays).")


def forget_cancelled() -> str:
    """/forget cancelled."""
    return _("Nothing was deleted.")


def not_your_button() -> str:
    """Toast: someone pressed another user's button."""
    return _("This button is for someone else.")


def refund_usage() -> str:
    """Admin: /refund without a charge id."""
    return _("Usage: /refund CHARGE_ID, the telegram_payment_charge_id of the payment.")


def refund_unknown() -> str:
    """Admin: no payment with that charge id."""
    return _("No payment with this charge id is on record.")


def refund_already() -> str:
    """Admin: the payment was refunded before."""
    return _("This payment was already refunded.")


def refund_spent(balance: int, credits: int) -> str:
    """Admin: the user spent some of the payment's credits."""
    return _(
        "Refused: the buyer has spent some of these credits (they have {balance} of the "
        "{credits} bought)."
    ).format(balance=balance, credits=credits)


def refund_refused_by_telegram(reason: str) -> str:
    """Admin: refundStarPayment failed."""
    return _("Telegram refused the refund: {reason}").format(reason=reason)


def refund_done(stars: int, user_id: int, removed: int, balance: int) -> str:
    """Admin: the refund went through."""
    return _(
        "Refunded {stars} to user {user}; {credits} removed, they have {balance} left."
    ).format(
        stars=stars_count(stars), user=user_id, credits=credits_count(removed), balance=balance
    )


def stats_text(rows: list[tuple[str, str, str]]) -> str:
    """Admin /stats: label, today, last 7 days per line."""
    head = _("Today / last 7 days (UTC):")
    lines = [f"{label}: {today} / {week}" for label, today, week in rows]
    return "\n".join([head, *lines])


def stats_labels() -> dict[str, str]:
    """The row labels of /stats."""
    return {
        "buyers": _("Buyers"),
        "purchases": _("Purchases"),
        "stars": _("Stars received"),
        "sold": _("Credits sold"),
        "spent": _("Credits spent"),
        "returned": _("Credits returned after failures"),
        "refunds": _("Refunds"),
        "spenders": _("Users who spent credits"),
    }


def stats_process(counts: dict[str, int], budget_left: int | None) -> str:
    """Admin /stats: this process's counters since it started, and today's budget."""
    lines = [
        _("Since this process started:"),
        _("Removals: {count}").format(count=counts.get("done", 0)),
        _("Freepik calls: {count}").format(count=counts.get("freepik", 0)),
        _("Cache hits: {count}").format(count=counts.get("hit", 0)),
        _("Refusals: {count}").format(count=counts.get("refused", 0)),
    ]
    if budget_left is not None:
        lines.append(_("Freepik calls left today: {count}").format(count=budget_left))
    return "\n".join(lines)
