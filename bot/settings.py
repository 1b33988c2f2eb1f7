"""Settings: the only place that reads the environment."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import limits
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# BotFather's tokens: the bot's numeric id, a colon, then 35 characters of A-Za-z0-9_-.
_TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{35}$")
# The values .env.example ships with: a copied example must fail here, not at the first
# Telegram or Freepik call (where it would read as a network or authorisation problem).
EXAMPLE_TOKEN = "123456789:replace-with-your-token-from-botfather"  # noqa: S105
EXAMPLE_FREEPIK_KEY = "replace-with-your-freepik-api-key"
_FIX_IN = "in .env (or the environment)"
_SUPPORTED_STORAGE = ("sqlite", "memory", "redis", "rediss")
SQLITE_FILE = "nobg.sqlite3"
_SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_HEADER_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


# Telegram accepted one-off Stars invoices up to this amount when last measured.
MAX_PACK_STARS = 100_000
MAX_PACK_CREDITS = 1_000_000


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and never echoes secrets."""


@dataclass(frozen=True, slots=True)
class CreditPack:
    """One pack on sale: this many credits (removals) for this many Telegram Stars."""

    credits: int
    stars: int


def parse_credit_packs(value: str) -> tuple[CreditPack, ...]:
    """`10:25,50:100` -> packs in the given order; ValueError names what is wrong."""
    packs: list[CreditPack] = []
    for raw in value.replace(";", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        credits_text, sep, stars_text = item.partition(":")
        try:
            credits, stars = int(credits_text.strip()), int(stars_text.strip())
        except ValueError:
            credits = stars = 0
        if not sep or credits <= 0 or stars <= 0:
            raise ValueError(
                f"{item!r} is not credits:Stars with two positive whole numbers, e.g. 10:25"
            )
        if credits > MAX_PACK_CREDITS or stars > MAX_PACK_STARS:
            raise ValueError(
                f"{item!r} is too large (at most {MAX_PACK_CREDITS} credits "
                f"and {MAX_PACK_STARS} Stars)"
            )
        if any(p.credits == credits for p in packs):
            raise ValueError(f"two packs of {credits} credits; each pack size once")
        packs.append(CreditPack(credits, stars))
    return tuple(packs)


class Settings(BaseSettings):
    """Every knob of the bot, read from environment variables or a `.env` file."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        hide_input_in_errors=True,
    )

    telegram_bot_token: SecretStr
    freepik_api_key: SecretStr
    telegram_api_url: str = "https://api.telegram.org"
    freepik_api_url: str = "https://api.freepik.com"
    # The key's header follows the host: x-magnific-api-key with https://api.magnific.com.
    freepik_api_key_header: str = "x-freepik-api-key"
    rate_limit: str = "5/minute;50/day"
    # Empty: the SQLite database DATA_DIR/nobg.sqlite3 (filled in by `_default_storage`).
    storage_url: str = ""
    data_dir: Path = Path("data")
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    # Starts that may try an unfinished request before its user is told it failed.
    request_attempts: int = Field(default=3, ge=1, le=100)
    # Webhook mode with Redis: seconds a replica may hold an update without renewing its hold
    # before another replica takes it over.
    stream_lease: float = Field(default=30.0, gt=0, le=3600)
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    max_concurrent_jobs: int = Field(default=8, ge=1, le=1000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    freepik_timeout: float = Field(default=60.0, gt=0, le=600)
    # Deadlines: a trickling result link or a stalled peer must not hold a job slot forever.
    result_download_timeout: float = Field(default=120.0, gt=0, le=3600)
    job_timeout: float = Field(default=240.0, gt=0, le=3600)
    shutdown_grace: float = Field(default=60.0, ge=0, le=3600)
    chat_rate_limit: str = ""
    # Hints ("send me a photo...") per user; past it unusable messages get no reply for a while.
    hint_rate_limit: str = "5/minute;20/hour"
    cache_ttl: int = Field(default=30 * 24 * 3600, ge=0)
    inline_storage_chat_id: int | None = None
    inline_answer_timeout: float = Field(default=6.0, gt=0, le=30)
    album_wait: float = Field(default=1.0, gt=0, le=10)
    # Empty: `nobg:<bot id>:`, so bots sharing one Redis never see each other's file ids.
    redis_prefix: str = Field(default="", max_length=64)
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
    webhook_path: str = "/telegram"
    listen_host: str = "0.0.0.0"  # noqa: S104 - a service in a container listens on all interfaces
    listen_port: int = Field(default=8080, ge=1, le=65535)
    # The HTTP port may face the internet: idle and half-sent connections are dropped.
    http_header_timeout: float = Field(default=10.0, gt=0, le=300)
    http_max_connections: int = Field(default=512, ge=1, le=100_000)
    photo_url_mode: Literal["telegram", "relay"] = "telegram"
    public_base_url: str = ""
    relay_ttl: float = Field(default=300.0, gt=0, le=3600)
    log_format: Literal["text", "json"] = "text"
    telegram_max_rate: float = Field(default=30.0, ge=0)
    # Freepik's documented per-IP limit is 10 requests/s averaged over 2 minutes.
    freepik_max_rate: float = Field(default=10.0, ge=0, le=1000)
    freepik_daily_budget: int | None = Field(default=None, ge=1)
    # Image work (conversions, studio) runs in worker processes; 0 = one per CPU.
    image_workers: int = Field(default=0, ge=0, le=64)
    image_queue: int = Field(default=32, ge=0, le=10_000)
    # Telegram Stars: removals free per user (limits syntax; empty = unlimited), and the packs
    # of credits on sale past them (`credits:Stars,...`; empty = payments off).
    free_removals: str = ""
    credit_packs: Annotated[tuple[CreditPack, ...], NoDecode] = ()
    # The /paysupport answer (empty: the built-in text, translated) and a privacy policy link.
    paysupport_text: str = Field(default="", max_length=3000)
    privacy_url: str = ""

    @field_validator("telegram_bot_token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if token == EXAMPLE_TOKEN:
            raise ValueError(
                f"still the example value from .env.example: put the token @BotFather gave "
                f"you {_FIX_IN}"
            )
        if not _TOKEN_RE.match(token):
            raise ValueError(
                "does not look like a bot token from @BotFather (<digits>:<35 characters of "
                f"A-Z, a-z, 0-9, _ and ->): copy it again {_FIX_IN}"
            )
        return SecretStr(token)

    @field_validator("freepik_api_key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value().strip()
        if key == EXAMPLE_FREEPIK_KEY:
            raise ValueError(
                "still the example value from .env.example: put your key from "
                f"https://www.freepik.com/api {_FIX_IN}"
            )
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"must be a non-empty key without spaces (fix it {_FIX_IN})")
        return SecretStr(key)

    @field_validator("telegram_api_url", "freepik_api_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://api.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must not contain a query or fragment")
        return value.strip().rstrip("/")

    @field_validator("freepik_api_key_header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEADER_RE.match(value):
            raise ValueError("must be an HTTP header name such as x-freepik-api-key")
        return value

    @field_validator("rate_limit", "chat_rate_limit", "hint_rate_limit", "free_removals")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                limits.parse_many(value)
            except ValueError as err:
                raise ValueError(
                    f"{value!r} is not in the limits syntax, e.g. '5/minute;50/day'"
                ) from err
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        scheme = urlsplit(value).scheme.removeprefix("async+")
        if scheme not in _SUPPORTED_STORAGE:
            raise ValueError(
                f"unsupported scheme {scheme!r}; use sqlite://PATH, memory:// "
                "or redis://host:port/db"
            )
        return value

    @model_validator(mode="after")
    def _default_storage(self) -> Settings:
        # `sqlite://` alone, or no STORAGE_URL at all, means the database in DATA_DIR.
        if self.storage_url.removeprefix("async+") in ("", "sqlite://"):
            self.storage_url = f"sqlite://{self.data_dir.absolute() / SQLITE_FILE}"
        return self

    @field_validator("mode", "photo_url_mode", "log_format", "sqlite_synchronous", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("webhook_path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError("must be a URL path starting with /, e.g. /telegram")
        return value

    @field_validator("credit_packs", mode="before")
    @classmethod
    def _parse_packs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_credit_packs(value)
        return value

    @field_validator("paysupport_text")
    @classmethod
    def _strip_text(cls, value: str) -> str:
        return value.strip()

    @field_validator("webhook_url", "public_base_url", "privacy_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _default_prefix(self) -> Settings:
        if not self.redis_prefix.strip():
            bot_id = self.telegram_bot_token.get_secret_value().split(":", 1)[0]
            self.redis_prefix = f"nobg:{bot_id}:"
        return self

    @model_validator(mode="after")
    def _check_modes(self) -> Settings:
        if self.mode == "webhook":
            if not self.webhook_url:
                raise ValueError("WEBHOOK_URL is required when MODE=webhook")
            problem = webhook_url_problem(self.webhook_url)
            if problem:
                raise ValueError(f"WEBHOOK_URL {problem}")
            if not _SECRET_TOKEN_RE.match(self.webhook_secret.get_secret_value()):
                raise ValueError(
                    "WEBHOOK_SECRET is required when MODE=webhook: 1-256 characters "
                    "of A-Z, a-z, 0-9, _ and -"
                )
        if self.photo_url_mode == "relay" and not self.public_base_url:
            raise ValueError("PUBLIC_BASE_URL is required when PHOTO_URL_MODE=relay")
        return self

    @property
    def storage_scheme(self) -> str:
        """STORAGE_URL's scheme without `async+`: sqlite, memory, redis or rediss."""
        return urlsplit(self.storage_url.removeprefix("async+")).scheme

    @property
    def uses_stream(self) -> bool:
        """Webhook mode on Redis: updates go through the shared Redis Stream."""
        return self.mode == "webhook" and self.storage_scheme in ("redis", "rediss")

    @property
    def serves_http(self) -> bool:
        """Whether the bot runs its HTTP server (webhook mode, or relay links to serve)."""
        return self.mode == "webhook" or self.photo_url_mode == "relay"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("["):
            # The JSON list form pydantic-settings users write for lists: [1, 2].
            try:
                parsed = json.loads(value)
            except ValueError as err:
                raise ValueError("must be a JSON list of Telegram user ids, e.g. [1, 2]") from err
            if not isinstance(parsed, list) or not all(
                isinstance(item, int) and not isinstance(item, bool) for item in parsed
            ):
                raise ValueError("must be a JSON list of Telegram user ids, e.g. [1, 2]")
            return frozenset(parsed)
        if isinstance(value, str):
            items = [item.strip() for item in value.replace(";", ",").split(",")]
            try:
                return frozenset(int(item) for item in items if item)
            except ValueError as err:
                raise ValueError("must be Telegram user ids separated by commas") from err
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @property
    def rate_limits(self) -> list[limits.RateLimitItem]:
        """The parsed per-user limits (empty when unlimited)."""
        return _parsed_limits(self.rate_limit)

    @property
    def hint_rate_limits(self) -> list[limits.RateLimitItem]:
        """The parsed per-user hint limits (empty when unlimited)."""
        return _parsed_limits(self.hint_rate_limit)

    @property
    def free_removal_limits(self) -> list[limits.RateLimitItem]:
        """The parsed free allowance per user (empty when unlimited)."""
        return _parsed_limits(self.free_removals)

    @property
    def payments_enabled(self) -> bool:
        """Whether credit packs are on sale (CREDIT_PACKS set)."""
        return bool(self.credit_packs)

    @property
    def chat_rate_limits(self) -> list[limits.RateLimitItem]:
        """The parsed per-chat limits for groups (empty when unlimited)."""
        return _parsed_limits(self.chat_rate_limit)

    @field_validator("inline_storage_chat_id", "freepik_daily_budget", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def secrets(self) -> list[str]:
        """Secret values that must never reach a log line or a reply."""
        token = self.telegram_bot_token.get_secret_value()
        found = [token, self.freepik_api_key.get_secret_value()]
        if self.webhook_secret.get_secret_value():
            found.append(self.webhook_secret.get_secret_value())
        redis_password = urlsplit(self.storage_url).password
        if redis_password:
            found.append(redis_password)
        return found


# Telegram delivers webhooks only over https, and only to these ports.
WEBHOOK_PORTS = (443, 80, 88, 8443)


def _parsed_limits(value: str) -> list[limits.RateLimitItem]:
    """A setting in the limits syntax, parsed (empty when unset: unlimited)."""
    return limits.parse_many(value) if value else []


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def webhook_url_problem(url: str) -> str:
    """Why Telegram would refuse `url` as a webhook ('' if it would not); loopback is exempt."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _is_loopback(host):
        return ""  # a local Bot API server or a test
    if parts.scheme != "https":
        return "must be an https:// URL: Telegram refuses anything else"
    try:
        port = parts.port or 443
    except ValueError:
        return "has an invalid port"
    if port not in WEBHOOK_PORTS:
        return f"must use port 443, 80, 88 or 8443 (Telegram refuses {port})"
    return ""


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation errors into one readable `ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(describe_errors(err)) from None


def describe_errors(err: ValidationError) -> str:
    """One line naming each bad setting, without echoing any value."""
    problems = []
    for error in err.errors(include_input=False, include_url=False):
        if not error["loc"]:  # a check across settings: its message names them
            problems.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        name = str(error["loc"][0]).upper()
        if error["type"] == "missing":
            problems.append(f"{name} is required but not set")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
    return "; ".join(problems)
