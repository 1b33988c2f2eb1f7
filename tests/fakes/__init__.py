"""Fakes of the external services (Telegram Bot API, Freepik) served over real local HTTP."""

from tests.fakes.freepik import FakeFreepik, FreepikCall
from tests.fakes.images import make_image
from tests.fakes.server import ThreadedServer
from tests.fakes.telegram import FakeTelegram, TgCall, UploadedFile

__all__ = [
    "FakeFreepik",
    "FakeTelegram",
    "FreepikCall",
    "TgCall",
    "ThreadedServer",
    "UploadedFile",
    "make_image",
]
