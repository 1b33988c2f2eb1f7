"""What each studio button does: the action table.

A row says how a press's result is made (an image function from `bot.imaging.edits`, run in the
CPU pool) and how it reaches the user (a sticker, a document, the user's pack, or another
keyboard). Adding an action is a row here, a button in `bot/transport/keyboards.py` and its label
in `bot/i18n/messages.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from bot.imaging import edits as imaging

RGB = tuple[int, int, int]
# Keyboard order; the labels are in messages.palette_labels(), the same order.
PALETTE: tuple[tuple[str, RGB], ...] = (
    ("white", (255, 255, 255)),
    ("black", (0, 0, 0)),
    ("lightgrey", (235, 235, 235)),
    ("red", (229, 57, 53)),
    ("orange", (251, 140, 0)),
    ("yellow", (253, 216, 53)),
    ("green", (67, 160, 71)),
    ("blue", (30, 136, 229)),
    ("pink", (244, 143, 177)),
)


class Action(StrEnum):
    """What a button does (its code in callback data); colours are `colour_code(index)`."""

    STICKER = "st"
    PACK = "pk"
    PALETTE = "bg"
    BACK = "bk"
    CROP = "cp"
    MORE = "mo"
    SHOP = "sh"
    SHADOW = "sd"
    OUTLINE = "ol"
    OUTLINE_PACK = "op"
    MY_BACKGROUND = "mb"


class Delivery(StrEnum):
    """How a press's results reach the user."""

    STICKER = "sticker"  # one sticker per cutout
    DOCUMENT = "document"  # one file per cutout (an album of up to 10 at a time)
    PACK = "pack"  # stickers added to the owner's own pack, then one message with its link
    KEYBOARD = "keyboard"  # no result: the message's buttons become another keyboard
    # No result yet: the press asks for a photo (bot/studio/waits.py); the photo that answers
    # it gets one document per cutout.
    ASK = "ask"


class Keyboard(StrEnum):
    """The keyboards a cutout's message can show (built in bot/transport/keyboards.py)."""

    MAIN = "main"
    PALETTE = "palette"
    MORE = "more"


@dataclass(frozen=True, slots=True)
class StudioAction:
    """One button: its callback code, its name in logs and metrics, what it makes and sends."""

    code: str
    name: str
    delivery: Delivery
    # The cached result's kind (`studio:<kind>:<file_unique_id>`): one kind, one result.
    kind: str = ""
    # A plain function of `bot.imaging.edits` (bytes in, bytes out), run in the CPU pool.
    function: Callable[..., bytes] | None = None
    args: tuple[Any, ...] = ()
    # The result's file name ends so: `-crop.png` -> `photo-crop.png`.
    suffix: str = ""
    # For `Delivery.KEYBOARD`: the keyboard the press switches to.
    keyboard: Keyboard = Keyboard.MAIN
    # The keyboard the pressed message shows once the result is out (None: it stays as it is).
    then: Keyboard | None = None

    @property
    def sends(self) -> Delivery:
        """How the results go out (an asking action's, once its photo came: documents)."""
        return Delivery.DOCUMENT if self.delivery is Delivery.ASK else self.delivery

    def file_name(self, cutout_name: str) -> str:
        """The result's file name, from the cutout's (`photo-nobg.png` -> `photo-crop.png`)."""
        if self.suffix == ".webp":
            return "sticker.webp"
        stem = PurePosixPath(cutout_name).stem.removesuffix("-nobg") or "cutout"
        return f"{stem}{self.suffix}"


def colour_code(index: int) -> str:
    """The callback code of the `index`-th palette colour."""
    return f"c{index}"


def _actions(*rows: StudioAction) -> dict[str, StudioAction]:
    return {row.code: row for row in rows}


ACTIONS: dict[str, StudioAction] = _actions(
    StudioAction(
        Action.STICKER, "sticker", Delivery.STICKER, "st", imaging.sticker, suffix=".webp"
    ),
    # The pack's stickers are the Sticker button's: the same kind, one conversion for both.
    StudioAction(Action.PACK, "pack", Delivery.PACK, "st", imaging.sticker, suffix=".webp"),
    StudioAction(Action.PALETTE, "background", Delivery.KEYBOARD, keyboard=Keyboard.PALETTE),
    StudioAction(Action.BACK, "back", Delivery.KEYBOARD, keyboard=Keyboard.MAIN),
    StudioAction(Action.CROP, "crop", Delivery.DOCUMENT, "cp", imaging.crop, suffix="-crop.png"),
    # The photo that answers the press is the function's second argument (`Maker.make`).
    StudioAction(
        Action.MY_BACKGROUND,
        "my_background",
        Delivery.ASK,
        "mb",
        imaging.with_background,
        suffix="-background.jpg",
    ),
    StudioAction(Action.MORE, "more", Delivery.KEYBOARD, keyboard=Keyboard.MORE),
    # A document, not a photo: Telegram would recompress a photo and soften the pure white.
    StudioAction(
        Action.SHOP, "shop", Delivery.DOCUMENT, "sh", imaging.shop_photo, suffix="-shop.jpg"
    ),
    StudioAction(
        Action.SHADOW, "shadow", Delivery.DOCUMENT, "sd", imaging.shadow, suffix="-shadow.png"
    ),
    StudioAction(
        Action.OUTLINE, "outline", Delivery.STICKER, "ol", imaging.outline_sticker, suffix=".webp"
    ),
    # The outlined sticker into the same pack: one conversion for it and the Outline button.
    StudioAction(
        Action.OUTLINE_PACK,
        "outline_pack",
        Delivery.PACK,
        "ol",
        imaging.outline_sticker,
        suffix=".webp",
    ),
    *(
        StudioAction(
            colour_code(index),
            "colour",
            Delivery.DOCUMENT,
            f"bg-{colour_name}",
            imaging.flatten,
            (colour,),
            f"-{colour_name}.jpg",
            # The colour is chosen: the palette makes way for the main buttons again.
            then=Keyboard.MAIN,
        )
        for index, (colour_name, colour) in enumerate(PALETTE)
    ),
)


def action_name(code: str) -> str:
    """A readable name of an action code, for logs and metrics (colours are all `colour`)."""
    action = ACTIONS.get(code)
    return action.name if action is not None else "-"
