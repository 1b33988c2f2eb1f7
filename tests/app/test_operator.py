"""Operator tools: `python -m bot doctor`, `healthcheck`, and JSON logs."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from bot.storage.factory import create_store
from tests.conftest import BOT_TOKEN, FREEPIK_KEY, WEBHOOK_SECRET, StartBot, bot_env
from tests.fakes import FakeFreepik, FakeTelegram, make_image
from tests.fakes.updates import photo_message, private_user, update
from tests.redis_server import free_port
from tests.support import run_cli, spawn_bot_process


async def test_doctor_passes_and_masks_secrets(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    code, output = await run_cli(["doctor"], telegram, freepik, tmp_path)
    assert code == 0, output
    assert "@nobg_test_bot" in output
    assert "All checks passed." in output
    assert f"TELEGRAM_BOT_TOKEN       set ({len(BOT_TOKEN)} characters)" in output
    assert BOT_TOKEN not in output
    assert FREEPIK_KEY not in output
    assert "getWebhookInfo" in [c.method for c in telegram.calls]


async def test_doctor_prints_plain_values_and_only_looks_at_a_missing_data_dir(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    data_dir = tmp_path / "not-yet" / "data"
    code, output = await run_cli(["doctor"], telegram, freepik, tmp_path, DATA_DIR=str(data_dir))
    assert code == 0, output
    assert not (tmp_path / "not-yet").exists()  # checking creates nothing
    for shown_by_repr in ("PosixPath", "None", "(none)", "frozenset", "'"):
        assert shown_by_repr not in output
    assert f"DATA_DIR                 {data_dir}\n" in output
    assert f"STORAGE_URL              sqlite://{data_dir / 'nobg.sqlite3'}\n" in output
    # Unset values read the same whatever their type: a set, a number, a string, a secret.
    for name in ("ADMIN_IDS", "INLINE_STORAGE_CHAT_ID", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        assert f"{name:<24} not set\n" in output
    assert f"data directory           {data_dir} does not exist yet" in output
    assert "webhook                  not set (polling)" in output


async def test_doctor_opens_an_existing_database_and_refuses_a_file_as_data_dir(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    store = create_store(f"sqlite://{data_dir / 'nobg.sqlite3'}")
    await store.aclose()
    code, output = await run_cli(["doctor"], telegram, freepik, tmp_path, DATA_DIR=str(data_dir))
    assert code == 0, output
    assert f"data directory           {data_dir} (writable)" in output
    assert "state                    reachable" in output
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    code, output = await run_cli(["doctor"], telegram, freepik, tmp_path, DATA_DIR=str(not_a_dir))
    assert code == 1, output
    assert f"data directory           FAILED: {not_a_dir} is not a directory" in output
    assert not_a_dir.read_text() == ""


async def test_doctor_fails_on_a_rejected_token(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    wrong = "999999:WRONG-token_abcdefghijklmnopqrstuvw"
    code, output = await run_cli(["doctor"], telegram, freepik, tmp_path, TELEGRAM_BOT_TOKEN=wrong)
    assert code == 1
    assert "getMe                    FAILED" in output
    assert wrong not in output


async def test_doctor_checks_redis(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path, redis_url: str
) -> None:
    code, output = await run_cli(["doctor"], telegram, freepik, tmp_path, STORAGE_URL=redis_url)
    assert code == 0, output
    assert "state                    reachable" in output
    nobody = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    code, output = await run_cli(["doctor"], telegram, freepik, tmp_path, STORAGE_URL=nobody)
    assert code == 1
    assert "UNREACHABLE" in output
    assert "hunter2" not in output


async def test_healthcheck_command(
    start_bot: StartBot, telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    bot = await start_bot(mode="webhook")
    assert bot.http_url is not None
    port = bot.http_url.rsplit(":", 1)[1]
    webhook = {
        "MODE": "webhook",
        "WEBHOOK_URL": "https://x.test/telegram",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LISTEN_PORT": port,
    }
    code, output = await run_cli(["healthcheck"], telegram, freepik, tmp_path, **webhook)
    assert code == 0, output
    await bot.shutdown()
    code, _ = await run_cli(["healthcheck"], telegram, freepik, tmp_path, **webhook)
    assert code == 1
    # Polling without relay links has no server to probe.
    code, _ = await run_cli(["healthcheck"], telegram, freepik, tmp_path)
    assert code == 0


async def test_json_logs_are_one_object_per_line(
    telegram: FakeTelegram, freepik: FakeFreepik, tmp_path: Path
) -> None:
    process = await spawn_bot_process(
        env=bot_env(telegram, freepik, LOG_FORMAT="json"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await telegram.wait_for_call("getUpdates", timeout=20)
    file_id, unique_id = telegram.add_file(make_image("JPEG"))
    telegram.push_update(update(message=photo_message(private_user(77), file_id, unique_id)))
    await telegram.wait_for(lambda t: bool(t.sent_documents(77)), timeout=15)
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    lines = stderr.decode().strip().splitlines()
    entries = [json.loads(line) for line in lines]
    assert entries, "the bot logged nothing"
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert any(e["message"].startswith("job user=77") for e in entries)
    assert BOT_TOKEN not in stderr.decode()
