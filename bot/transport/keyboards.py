"""Inline keyboards: the studio's buttons under every cutout (labels in the current locale)."""

from __future__ import annotations

from collections.abc import Callable

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import messages
from bot.studio.actions import Action, Keyboard, colour_code
from bot.studio.callback import callback_data


def main_keyboard(token: str) -> InlineKeyboardMarkup:
    """The first buttons under a cutout: four rows, the last one opening `more_keyboard`."""
    return InlineKeyboardMarkup(
        [
            [
                _button(messages.studio_sticker(), Action.STICKER, token),
                _button(messages.studio_pack(), Action.PACK, token),
            ],
            [
                _button(messages.studio_background(), Action.PALETTE, token),
                _button(messages.studio_my_background(), Action.MY_BACKGROUND, token),
            ],
            [
                _button(messages.studio_shop(), Action.SHOP, token),
                _button(messages.studio_crop(), Action.CROP, token),
            ],
            [_button(messages.studio_more(), Action.MORE, token)],
        ]
    )


def more_keyboard(token: str) -> InlineKeyboardMarkup:
    """Shadow, Outline, the outlined sticker into the pack, and Back."""
    return InlineKeyboardMarkup(
        [
            [
                _button(messages.studio_shadow(), Action.SHADOW, token),
                _button(messages.studio_outline(), Action.OUTLINE, token),
            ],
            [_button(messages.studio_outline_pack(), Action.OUTLINE_PACK, token)],
            [_button(messages.studio_back(), Action.BACK, token)],
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
    Keyboard.MORE: more_keyboard,
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
