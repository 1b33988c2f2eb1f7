"""How a cutout's bytes are handed to python-telegram-bot for upload."""

from __future__ import annotations

import io

from telegram import InputFile

from bot.removal.pipeline import Cutout


def upload_file(cutout: Cutout, *, attach: bool = False) -> InputFile:
    """The cutout as an upload that httpx streams in 64 KiB pieces."""
    # Given bytes, httpx writes the whole PNG as one piece: h11 joins it into a second copy
    # and asyncio buffers what the socket does not take at once in a third, shifting it
    # forward after every send. A file handle is read and written a chunk at a time; the
    # BytesIO shares the bytes object rather than copying it.
    return InputFile(
        io.BytesIO(cutout.data), filename=cutout.file_name, attach=attach, read_file_handle=False
    )
