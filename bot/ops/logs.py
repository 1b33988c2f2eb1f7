"""Logging set-up that never lets a secret through."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

# Chatty libraries: httpx logs every request URL at INFO, and Telegram URLs carry the token.
_QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "aiolimiter", "uvicorn.access")


class RedactingFormatter(logging.Formatter):
    """Formats records, then masks every known secret in the result (tracebacks included)."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        """Format `record` with secrets replaced by `***`."""
        return redact(super().format(record), self._secrets)


class JsonFormatter(RedactingFormatter):
    """One JSON object per line, for log shippers; secrets masked before encoding."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("%(message)s", secrets)

    def format(self, record: logging.LogRecord) -> str:
        """Format `record` as a JSON line."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), self._secrets),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info), self._secrets)
        return json.dumps(entry, ensure_ascii=False)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in `text` with `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def configure_logging(level: str, secrets: Iterable[str], *, json_format: bool = False) -> None:
    """Send logs to stderr through the redacting formatter; quiet the URL-logging libraries."""
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if json_format:
        formatter = JsonFormatter(secrets)
    else:
        formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
