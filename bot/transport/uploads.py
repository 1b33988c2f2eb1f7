"""How a cutout's bytes are handed to python-telegram-bot for upload."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import IO, Any, cast

from telegram import InputFile

from bot.removal.pipeline import Cutout


class PiecesReader(io.RawIOBase):
    """A read-only file over pieces of bytes, never joined (that would copy them all).

    `bot.app.telegram_request` writes `pieces` straight to the socket; anything else reads it
    as a file, a copy of each piece read.
    """

    def __init__(self, pieces: Sequence[bytes]) -> None:
        super().__init__()
        self.pieces = tuple(pieces)
        self._size = sum(len(piece) for piece in self.pieces)
        self._position = 0

    def readable(self) -> bool:
        """Always."""
        return True

    def seekable(self) -> bool:
        """Always."""
        return True

    def tell(self) -> int:
        """The read position."""
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the read position, as files do."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        """Copy the next bytes into `buffer`; 0 at the end."""
        target = memoryview(buffer).cast("B")
        filled = 0
        start = 0  # where the current piece begins in the whole
        for piece in self.pieces:
            end = start + len(piece)
            if filled < len(target) and end > self._position:
                skip = self._position - start
                count = min(len(piece) - skip, len(target) - filled)
                target[filled : filled + count] = piece[skip : skip + count]
                filled += count
                self._position += count
            start = end
        return filled


def upload_file(cutout: Cutout, *, attach: bool = False) -> InputFile:
    """The cutout as an upload written from its downloaded pieces, without joining them."""
    # Any binary file object will do for python-telegram-bot; typeshed's IO is a protocol of
    # its own that io.RawIOBase does not declare.
    return InputFile(
        cast("IO[bytes]", PiecesReader(cutout.pieces)),
        filename=cutout.file_name,
        attach=attach,
        read_file_handle=False,
    )
