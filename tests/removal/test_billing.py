"""Billing-safe Freepik calls, end to end: each retry rule counted by the POSTs the fake got."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from bot.app.services import ServiceOptions
from bot.i18n import messages
from bot.removal.freepik import RetryPolicy
from tests.conftest import FREEPIK_KEY, RunningBot, StartBot
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import photo_message, private_user, update
from tests.redis_server import free_port
from tests.support import visible_messages

USER = 4200
FAST = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.02, max_retry_after=5.0)


def send_photo(telegram: FakeTelegram, user_id: int = USER) -> None:
    """Push a private photo message."""
    file_id, unique_id = telegram.add_file(make_image("JPEG", size=(64, 48)))
    telegram.push_update(update(message=photo_message(private_user(user_id), file_id, unique_id)))


async def final_text(telegram: FakeTelegram, text: str, chat_id: int = USER) -> None:
    """Wait until the chat's one visible message is `text`."""
    await telegram.wait_for(
        lambda t: [v.text for v in visible_messages(t, chat_id)] == [text], timeout=15
    )


async def document(telegram: FakeTelegram, chat_id: int = USER) -> None:
    """Wait until the chat shows only the cutout document."""
    await telegram.wait_for(
        lambda t: [v.method for v in visible_messages(t, chat_id)] == ["sendDocument"],
        timeout=15,
    )


def posts(bot: RunningBot, attempt: int) -> float:
    """The attempt metric for one attempt number."""
    registry = bot.services.metrics.registry
    found = registry.get_sample_value("nobg_freepik_posts_total", {"attempt": str(attempt)})
    return found or 0.0


def error_lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    """ERROR lines containing `needle`."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and needle in r.getMessage()
    ]


# --- what may be retried freely ----------------------------------------------------------------


class RefuseFirst(httpx.AsyncBaseTransport):
    """Sends the first `n` requests to a closed local port (a real ECONNREFUSED), then on."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.refused = 0
        self._inner = httpx.AsyncHTTPTransport()
        self._closed_port = free_port()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refused < self.refusals and request.method == "POST":
            self.refused += 1
            request.url = request.url.copy_with(port=self._closed_port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_connection_refused_then_success_costs_one_post(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    transport = RefuseFirst(2)
    bot = await start_bot(retry=FAST, options=ServiceOptions(freepik_transport=transport))
    send_photo(telegram)
    await document(telegram)
    assert transport.refused == 2
    assert len(freepik.calls) == 1
    assert (posts(bot, 1), posts(bot, 2)) == (1, 0)


@pytest.mark.parametrize("retry_after", [None, 1.0])
async def test_429_is_retried_honouring_retry_after(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, retry_after: float | None
) -> None:
    bot = await start_bot(retry=FAST)
    freepik.fail_next(429, retry_after=retry_after)
    send_photo(telegram)
    await document(telegram)
    first, second = freepik.calls
    assert (first.status, second.status) == (429, 200)
    if retry_after is not None:
        assert second.at - first.at >= 0.95
    else:
        assert second.at - first.at < 0.9  # our own short backoff, not a made-up pause
    assert (posts(bot, 1), posts(bot, 2)) == (1, 1)


async def test_503_is_retried_with_a_bound(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(retry=FAST)
    freepik.fail_next(503)
    send_photo(telegram)
    await document(telegram)
    assert [c.status for c in freepik.calls] == [503, 200]

    freepik.reset()
    freepik.fail_next(503, times=10)
    send_photo(telegram, USER + 1)
    await final_text(telegram, messages.unavailable(), USER + 1)
    assert len(freepik.calls) == FAST.attempts


# --- what may have been billed: at most one retry ------------------------------------------------


async def test_500_twice_costs_exactly_two_posts_and_a_text_reply(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(retry=FAST)
    freepik.fail_next(500, times=5)
    send_photo(telegram)
    await final_text(telegram, messages.unavailable())
    assert [c.status for c in freepik.calls] == [500, 500]
    assert (posts(bot, 1), posts(bot, 2), posts(bot, 3)) == (1, 1, 0)


@pytest.mark.parametrize("status", [502, 504])
async def test_other_gateway_errors_once_more_then_success(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, status: int
) -> None:
    await start_bot(retry=FAST)
    freepik.fail_next(status)
    send_photo(telegram)
    await document(telegram)
    assert [c.status for c in freepik.calls] == [status, 200]


async def test_read_timeout_costs_exactly_two_posts(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(retry=FAST, freepik_timeout=0.5)
    freepik.hang_next(times=5)
    send_photo(telegram)
    await final_text(telegram, messages.unavailable())
    assert len(freepik.calls) == 2
    assert freepik.pending_faults == 3


# --- what must never be retried ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (402, None),
        (429, {"message": "Your daily limit has been reached"}),
        (403, {"message": "Not enough credits"}),
        (429, {"message": "Monthly quota exceeded"}),
    ],
)
async def test_out_of_capacity_is_one_post_one_error_line_and_a_metric(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
    status: int,
    body: dict[str, Any] | None,
) -> None:
    bot = await start_bot(retry=FAST)
    freepik.fail_next(status, times=3, body=body)
    send_photo(telegram)
    await final_text(telegram, messages.out_of_capacity())
    assert len(freepik.calls) == 1
    assert len(error_lines(info_logs, "out of capacity")) == 1
    registry = bot.services.metrics.registry
    assert (
        registry.get_sample_value("nobg_freepik_out_of_capacity_total", {"status": str(status)})
        == 1
    )


# --- the re-run of a lapsed result link -----------------------------------------------------


async def test_lapsed_link_reruns_once_and_is_counted_as_attempt_two(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    bot = await start_bot(retry=FAST)
    freepik.expire_next()
    send_photo(telegram)
    await document(telegram)
    assert len(freepik.calls) == 2
    assert (posts(bot, 1), posts(bot, 2)) == (1, 1)

    freepik.reset()
    freepik.expire_next(times=5)
    send_photo(telegram, USER + 1)
    await final_text(telegram, messages.unavailable(), USER + 1)
    assert len(freepik.calls) == 2


# --- answers, redirects and the key header --------------------------------------------------


@pytest.mark.parametrize("field", ["high_resolution", "url"])
async def test_either_cutout_link_is_enough(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, field: str
) -> None:
    await start_bot(retry=FAST)
    freepik.answer_only_next(field)
    send_photo(telegram)
    await document(telegram)
    assert len(freepik.calls) == 1


async def test_answer_without_a_cutout_link_is_malformed(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(retry=FAST)
    freepik.answer_only_next("original", "preview")
    send_photo(telegram)
    await final_text(telegram, messages.unavailable())
    assert len(freepik.calls) == 1


async def test_redirect_on_the_post_is_an_error_naming_location(
    start_bot: StartBot,
    telegram: FakeTelegram,
    freepik: FakeFreepik,
    info_logs: pytest.LogCaptureFixture,
) -> None:
    with FakeFreepik(api_key=FREEPIK_KEY) as elsewhere:
        target = f"{elsewhere.url}/v1/ai/beta/remove-background"
        await start_bot(retry=FAST)
        freepik.redirect_next(target, status=301)
        send_photo(telegram)
        await final_text(telegram, messages.misconfigured())
        assert len(freepik.calls) == 1
        assert elsewhere.calls == []  # not followed: the key never travelled
        assert len(error_lines(info_logs, target)) == 1


async def test_result_download_follows_redirects_without_the_key(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(retry=FAST)
    freepik.redirect_result_next(hops=3)
    send_photo(telegram)
    await document(telegram)
    assert len(freepik.redirects) == 3
    assert freepik.download_key_headers == [False]


async def test_more_than_five_redirects_on_download_fail(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik
) -> None:
    await start_bot(retry=FAST)
    freepik.redirect_result_next(hops=6)
    send_photo(telegram)
    await final_text(telegram, messages.unavailable())
    assert freepik.downloads == []


async def test_key_header_follows_the_setting(start_bot: StartBot, telegram: FakeTelegram) -> None:
    with FakeFreepik(api_key=FREEPIK_KEY, api_key_header="x-magnific-api-key") as magnific:
        await start_bot(
            retry=FAST, freepik_api_url=magnific.url, freepik_api_key_header="x-magnific-api-key"
        )
        send_photo(telegram)
        await document(telegram)
        (call,) = magnific.calls
        assert call.api_key == FREEPIK_KEY


async def test_default_header_is_refused_by_the_rebranded_host(
    start_bot: StartBot, telegram: FakeTelegram
) -> None:
    with FakeFreepik(api_key=FREEPIK_KEY, api_key_header="x-magnific-api-key") as magnific:
        await start_bot(retry=FAST, freepik_api_url=magnific.url)
        send_photo(telegram)
        await final_text(telegram, messages.misconfigured())
        assert [c.status for c in magnific.calls] == [401]
