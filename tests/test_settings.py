"""Settings: names, defaults, validation and error wording."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings, load_settings
from tests.redis_server import free_port

TOKEN = "123456:AAH-secret_token_value_0123456789ab"
KEY = "fpk-secret-key-0123"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_with_required_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    settings = load_settings()
    assert settings.telegram_bot_token.get_secret_value() == TOKEN
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.freepik_api_url == "https://api.freepik.com"
    # Durable by default: SQLite in ./data (relative to the working directory).
    assert settings.storage_url == f"sqlite://{Path.cwd() / 'data' / 'nobg.sqlite3'}"
    assert settings.max_concurrent_jobs == 8
    assert settings.admin_ids == frozenset()
    assert settings.log_level == "INFO"
    assert [str(item) for item in settings.rate_limits] == ["5 per 1 minute", "50 per 1 day"]


def test_data_dir_and_sqlite_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "state"))
    assert load_settings().storage_url == f"sqlite://{tmp_path / 'state' / 'nobg.sqlite3'}"
    monkeypatch.setenv("STORAGE_URL", "sqlite://")
    assert load_settings().storage_url == f"sqlite://{tmp_path / 'state' / 'nobg.sqlite3'}"
    monkeypatch.setenv("STORAGE_URL", "sqlite:///srv/bot.db")
    assert load_settings().storage_url == "sqlite:///srv/bot.db"
    monkeypatch.setenv("STORAGE_URL", "memory://")
    assert load_settings().storage_url == "memory://"


def test_reads_every_setting_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "FREEPIK_API_KEY": KEY,
        "TELEGRAM_API_URL": "http://127.0.0.1:8081/",
        "FREEPIK_API_URL": "http://127.0.0.1:9000",
        "RATE_LIMIT": "2/minute",
        "STORAGE_URL": "memory://",
        "ADMIN_IDS": "1, 22,333",
        "MAX_CONCURRENT_JOBS": "3",
        "LOG_LEVEL": "debug",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.telegram_api_url == "http://127.0.0.1:8081"
    assert settings.freepik_api_url == "http://127.0.0.1:9000"
    assert settings.rate_limit == "2/minute"
    assert settings.admin_ids == frozenset({1, 22, 333})
    assert settings.max_concurrent_jobs == 3
    assert settings.log_level == "DEBUG"


def test_reads_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nFREEPIK_API_KEY={KEY}\n")
    assert load_settings().freepik_api_key.get_secret_value() == KEY


def test_empty_rate_limit_means_unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT", "")
    settings = load_settings(telegram_bot_token=TOKEN, freepik_api_key=KEY)
    assert settings.rate_limits == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FREEPIK_API_KEY": KEY}, "TELEGRAM_BOT_TOKEN is required"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN}, "FREEPIK_API_KEY is required"),
        ({"TELEGRAM_BOT_TOKEN": "not-a-token", "FREEPIK_API_KEY": KEY}, "TELEGRAM_BOT_TOKEN"),
        ({"RATE_LIMIT": "5/minit"}, "RATE_LIMIT"),
        ({"MAX_CONCURRENT_JOBS": "0"}, "MAX_CONCURRENT_JOBS"),
        ({"MAX_CONCURRENT_JOBS": "many"}, "MAX_CONCURRENT_JOBS"),
        ({"ADMIN_IDS": "12,abc"}, "ADMIN_IDS"),
        ({"TELEGRAM_API_URL": "ftp://example.org"}, "TELEGRAM_API_URL"),
        ({"FREEPIK_API_URL": "not a url"}, "FREEPIK_API_URL"),
        ({"STORAGE_URL": "mongodb://localhost"}, "STORAGE_URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_bad_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    base = {"TELEGRAM_BOT_TOKEN": TOKEN, "FREEPIK_API_KEY": KEY}
    if "is required" not in named:
        env = base | env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert named in message
    assert "\n" not in message
    assert TOKEN not in message
    assert KEY not in message


def test_malformed_secret_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    bad_token = "123:short secret with spaces"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", bad_token)
    monkeypatch.setenv("FREEPIK_API_KEY", "key with spaces")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "TELEGRAM_BOT_TOKEN" in str(caught.value)
    assert "FREEPIK_API_KEY" in str(caught.value)
    assert "short secret" not in str(caught.value)
    assert "key with spaces" not in str(caught.value)


def test_start_with_missing_setting_prints_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FREEPIK_API_KEY": KEY}
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["Configuration error: TELEGRAM_BOT_TOKEN is required but not set"]
    assert "Traceback" not in result.stderr


EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def _example_value(name: str) -> str:
    for line in EXAMPLE.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise LookupError(name)


def test_env_example_lists_every_setting_and_loads_once_the_secrets_are_filled_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    names = {
        line.split("=", 1)[0]
        for line in EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert names == {name.upper() for name in Settings.model_fields}
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    settings = load_settings()
    assert settings.mode == "polling"
    assert settings.inline_storage_chat_id is None


def test_env_example_placeholders_are_refused_by_name_without_echoing_them(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    problems = message.split("; ")
    token_problem = next(p for p in problems if p.startswith("TELEGRAM_BOT_TOKEN"))
    key_problem = next(p for p in problems if p.startswith("FREEPIK_API_KEY"))
    for problem in (token_problem, key_problem):
        assert "example value from .env.example" in problem
        assert "in .env" in problem
    assert "@BotFather" in token_problem
    for name in ("TELEGRAM_BOT_TOKEN", "FREEPIK_API_KEY"):
        assert _example_value(name) not in message
    assert "replace-with" not in message


@pytest.mark.parametrize(
    "token",
    [
        "123456:TEST-token_abcdefghijklmnopqrstuv",  # 33 characters after the colon
        "123456:TEST-token_abcdefghijklmnopqrstuvwxy",  # 36
        "bot123456:TEST-token_abcdefghijklmnopqrstuvwx",  # pasted from a URL
        "123456-TEST-token_abcdefghijklmnopqrstuvwx",
        "123456:TEST-token_abcdefghijklmnopqrstu.wx",
    ],
)
def test_malformed_token_is_refused_with_its_shape_and_where_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("TELEGRAM_BOT_TOKEN: ")
    assert "35 characters" in message
    assert ".env" in message
    assert token.split(":")[-1] not in message
    assert "TEST-token" not in message


def test_start_with_the_example_env_names_the_settings_not_the_network(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    closed = f"http://127.0.0.1:{free_port()}"  # nothing leaves this machine
    env = {"PATH": "/usr/bin:/bin", "TELEGRAM_API_URL": closed, "FREEPIK_API_URL": closed}
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Configuration error: TELEGRAM_BOT_TOKEN")
    assert "FREEPIK_API_KEY" in lines[0]
    assert "reach" not in result.stderr
    assert "replace-with" not in result.stderr


def test_payments_are_off_unless_packs_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    settings = load_settings()
    assert settings.credit_packs == ()
    assert not settings.payments_enabled
    assert settings.free_removal_limits == []
    assert settings.paysupport_text == ""
    assert settings.privacy_url == ""


def test_credit_packs_free_removals_and_privacy_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import CreditPack

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    monkeypatch.setenv("CREDIT_PACKS", " 10:25, 50:100,200:350 ")
    monkeypatch.setenv("FREE_REMOVALS", "3/day")
    monkeypatch.setenv("PAYSUPPORT_TEXT", "  Write to @owner.  ")
    monkeypatch.setenv("PRIVACY_URL", "https://example.org/privacy/")
    settings = load_settings()
    assert settings.credit_packs == (CreditPack(10, 25), CreditPack(50, 100), CreditPack(200, 350))
    assert settings.payments_enabled
    assert [str(item) for item in settings.free_removal_limits] == ["3 per 1 day"]
    assert settings.paysupport_text == "Write to @owner."
    assert settings.privacy_url == "https://example.org/privacy"


@pytest.mark.parametrize(
    ("packs", "wording"),
    [
        ("10:0", "two positive whole numbers"),
        ("0:10", "two positive whole numbers"),
        ("-5:10", "two positive whole numbers"),
        ("10", "two positive whole numbers"),
        ("10:25:3", "two positive whole numbers"),
        ("ten:25", "two positive whole numbers"),
        ("10:25,10:30", "two packs of 10 credits"),
        ("10:100001", "too large"),
    ],
)
def test_bad_credit_packs_are_named(
    monkeypatch: pytest.MonkeyPatch, packs: str, wording: str
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    monkeypatch.setenv("CREDIT_PACKS", packs)
    with pytest.raises(ConfigError, match=f"CREDIT_PACKS: .*{wording}"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"), [("FREE_REMOVALS", "three a day"), ("PRIVACY_URL", "ftp://x/y")]
)
def test_bad_payment_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name}:"):
        load_settings()
