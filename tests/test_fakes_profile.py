"""The fake Bot API's command menu and profile texts follow Telegram's rules."""

from __future__ import annotations

import pytest
from telegram import Bot, BotCommand
from telegram.error import BadRequest

from tests.fakes import FakeTelegram


async def test_commands_per_language(telegram: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand("start", "Start")])
    await bot.set_my_commands([BotCommand("start", "Inicio")], language_code="es")
    assert [c.description for c in await bot.get_my_commands()] == ["Start"]
    assert [c.description for c in await bot.get_my_commands(language_code="es")] == ["Inicio"]
    assert await bot.get_my_commands(language_code="de") == ()


@pytest.mark.parametrize(
    ("command", "description", "error"),
    [
        ("start", "", "command description must be non-empty"),
        ("start", "x" * 257, "BOT_COMMAND_DESCRIPTION_INVALID"),
        ("Start", "ok", "BOT_COMMAND_INVALID"),
        ("стат", "ok", "BOT_COMMAND_INVALID"),
    ],
)
async def test_command_rules(bot: Bot, command: str, description: str, error: str) -> None:
    with pytest.raises(BadRequest, match=rf"(?i){error}"):
        await bot.set_my_commands([BotCommand(command, description)])


@pytest.mark.parametrize("code", ["pt-br", "PT", "por", "e"])
async def test_language_code_is_two_lowercase_letters(bot: Bot, code: str) -> None:
    with pytest.raises(BadRequest, match=r"(?i)LANG_CODE_INVALID"):
        await bot.set_my_commands([BotCommand("start", "Start")], language_code=code)
    with pytest.raises(BadRequest, match=r"(?i)LANG_CODE_INVALID"):
        await bot.set_my_description("hello", language_code=code)


async def test_descriptions_per_language_with_limits(bot: Bot) -> None:
    await bot.set_my_description("d" * 512)
    await bot.set_my_description("Descripción", language_code="es")
    await bot.set_my_short_description("s" * 120, language_code="es")
    assert (await bot.get_my_description()).description == "d" * 512
    assert (await bot.get_my_description(language_code="es")).description == "Descripción"
    # A language without its own text gets the default one, as in Telegram.
    assert (await bot.get_my_description(language_code="fr")).description == "d" * 512
    assert (await bot.get_my_short_description(language_code="es")).short_description == (
        "s" * 120
    )
    with pytest.raises(BadRequest):
        await bot.set_my_description("d" * 513)
    with pytest.raises(BadRequest):
        await bot.set_my_short_description("s" * 121)
    # An empty text removes the language's own one.
    await bot.set_my_description("", language_code="es")
    assert (await bot.get_my_description(language_code="es")).description == "d" * 512
