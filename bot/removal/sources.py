"""What a user asked to cut out, and how an image becomes a URL Freepik can fetch."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlsplit

# Telegram refuses getFile above 20 MB, and Freepik takes inputs up to 20 MB.
MAX_INPUT_BYTES = 20_000_000
# Freepik's inputs: JPEG and PNG. Anything else would be a paid call for a refusal.
ACCEPTED_MIME_TYPES = frozenset({"image/jpeg", "image/png"})
# Relay links convert these to PNG before Freepik sees them.
RELAY_MIME_TYPES = ACCEPTED_MIME_TYPES | {
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/x-ms-bmp",
    "image/tiff",
    "image/heic",
    "image/heif",
}

# What a file's name says it is, for documents Telegram gives no useful MIME type.
_IMAGE_EXTENSION_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
}


def accepted_mime_types(photo_url_mode: str) -> frozenset[str]:
    """The image files the bot takes in a given `PHOTO_URL_MODE`."""
    return RELAY_MIME_TYPES if photo_url_mode == "relay" else ACCEPTED_MIME_TYPES


def image_type_from_name(file_name: str) -> str | None:
    """The image MIME type a file name's extension stands for, or None."""
    name = file_name.lower()
    return next((t for ext, t in _IMAGE_EXTENSION_TYPES.items() if name.endswith(ext)), None)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


class SourceKind(StrEnum):
    """How the image reached the bot."""

    PHOTO = "photo"
    DOCUMENT = "document"
    LINK = "link"


@dataclass(frozen=True, slots=True)
class ImageSource:
    """One image to process: a Telegram file or a public link."""

    kind: SourceKind
    file_id: str | None = None
    file_unique_id: str | None = None
    url: str | None = None
    file_name: str | None = None
    file_size: int | None = None

    @classmethod
    def telegram_file(
        cls,
        kind: SourceKind,
        file_id: str,
        file_unique_id: str,
        *,
        file_name: str | None = None,
        file_size: int | None = None,
    ) -> ImageSource:
        """A photo or document stored on Telegram."""
        return cls(kind, file_id, file_unique_id, None, file_name, file_size)

    @classmethod
    def link(cls, url: str) -> ImageSource:
        """A public http(s) link."""
        return cls(SourceKind.LINK, url=url)

    @property
    def key(self) -> str:
        """A stable identity of the image: Telegram's unique id, or the link itself."""
        if self.file_unique_id:
            return f"tg:{self.file_unique_id}"
        return f"url:{self.url}"

    def result_file_name(self) -> str:
        """`<original name>-nobg.png`, or `cutout-<id>.png` when there is no usable name."""
        stem = ""
        if self.file_name:
            stem = PurePosixPath(self.file_name).stem
        elif self.url:
            stem = PurePosixPath(unquote(urlsplit(self.url).path)).stem
        stem = _SAFE_NAME.sub("", stem).strip(" .")[:60]
        if stem:
            return f"{stem}-nobg.png"
        short = self.file_unique_id or hashlib.sha256(self.key.encode()).hexdigest()[:12]
        return f"cutout-{short}.png"


class SourceTooLarge(Exception):
    """Telegram will not hand out files of this size to bots."""


class SourceUnavailable(Exception):
    """Telegram could not give us the file (deleted, invalid id, ...)."""


class PublicUrlProvider(Protocol):
    """Turns an image source into an http(s) URL that Freepik can download."""

    async def public_url(self, source: ImageSource) -> str:
        """Return a URL for `source`; raise `SourceTooLarge` or `SourceUnavailable`."""
        ...


def telegram_file_id(source: ImageSource) -> str:
    """The file id of a Telegram source, after the checks every provider makes."""
    if source.file_id is None:
        raise SourceUnavailable("source has neither a link nor a file id")
    if source.file_size is not None and source.file_size > MAX_INPUT_BYTES:
        raise SourceTooLarge(f"{source.file_size} bytes")
    return source.file_id


class TelegramFiles(Protocol):
    """Telegram's `getFile`, as the removal needs it (bot.transport.files implements it)."""

    async def file_path(self, file_id: str) -> str | None:
        """The file's download URL, with the bot token in it: never log it.

        None when Telegram named no path; raises `SourceTooLarge` or `SourceUnavailable`.
        """
        ...


class TelegramFileLinks:
    """Uses Telegram's own file link. It embeds the bot token: never log what it returns."""

    def __init__(self, files: TelegramFiles) -> None:
        self._files = files

    async def public_url(self, source: ImageSource) -> str:
        """Links pass through; Telegram files become `{root}/file/bot<token>/<path>`."""
        if source.url:
            return source.url
        file_path = await self._files.file_path(telegram_file_id(source))
        if not file_path:
            raise SourceUnavailable("getFile returned no file_path")
        return file_path


class NotHttpLink(ValueError):
    """The link uses a scheme other than http or https."""


class MalformedLink(NotHttpLink):
    """The text looks like a link but is no valid URL (bad IPv6 literal, port, host...)."""


_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def normalise_link(raw: str) -> str:
    """Return an absolute http(s) URL for `raw` (scheme-less links get http://, as clients do)."""
    text = raw.strip()
    if not _SCHEME_RE.match(text):
        if text.lower().startswith(("mailto:", "tel:", "data:", "javascript:", "file:")):
            raise NotHttpLink(text.partition(":")[0])
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises on a port that is not a number or out of range
    except ValueError as err:
        # urlsplit refuses bracketed hosts that are no IP, NFKC look-alikes of / ? # @ :...
        raise MalformedLink("malformed link") from err
    if parts.scheme.lower() not in ("http", "https"):
        raise NotHttpLink(parts.scheme)
    if not parts.hostname:
        raise NotHttpLink("no host")
    return parts._replace(scheme=parts.scheme.lower(), fragment="").geturl()


def find_scheme_link(text: str) -> str | None:
    """A `scheme://...` token in plain text that Telegram did not mark as a link."""
    match = re.search(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+", text)
    return match.group(0) if match else None
