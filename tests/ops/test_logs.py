"""Logging set-up: secrets are masked everywhere, URL-logging libraries are quiet."""

from __future__ import annotations

import io
import logging

from bot.ops.logs import RedactingFormatter, configure_logging

TOKEN = "123456:AAH-secret_token_value_0123456789ab"


def test_formatter_masks_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(message)s", [TOKEN, "fpk-key"]))
    log = logging.getLogger("tests.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("calling https://api.telegram.org/bot%s/getMe with %s", TOKEN, "fpk-key")
        try:
            raise RuntimeError(f"failed for https://x/file/bot{TOKEN}/photo.jpg")
        except RuntimeError:
            log.exception("boom")
    finally:
        log.removeHandler(handler)
    output = stream.getvalue()
    assert TOKEN not in output
    assert "fpk-key" not in output
    assert "bot***/getMe with ***" in output
    assert "file/bot***/photo.jpg" in output


def test_configure_logging_quiets_httpx() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("DEBUG", [TOKEN])
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
        assert root.level == logging.DEBUG
        assert isinstance(root.handlers[0].formatter, RedactingFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("httpx").setLevel(logging.NOTSET)
        logging.getLogger("httpcore").setLevel(logging.NOTSET)
