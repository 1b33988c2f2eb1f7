"""Callback data of the studio's buttons: `<version>.<action>.<token>`, and the tokens."""

from __future__ import annotations

import re
import secrets

from bot.studio.actions import ACTIONS, StudioAction

# Callback data: "<version>.<action>.<token>", well under Telegram's 64 bytes.
CALLBACK_VERSION = "s1"
TOKEN_BYTES = 9  # -> 12 URL-safe characters
_TOKEN = re.compile(r"[A-Za-z0-9_-]{12}")


def callback_data(action: str, token: str) -> str:
    """The data of one button."""
    return f"{CALLBACK_VERSION}.{action}.{token}"


def parse_callback(data: str | None) -> tuple[StudioAction, str] | None:
    """(action, token) of data this bot made, or None for anything else."""
    if not data:
        return None
    parts = data.split(".")
    if len(parts) != 3 or parts[0] != CALLBACK_VERSION:
        return None
    _version, code, token = parts
    action = ACTIONS.get(code)
    if action is None or not _TOKEN.fullmatch(token):
        return None
    return action, token


def new_token() -> str:
    """A fresh storage token for one keyboard."""
    return secrets.token_urlsafe(TOKEN_BYTES)
