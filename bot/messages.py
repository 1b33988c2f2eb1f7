"""Every text the bot shows to users, in one place."""

from __future__ import annotations

from html import escape

WORKING = "✂️ Removing the background…"
NOT_AN_IMAGE = (
    "I can only cut out images. Send a photo, an image file (JPEG, PNG or WebP) "
    "or a link to an image."
)
INPUT_TOO_LARGE = (
    "This file is too big: Telegram lets bots download files up to 20 MB. "
    "Please send a smaller image."
)
SOURCE_UNAVAILABLE = "I couldn't get this file from Telegram. Please send it again."
NO_LINK = (
    "Send me a photo, an image file or a link to an image and I'll send it back "
    "with the background removed. /help has the details."
)
NOT_HTTP = "Only http:// and https:// links work. Please send a web link to the image."
IMAGE_REJECTED = (
    "Sorry, I couldn't read this image. Send a JPEG or PNG photo up to 20 MB "
    "(or a direct link to one)."
)
MISCONFIGURED = (
    "Sorry, the background-removal service is misconfigured right now. "
    "The operator has been notified; please try again later."
)
BUSY = "The background-removal service is busy right now. Please try again in a few minutes."
UNAVAILABLE = "The background-removal service is unavailable right now. Please try again later."
RESULT_TOO_LARGE = "The cutout is larger than Telegram's 50 MB limit. Try a smaller image."
UNDELIVERABLE = "I made the cutout but couldn't send it to you. Please try again."
ABORTED = "The bot is restarting and couldn't finish this image. Please send it again in a minute."
INTERNAL_ERROR = "Something went wrong on my side. Please try again."
TEMPORARILY_UNAVAILABLE = (
    "I'm temporarily unavailable (my storage can't be reached). Please try again in a minute."
)
DONE_CAPTION = "Background removed."
REMOVEBG_USAGE = (
    "Reply to a photo or image file with /removebg, write /removebg <link>, "
    "or send a photo with /removebg as its caption."
)
INLINE_START_PARAMETER = "inline"
INLINE_HELP = (
    "<b>Inline mode</b>\n\n"
    "In any chat, type my username followed by a link to an image, e.g.\n"
    "<code>@{username} https://example.com/cat.jpg</code>\n"
    "and pick the cutout to send it there. With nothing after my username you get your "
    "recent cutouts. Inline results are uploaded to this chat first, so keep it open "
    "(don't block me)."
)


def queued(position: int) -> str:
    """Status shown while a job waits for a free slot."""
    ahead = position - 1
    if ahead <= 0:
        return "⏳ You're next in line; I'll start in a moment…"
    return f"⏳ Queued: {ahead} image{'s' if ahead != 1 else ''} ahead of yours. Hang on…"


def rate_limited(wait_text: str, scope: str = "user") -> str:
    """Reply when the user (or, in a group, the chat) is over its limit."""
    if scope == "chat":
        return (
            f"This chat has reached its limit for now. The next image can be sent in {wait_text}."
        )
    return f"You've reached your limit for now. You can send your next image in {wait_text}."


def describe_limits(rate_limit: str) -> str:
    """Human wording of a `limits` string such as `5/minute;50/day`."""
    if not rate_limit:
        return "There is no limit on how many images you can send."
    parts = []
    for raw in rate_limit.split(";"):
        amount, _, period = raw.strip().partition("/")
        parts.append(f"{amount.strip()} per {period.strip()}")
    return "You can send up to " + ", and ".join(parts) + " images."


def help_text(rate_limit: str, username: str) -> str:
    """The /start and /help text (HTML)."""
    return (
        "<b>I remove the background from images.</b>\n\n"
        "Send me:\n"
        "• a <b>photo</b> (or an album of photos),\n"
        "• an <b>image file</b> (JPEG, PNG or WebP, up to 20 MB), or\n"
        "• a <b>link</b> to an image (http or https).\n\n"
        "I'll reply with a transparent PNG as a file, so the transparency is kept.\n\n"
        "<b>In groups:</b> reply to a photo or image file with /removebg (or /nobg), "
        "write <code>/removebg &lt;link&gt;</code>, or send a photo with /removebg as "
        "its caption.\n"
        f"<b>In any chat:</b> type <code>@{escape(username)} &lt;link&gt;</code> to "
        "send a cutout there; with nothing after my name you get your recent cutouts.\n\n"
        f"<b>Limits:</b> {escape(describe_limits(rate_limit))} "
        "Images I have already cut out come back at once and don't count.\n\n"
        "<b>Privacy:</b> to do the work, your image is sent to Freepik's "
        "background-removal API, which fetches it from a temporary link; Freepik's "
        "result links expire after 5 minutes. I keep no copy of your image: only "
        "Telegram's id of each finished cutout (so the same image is never processed "
        "twice), your recent cutouts for inline mode, and counters for the limits."
    )
