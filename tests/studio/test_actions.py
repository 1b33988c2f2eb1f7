"""The studio's action table, callback data and records: what adding a button must keep true."""

from __future__ import annotations

import pytest

from bot.i18n import locales as i18n
from bot.studio.actions import ACTIONS, PALETTE, Action, Delivery, Keyboard, action_name
from bot.studio.callback import callback_data, new_token, parse_callback
from bot.studio.making import packed_key
from bot.studio.records import Item, Record
from bot.transport.keyboards import KEYBOARDS


def keyboard_codes(keyboard: Keyboard, token: str) -> list[str]:
    """The action codes of a keyboard's buttons, parsed back from their callback data."""
    markup = KEYBOARDS[keyboard](token)
    codes = []
    for row in markup.inline_keyboard:
        for button in row:
            assert isinstance(button.callback_data, str)
            parsed = parse_callback(button.callback_data)
            assert parsed is not None, button.callback_data
            action, parsed_token = parsed
            assert parsed_token == token
            codes.append(action.code)
    return codes


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_every_button_is_a_row_of_the_table_and_fits_telegram(locale: str) -> None:
    token = new_token()
    with i18n.using(locale):
        shown = {code for keyboard in Keyboard for code in keyboard_codes(keyboard, token)}
        for keyboard in Keyboard:
            for row in KEYBOARDS[keyboard](token).inline_keyboard:
                for button in row:
                    assert len(str(button.callback_data).encode()) <= 64  # Telegram's limit
    # Every action is reachable from some keyboard, and every keyboard from some action.
    assert shown == set(ACTIONS)
    assert {a.keyboard for a in ACTIONS.values() if a.delivery is Delivery.KEYBOARD} == set(
        Keyboard
    )


def test_every_action_that_makes_something_says_what_and_how() -> None:
    for action in ACTIONS.values():
        if action.delivery is Delivery.KEYBOARD:
            assert action.function is None
            continue
        assert action.function is not None, action
        assert action.suffix, action
        # The cache key is `studio:<kind>:<file_unique_id>`: a kind of its own, no colon.
        assert action.kind, action
        assert ":" not in action.kind
    # Codes sit between the dots of the callback data.
    assert all("." not in code for code in ACTIONS)


def test_logs_and_metrics_name_the_actions() -> None:
    # These names are the `action` label of nobg_studio_presses_total: dashboards use them.
    for code, name in [("st", "sticker"), ("pk", "pack"), ("bg", "background"), ("bk", "back")]:
        assert action_name(code) == name
    assert action_name("cp") == "crop"
    for code, name in [("sh", "shop"), ("sd", "shadow"), ("ol", "outline"), ("mo", "more")]:
        assert action_name(code) == name
    assert action_name("op") == "outline_pack"
    assert {action_name(f"c{i}") for i in range(len(PALETTE))} == {"colour"}
    assert action_name("zz") == "-"


def test_the_pack_reuses_the_sticker() -> None:
    assert ACTIONS[Action.PACK].kind == ACTIONS[Action.STICKER].kind
    assert ACTIONS[Action.PACK].function is ACTIONS[Action.STICKER].function
    assert ACTIONS[Action.OUTLINE_PACK].kind == ACTIONS[Action.OUTLINE].kind
    assert ACTIONS[Action.OUTLINE_PACK].function is ACTIONS[Action.OUTLINE].function


def test_a_cutout_in_the_pack_is_noted_per_kind_of_sticker() -> None:
    # The plain sticker's mark is the one stored before outlines existed.
    assert packed_key(5, "u") == "studio:pk5:u"
    assert packed_key(5, "u", "ol") == "studio:pk5-ol:u"


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_no_keyboard_is_more_than_four_rows_under_a_cutout(locale: str) -> None:
    with i18n.using(locale):
        for keyboard in (Keyboard.MAIN, Keyboard.MORE):
            assert len(KEYBOARDS[keyboard](new_token()).inline_keyboard) <= 4


def test_file_names_follow_the_cutout() -> None:
    assert ACTIONS[Action.CROP].file_name("photo-nobg.png") == "photo-crop.png"
    assert ACTIONS[Action.STICKER].file_name("photo-nobg.png") == "sticker.webp"
    assert ACTIONS[Action.SHOP].file_name("photo-nobg.png") == "photo-shop.jpg"
    assert ACTIONS[Action.SHADOW].file_name("photo-nobg.png") == "photo-shadow.png"
    assert ACTIONS[Action.OUTLINE].file_name("photo-nobg.png") == "sticker.webp"
    white = ACTIONS["c0"]
    assert white.args == (PALETTE[0][1],)
    assert white.file_name("-nobg.png") == "cutout-white.jpg"


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "s1.st",
        "s0.st.AAAAAAAAAAAA",
        "s1.zz.AAAAAAAAAAAA",
        "s1.st.AAAAAAAAAAA",  # one character short
        "s1.st.AAAAAAAAAAAA.x",
        "s1.st.AAAAAAAAAA=A",
        "lang:en",
    ],
)
def test_data_the_bot_did_not_make_is_refused(data: str | None) -> None:
    assert parse_callback(data) is None


def test_callback_data_round_trips() -> None:
    token = new_token()
    assert len(token) == 12
    for code, action in ACTIONS.items():
        assert parse_callback(callback_data(code, token)) == (action, token)


def test_a_record_survives_the_store_and_garbage_does_not() -> None:
    record = Record(7, -100, (Item("f1", "u1", "a-nobg.png", 10), Item("f2", "u2", "b", None)))
    assert Record.loads(record.dumps()) == record
    for raw in ("", "{", "[]", '{"owner": 1}', '{"owner": "x", "chat": 1, "items": []}'):
        assert Record.loads(raw) is None
