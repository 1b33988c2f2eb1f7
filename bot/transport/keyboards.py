"""Inline keyboards: the studio's buttons under every cutout (labels in the current locale)."""

from __future__ import annotations

from collections.abc import Callable

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import messages
from bot.studio.actions import Action, Keyboard, colour_code
from bot.studio.callback import callback_data


def main_keyboard(token: str) -> InlineKeyboardMarkup:
    """Sticker, Add to my pack, Background and Crop (in the current locale)."""
    return InlineKeyboardMarkup(
        [
            [
                _button(messages.studio_sticker(), Action.STICKER, token),
                _button(messages.studio_pack(), Action.PACK, token),
            ],
            [
                _button(messages.studio_background(), Action.PALETTE, token),
                _button(messages.studio_crop(), Action.CROP, token),
            ],
        ]
    )


def palette_keyboard(token: str) -> InlineKeyboardMarkup:
    """The background colours, three a row, and Back."""
    buttons = [
        _button(label, colour_code(index), token)
        for index, label in enumerate(messages.palette_labels())
    ]
    rows = [buttons[start : start + 3] for start in range(0, len(buttons), 3)]
    rows.append([_button(messages.studio_back(), Action.BACK, token)])
    return InlineKeyboardMarkup(rows)


# What a `Delivery.KEYBOARD` action switches to.
KEYBOARDS: dict[Keyboard, Callable[[str], InlineKeyboardMarkup]] = {
    Keyboard.MAIN: main_keyboard,
    Keyboard.PALETTE: palette_keyboard,
}


def _button(label: str, action: str, token: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=callback_data(action, token))


# A pack button's callback data: `buy:<credits>:<stars>` (the invoice is made on press).
BUY_PREFIX = "buy:"


def packs_keyboard(packs: list[tuple[int, int]]) -> InlineKeyboardMarkup:
    """One button per pack (credits, Stars)."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    messages.pack_button(credits, stars),
                    callback_data=f"{BUY_PREFIX}{credits}:{stars}",
                )
            ]
            for credits, stars in packs
        ]
    )
