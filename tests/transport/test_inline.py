"""Inline mode end to end: the real Application answering inline queries against the fakes."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from bot.i18n import messages
from bot.removal.sources import NotHttpLink
from bot.transport.surfaces import inline
from tests.conftest import BOT_TOKEN, ImageHost, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, TgCall, make_image
from tests.fakes.images import is_transparent_png
from tests.fakes.updates import inline_query, photo_message, private_user, update
from tests.support import settle

ANN = private_user(9001, "Ann")
BEN = private_user(9002, "Ben")
STORAGE_CHAT = -100123


def ask(telegram: FakeTelegram, user: dict[str, Any], text: str) -> tuple[str, float]:
    """Push an inline query; return its id and when it was pushed."""
    pushed = inline_query(user, text)
    telegram.push_update(pushed)
    return str(pushed["inline_query"]["id"]), time.monotonic()


def answers_to(telegram: FakeTelegram, query_id: str) -> list[TgCall]:
    """Every answerInlineQuery for one query."""
    return [
        c
        for c in telegram.calls_of("answerInlineQuery")
        if c.params.get("inline_query_id") == query_id
    ]


async def answer_to(telegram: FakeTelegram, query_id: str, timeout: float = 5.0) -> TgCall:
    """Wait for the answer to a query and for the fake to have accepted it."""
    await telegram.wait_for(
        lambda t: any(c.response is not None for c in answers_to(t, query_id)), timeout=timeout
    )
    (call,) = answers_to(telegram, query_id)
    assert call.ok, call.response
    assert call.params["is_personal"] is True
    return call


def only_result(call: TgCall) -> dict[str, Any]:
    """The single result of an answer (the cutout's sticker offered beside a document aside)."""
    results = call.params["results"]
    assert isinstance(results, list)
    stickers = [r for r in results if r.get("type") == "sticker"]
    results = [r for r in results if r.get("type") != "sticker"]
    assert len(stickers) <= 1, stickers
    assert not stickers or results[0]["type"] == "document", results
    assert len(results) == 1, results
    result = results[0]
    assert isinstance(result, dict)
    assert len(result["id"].encode()) <= 64
    return result


def inline_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The one-per-request log lines of inline mode."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("inline user=")]


async def one_cutout_then_another(
    telegram: FakeTelegram, image_host: ImageHost
) -> tuple[str, TgCall]:
    """Have one link cut out, then ask for a second; the first link and the second answer."""
    first = image_host.add("one.jpg", make_image("JPEG"))
    second = image_host.add("two.jpg", make_image("JPEG", color=(1, 2, 3)))
    query_id, _ = ask(telegram, ANN, first)
    assert only_result(await answer_to(telegram, query_id))["type"] == "document"

    query_id, _ = ask(telegram, ANN, second)
    return first, await answer_to(telegram, query_id)


async def assert_answered_once(telegram: FakeTelegram, query_id: str) -> None:
    """Give a wrongly repeated answer time to show up, then check there was exactly one."""
    await settle()
    assert len(answers_to(telegram, query_id)) == 1


# --- a link becomes a cached document ---------------------------------------------------------


async def test_link_is_answered_with_the_uploaded_cutout(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    image_host: ImageHost,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot()
    link = image_host.add("cat.jpg", make_image("JPEG"))
    query_id, _ = ask(telegram, ANN, f"  {link}  ")
    call = await answer_to(telegram, query_id)

    # Uploaded as PNG bytes to the user's own chat with the bot, which then holds its file id.
    (upload,) = telegram.sent_documents(ANN["id"])
    png = upload.files["document"]
    assert png.filename == "cat-nobg.png"
    assert is_transparent_png(png.data)
    file_id = upload.result["document"]["file_id"]

    result = only_result(call)
    assert result["type"] == "document"
    assert result["document_file_id"] == file_id
    assert result["caption"] == messages.done_caption()
    assert result["title"]
    assert call.params["cache_time"] > 0
    assert [c.image_url for c in freepik.calls] == [link]
    await assert_answered_once(telegram, query_id)
    assert inline_lines(info_logs) == [
        line for line in inline_lines(info_logs) if "outcome=ok via=leader answer=document" in line
    ]
    assert len(inline_lines(info_logs)) == 1
    # httpx is silenced by configure_logging in production; the bot's own lines must be clean.
    own = [r.getMessage() for r in info_logs.records if r.name.startswith("bot")]
    assert own
    assert all(BOT_TOKEN not in line for line in own)


async def test_scheme_less_link_gets_http(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot()
    link = image_host.add("pot.jpg", make_image("JPEG"))
    bare = link.removeprefix("http://")
    assert bare != link
    query_id, _ = ask(telegram, ANN, f"cut {bare} please")
    assert only_result(await answer_to(telegram, query_id))["type"] == "document"
    assert [c.image_url for c in freepik.calls] == [link]


async def test_storage_chat_receives_the_upload(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot(inline_storage_chat_id=STORAGE_CHAT)
    # Ann never started the bot: with a storage chat that does not matter.
    telegram.block_chat(ANN["id"])
    link = image_host.add("dog.jpg", make_image("JPEG"))
    query_id, _ = ask(telegram, ANN, link)
    result = only_result(await answer_to(telegram, query_id))

    (upload,) = telegram.sent_documents()
    assert upload.chat_id == STORAGE_CHAT
    assert is_transparent_png(upload.files["document"].data)
    assert result["document_file_id"] == upload.result["document"]["file_id"]
    assert not [c for c in telegram.calls if c.chat_id == ANN["id"]]
    assert len(freepik.calls) == 1


# --- the answer deadline ----------------------------------------------------------------------


async def slow_job_then_cached_answer(
    telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost, timeout: float
) -> None:
    """First answer "still working" in time; once done, the same query gets the cutout."""
    link = image_host.add("slow.jpg", make_image("JPEG"))
    query_id, pushed = ask(telegram, ANN, link)
    first = await answer_to(telegram, query_id, timeout=timeout + 2)
    waited = first.at - pushed
    assert timeout - 1.0 < waited < timeout + 0.3, waited
    working = only_result(first)
    assert working["type"] == "article"
    assert working["title"] == messages.inline_working_title()
    assert first.params["cache_time"] == 0
    assert not freepik.calls, "Freepik was still working when the answer went"

    # The job carries on and uploads the cutout...
    await telegram.wait_for(lambda t: len(t.sent_documents(ANN["id"])) == 1, timeout=15)
    file_id = telegram.sent_documents(ANN["id"])[0].result["document"]["file_id"]
    # ... so the client's next try of the same query is answered at once from the cache.
    again_id, again_pushed = ask(telegram, ANN, link)
    again = await answer_to(telegram, again_id)
    assert again.at - again_pushed < 1.0
    assert only_result(again)["document_file_id"] == file_id
    await assert_answered_once(telegram, query_id)
    assert len(freepik.calls) == 1


async def test_slow_job_within_the_default_timeout(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    freepik.latency = 10
    bot = await start_bot(freepik_timeout=30)
    assert bot.settings.inline_answer_timeout == 6
    await slow_job_then_cached_answer(telegram, freepik, image_host, timeout=6.0)


async def test_slow_job_with_a_short_timeout(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    image_host: ImageHost,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    freepik.latency = 2.5
    await start_bot(freepik_timeout=30, inline_answer_timeout=1.0)
    await slow_job_then_cached_answer(telegram, freepik, image_host, timeout=1.0)
    # One line for the first query, logged when its job was done; one for the cache hit.
    lines = inline_lines(info_logs)
    assert len(lines) == 2, lines
    assert "outcome=ok via=leader answer=working" in lines[0]
    assert "outcome=ok via=cached answer=document" in lines[1]


async def test_second_query_joins_the_job_in_flight(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    image_host: ImageHost,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    freepik.latency = 1.5
    await start_bot(freepik_timeout=30)
    link = image_host.add("vase.jpg", make_image("JPEG"))
    ann_query, _ = ask(telegram, ANN, link)
    # Ann's job is past its checks and waiting on Freepik.
    await telegram.wait_for_call("sendChatAction", where=lambda c: c.chat_id == ANN["id"])
    await asyncio.sleep(0.5)
    ben_query, _ = ask(telegram, BEN, link)
    assert not answers_to(telegram, ann_query)

    ann = only_result(await answer_to(telegram, ann_query))
    ben = only_result(await answer_to(telegram, ben_query))
    assert ann["document_file_id"] == ben["document_file_id"]
    assert len(freepik.calls) == 1
    assert len(telegram.sent_documents()) == 1
    await assert_answered_once(telegram, ben_query)
    lines = inline_lines(info_logs)
    assert any("user=9001 outcome=ok via=leader" in line for line in lines), lines
    assert any("user=9002 outcome=ok via=follower" in line for line in lines), lines


async def test_superseded_query_starts_no_job(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot()
    link = image_host.add("typed.jpg", make_image("JPEG"))
    # The client sends a query for the half-typed link, then one for the whole link.
    half_query, _ = ask(telegram, ANN, link[:-2])
    whole_query, _ = ask(telegram, ANN, link)
    half = await answer_to(telegram, half_query)
    whole = await answer_to(telegram, whole_query)
    assert half.params["results"] == []
    assert half.params["cache_time"] == 0
    assert only_result(whole)["type"] == "document"
    assert [c.image_url for c in freepik.calls] == [link]


# --- the recent list --------------------------------------------------------------------------


async def test_empty_query_lists_recent_cutouts_newest_first(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot()
    # One made in the private chat...
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(80, 60)))
    telegram.push_update(update(message=photo_message(ANN, file_id, unique_id)))
    await telegram.wait_for(lambda t: len(t.sent_documents(ANN["id"])) == 1, timeout=10)
    # ... and one made inline.
    link = image_host.add("mug.jpg", make_image("JPEG", color=(10, 90, 200)))
    link_query, _ = ask(telegram, ANN, link)
    await answer_to(telegram, link_query)
    chat_doc, inline_doc = telegram.sent_documents(ANN["id"])
    assert len(freepik.calls) == 2

    query_id, _ = ask(telegram, ANN, "   ")
    call = await answer_to(telegram, query_id)
    results = call.params["results"]
    assert [r["type"] for r in results] == ["document", "document"]
    assert [r["document_file_id"] for r in results] == [
        inline_doc.result["document"]["file_id"],
        chat_doc.result["document"]["file_id"],
    ]
    assert results[0]["title"] == "mug-nobg.png"
    assert len({r["id"] for r in results}) == 2
    assert call.params["cache_time"] == 0
    assert "button" not in call.params
    assert len(freepik.calls) == 2

    # Another user's list is their own.
    ben_query, _ = ask(telegram, BEN, "")
    assert (await answer_to(telegram, ben_query)).params["results"] == []


async def test_empty_query_without_cutouts_offers_the_bot(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot()
    query_id, _ = ask(telegram, ANN, "")
    call = await answer_to(telegram, query_id)
    assert call.params["results"] == []
    assert call.params["button"]["start_parameter"] == messages.INLINE_START_PARAMETER
    assert call.params["button"]["text"] == messages.inline_no_recent_button()
    assert call.params["cache_time"] == 0
    await assert_answered_once(telegram, query_id)
    assert not freepik.calls
    assert not telegram.calls_of("sendChatAction")


# --- everything that is not a cutout ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "title", "explanation"),
    [
        ("a cat on a sofa", messages.inline_no_link_title(), messages.inline_no_link_text()),
        (
            "ftp://example.com/cat.jpg",
            messages.inline_not_http_title(),
            messages.inline_not_http_text(),
        ),
    ],
)
async def test_not_a_link_gets_one_article(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    text: str,
    title: str,
    explanation: str,
) -> None:
    await start_bot()
    query_id, _ = ask(telegram, ANN, text)
    call = await answer_to(telegram, query_id)
    article = only_result(call)
    assert article["type"] == "article"
    assert article["title"] == title
    assert article["input_message_content"]["message_text"] == explanation
    assert call.params["cache_time"] == 0
    await assert_answered_once(telegram, query_id)
    assert not freepik.calls
    assert not telegram.calls_of("sendChatAction")


async def test_user_who_never_started_the_bot_gets_a_button(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot()
    telegram.block_chat(ANN["id"])
    link = image_host.add("bird.jpg", make_image("JPEG"))
    query_id, _ = ask(telegram, ANN, link)
    call = await answer_to(telegram, query_id)
    assert call.params["results"] == []
    assert call.params["button"] == {
        "text": messages.inline_start_button(),
        "start_parameter": messages.INLINE_START_PARAMETER,
    }
    await assert_answered_once(telegram, query_id)
    assert not freepik.calls
    assert not telegram.sent_documents()


async def test_rate_limit_applies_to_new_inline_jobs(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot(rate_limit="1/minute")
    first, call = await one_cutout_then_another(telegram, image_host)
    article = only_result(call)
    assert article["title"] == messages.inline_limit_title()
    assert "limit" in article["input_message_content"]["message_text"]
    assert "second" in article["input_message_content"]["message_text"]
    assert call.params["cache_time"] == 0
    assert len(freepik.calls) == 1

    # A cutout already made does not count.
    query_id, _ = ask(telegram, ANN, first)
    assert only_result(await answer_to(telegram, query_id))["type"] == "document"
    assert len(freepik.calls) == 1


async def test_freepik_fault_is_explained(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    freepik.fail_next(400)
    await start_bot()
    link = image_host.add("odd.jpg", make_image("JPEG"))
    query_id, _ = ask(telegram, ANN, link)
    call = await answer_to(telegram, query_id)
    article = only_result(call)
    assert article["type"] == "article"
    assert article["title"] == messages.inline_failed_title()
    # A link Freepik cannot read gets the explanation for links.
    assert article["input_message_content"]["message_text"] == messages.link_not_an_image()
    assert article["description"] == messages.link_not_an_image()
    assert call.params["cache_time"] == 0
    assert len(freepik.calls) == 1
    assert not telegram.sent_documents()


async def test_failed_answer_is_logged_not_raised(
    start_bot: StartBot,
    telegram: FakeTelegram,
    image_host: ImageHost,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    await start_bot()
    telegram.fail_next(
        "answerInlineQuery",
        error_code=400,
        description="Bad Request: query is too old and response timeout expired",
    )
    query_id, _ = ask(telegram, ANN, "")
    await telegram.wait_for(lambda t: bool(answers_to(t, query_id)))
    await telegram.wait_for(lambda t: any("answer=failed" in x for x in inline_lines(info_logs)))
    assert any(
        r.levelno == logging.WARNING and "query is too old" in r.getMessage().lower()
        for r in info_logs.records
    )
    assert not [r for r in info_logs.records if r.levelno >= logging.ERROR]
    await assert_answered_once(telegram, query_id)

    # The bot carries on.
    link = image_host.add("next.jpg", make_image("JPEG"))
    query_id, _ = ask(telegram, ANN, link)
    assert only_result(await answer_to(telegram, query_id))["type"] == "document"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://example.com/a.png", "https://example.com/a.png"),
        ("cut example.com/x.jpg please", "http://example.com/x.jpg"),
        ("words ftp://example.com/a.jpg https://example.com/b.png", "https://example.com/b.png"),
        ("HTTPS://Example.com/c.jpg#frag", "https://Example.com/c.jpg"),
        ("cat", None),
        ("https://exa", None),  # still being typed: no host with a dot yet
        ("a cat on a sofa", None),
    ],
)
def test_find_link(text: str, expected: str | None) -> None:
    assert inline.find_link(text) == expected


@pytest.mark.parametrize("text", ["ftp://example.com/a.jpg", "mailto:ann@example.com"])
def test_find_link_refuses_other_schemes(text: str) -> None:
    with pytest.raises(NotHttpLink):
        inline.find_link(text)


async def test_out_of_credits_gets_its_own_article_and_a_button_to_buy(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, image_host: ImageHost
) -> None:
    await start_bot(free_removals="1/day", credit_packs="10:25")
    _, call = await one_cutout_then_another(telegram, image_host)
    article = only_result(call)
    assert article["title"] == messages.inline_credits_title()
    text = article["input_message_content"]["message_text"]
    before, after = messages.inline_credits_text("\x00", telegram.state.username).split("\x00")
    assert text.startswith(before), "not the generic limit text"
    assert text.endswith(after)
    assert call.params["button"] == {
        "text": messages.inline_buy_button(),
        "start_parameter": "buy",
    }
    assert call.params["cache_time"] == 0
    assert len(freepik.calls) == 1
