"""`python -m bot` as a real process: signals, graceful shutdown, and what reaches the logs."""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path

from bot.__main__ import GC_THRESHOLDS, settle_garbage_collector
from bot.i18n import messages
from tests.conftest import BOT_TOKEN, FREEPIK_KEY, bot_env
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import document_message, photo_message, private_user, update
from tests.support import only_reply, spawn_bot_process, visible_messages


async def spawn_bot(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path, **env: str
) -> asyncio.subprocess.Process:
    """Start `python -m bot` against the fakes and wait until it polls."""
    process = await spawn_bot_process(
        env=bot_env(telegram, freepik, **env),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await telegram.wait_for_call("getUpdates", timeout=20)
    return process


async def finish(process: asyncio.subprocess.Process, timeout: float = 20) -> tuple[int, str]:
    """Wait for the process to exit; return its exit code and stderr."""
    _, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def push_photo(telegram: FakeTelegram, user_id: int) -> None:
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(private_user(user_id), file_id, unique_id)))


async def test_sigterm_lets_the_job_in_flight_finish(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    freepik.latency = 2.0
    process = await spawn_bot(telegram, freepik, tmp_path, SHUTDOWN_GRACE="20")
    push_photo(telegram, 501)
    await telegram.wait_for_call("getFile")
    await asyncio.sleep(0.3)  # the Freepik call is now in progress
    process.send_signal(signal.SIGTERM)
    code, stderr = await finish(process)
    assert code == 0, stderr
    assert only_reply(telegram, 501).method == "sendDocument"
    assert "outcome=ok" in stderr


async def test_sigint_past_the_grace_period_aborts_with_a_reply(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    # With memory storage nothing outlives the process, so the user is told to resend (the
    # durable default keeps the request instead: tests/test_durability.py).
    freepik.latency = 30.0
    process = await spawn_bot(
        telegram, freepik, tmp_path, SHUTDOWN_GRACE="0.5", STORAGE_URL="memory://"
    )
    push_photo(telegram, 502)
    await telegram.wait_for_call("getFile")
    await asyncio.sleep(0.3)
    process.send_signal(signal.SIGINT)
    code, stderr = await finish(process, timeout=15)
    assert code == 0, stderr
    assert only_reply(telegram, 502).text == messages.aborted()
    assert not telegram.sent_documents(502)
    assert "outcome=aborted" in stderr


async def test_no_secret_reaches_the_logs(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    process = await spawn_bot(telegram, freepik, tmp_path, LOG_LEVEL="DEBUG")
    push_photo(telegram, 601)  # success
    await telegram.wait_for(lambda t: bool(t.sent_documents(601)))
    freepik.fail_next(401)
    push_photo(telegram, 602)  # bad key: logged as an error for the operator
    await telegram.wait_for(
        lambda t: any(
            v.text for v in visible_messages(t, 602) if v.text == messages.misconfigured()
        )
    )
    freepik.fail_next(500, times=2)  # the first POST and its one retry (it may be billed)
    push_photo(telegram, 603)  # outage after retries
    await telegram.wait_for(
        lambda t: any(v.text == messages.unavailable() for v in visible_messages(t, 603)),
        timeout=20,
    )
    # A file id Telegram does not know: getFile fails.
    telegram.push_update(
        update(
            message=document_message(
                private_user(604),
                "unknown-file-id",
                "unknown-unique",
                file_name="x.png",
                mime_type="image/png",
                file_size=10,
            )
        )
    )
    await telegram.wait_for(
        lambda t: any(v.text == messages.source_unavailable() for v in visible_messages(t, 604))
    )
    process.send_signal(signal.SIGTERM)
    code, stderr = await finish(process)
    assert code == 0, stderr
    assert "job user=601" in stderr
    assert "outcome=ok" in stderr
    assert "outcome=bad_key" in stderr
    assert BOT_TOKEN not in stderr
    assert BOT_TOKEN.split(":", 1)[1] not in stderr
    assert FREEPIK_KEY not in stderr
    assert "HTTP Request:" not in stderr, "httpx request logging must be silenced"
    # ...and none reached a user either.
    for call in telegram.calls:
        for value in call.params.values():
            assert BOT_TOKEN not in str(value)
            assert FREEPIK_KEY not in str(value)


async def test_rejected_token_is_one_clear_line(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    process = await spawn_bot_process(
        env=bot_env(
            telegram,
            freepik,
            TELEGRAM_BOT_TOKEN="999999:WRONG-token_abcdefghijklmnopqrstuvw",
        ),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, stderr = await finish(process)
    assert code == 2
    assert "TELEGRAM_BOT_TOKEN" in stderr
    assert "WRONG-token" not in stderr
    assert "Traceback" not in stderr


def test_start_up_objects_are_left_out_of_later_collections() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 1000  # every module, class and function loaded so far
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > thresholds[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
