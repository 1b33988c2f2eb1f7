"""Logging set-up that never lets a secret through."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

# Chatty libraries: httpx logs every request URL at INFO, and Telegram URLs carry the token.
_QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "aiolimiter")


class RedactingFormatter(logging.Formatter):
    """Formats records, then masks every known secret in the result (tracebacks included)."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        """Format `record` with secrets replaced by `***`."""
        return redact(super().format(record), self._secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in `text` with `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    """Send logs to stderr through the redacting formatter; quiet the URL-logging libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
