"""Client for Freepik's remove-background endpoint and its error family."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
)
from tenacity.stop import stop_base

logger = logging.getLogger(__name__)

# Freepik is being rebranded; the header name lives here and nowhere else.
API_KEY_HEADER = "x-freepik-api-key"
REMOVE_BACKGROUND_PATH = "/v1/ai/beta/remove-background"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_RESULT_BYTES = 50 * 1024 * 1024  # Telegram's upload limit for documents

T = TypeVar("T")


class FreepikError(Exception):
    """Base of every error the Freepik client raises."""


class ImageRejected(FreepikError):
    """Freepik could not read or accept the image (HTTP 400/415/422)."""


class InvalidApiKey(FreepikError):
    """The API key is missing, wrong or not allowed to use the endpoint."""


class QuotaExceeded(FreepikError):
    """Rate limited or out of credits, still so after the retries."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(FreepikError):
    """5xx answers, timeouts or transport failures, still so after the retries."""


class MalformedResponse(FreepikError):
    """Freepik answered 200 with something that is not the documented JSON."""


class ResultExpired(FreepikError):
    """The temporary result link has lapsed (403/404/410 on download)."""


class ResultInvalid(FreepikError):
    """The downloaded result is not a PNG or is larger than Telegram accepts."""


class ResultTooLarge(ResultInvalid):
    """The result is larger than Telegram's upload limit."""


class RemovalResult(BaseModel):
    """The documented answer: four temporary URLs."""

    original: str
    high_resolution: str
    preview: str
    url: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter for transient failures."""

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_retry_after: float = 30.0  # longer Retry-After: give up now, the user retries later
    total_budget: float = 90.0

    def wait(self, state: RetryCallState) -> float:
        """Seconds to sleep before the next attempt: Retry-After if given, else backoff."""
        retry_after = _retry_after_of(state)
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_wait, self.initial_wait * 2 ** (state.attempt_number - 1))
        return float(random.uniform(0, ceiling))  # noqa: S311 - jitter, not cryptography


def _retry_after_of(state: RetryCallState) -> float | None:
    error = state.outcome.exception() if state.outcome else None
    return error.retry_after if isinstance(error, QuotaExceeded) else None


class _StopOnLongRetryAfter(stop_base):
    """Give up at once when Freepik asks for a longer pause than we are willing to hold."""

    def __init__(self, limit: float) -> None:
        self._limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        retry_after = _retry_after_of(retry_state)
        return retry_after is not None and retry_after > self._limit


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return str(body)[:200]


class _RetryableQuota(QuotaExceeded):
    """A 429/402 that may clear up if we wait."""


class _RetryableOutage(ServiceUnavailable):
    """A 5xx or transport failure that may clear up if we wait."""


class FreepikClient:
    """Owns one pooled `httpx.AsyncClient` for Freepik calls and result downloads."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.freepik.com",
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: Callable[[str], None] | None = None,
    ) -> None:
        self._api_key = api_key
        self._observe = observer or (lambda status: None)
        self._endpoint = base_url.rstrip("/") + REMOVE_BACKGROUND_PATH
        self._retry = retry or RetryPolicy()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=10.0, read=timeout, write=30.0, pool=30.0),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            transport=transport,
            headers={"user-agent": "nobg-bot/0.1"},
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def remove_background(self, image_url: str) -> RemovalResult:
        """Ask Freepik to cut out the image at `image_url` and return the result links."""
        return await self._with_retries(lambda: self._remove_once(image_url))

    async def download_result(self, url: str, *, max_bytes: int = MAX_RESULT_BYTES) -> bytes:
        """Download a result PNG (streamed, capped at `max_bytes`)."""
        return await self._with_retries(lambda: self._download_once(url, max_bytes))

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        policy = self._retry
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((_RetryableQuota, _RetryableOutage)),
            wait=policy.wait,
            stop=stop_any(
                stop_after_attempt(policy.attempts),
                stop_after_delay(policy.total_budget),
                _StopOnLongRetryAfter(policy.max_retry_after),
            ),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                return await attempt()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "Freepik attempt %d failed (%s); retrying in %.2fs",
            state.attempt_number,
            error,
            state.upcoming_sleep,
        )

    async def _remove_once(self, image_url: str) -> RemovalResult:
        try:
            response = await self._client.post(
                self._endpoint,
                data={"image_url": image_url},
                headers={API_KEY_HEADER: self._api_key, "accept": "application/json"},
            )
        except httpx.TimeoutException as err:
            self._observe("timeout")
            raise _RetryableOutage("Freepik timed out") from err
        except httpx.TransportError as err:
            self._observe("transport")
            raise _RetryableOutage(f"cannot reach Freepik: {type(err).__name__}") from err
        self._observe(str(response.status_code))
        self._raise_for_status(response)
        try:
            return RemovalResult.model_validate_json(response.content)
        except ValidationError as err:
            raise MalformedResponse("Freepik's answer is not the documented JSON") from err

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        status = response.status_code
        if status < 300:
            return
        message = f"HTTP {status}: {_message_of(response)}"
        if status in (400, 413, 415, 422):
            raise ImageRejected(message)
        if status == 401:
            raise InvalidApiKey(message)
        if status == 403:
            lowered = message.lower()
            if any(word in lowered for word in ("credit", "quota", "limit", "balance")):
                raise QuotaExceeded(message)
            raise InvalidApiKey(message)
        if status in (402, 429):
            raise _RetryableQuota(message, retry_after=_retry_after_seconds(response))
        if status >= 500:
            raise _RetryableOutage(message)
        raise MalformedResponse(message)

    async def _download_once(self, url: str, max_bytes: int) -> bytes:
        # No API key here: result links may live on another host.
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code in (403, 404, 410):
                    raise ResultExpired(f"result link answered HTTP {response.status_code}")
                if response.status_code >= 500:
                    raise _RetryableOutage(f"result download answered {response.status_code}")
                if response.status_code != 200:
                    raise ResultInvalid(f"result download answered {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise ResultTooLarge(f"result is {declared} bytes, over {max_bytes}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ResultTooLarge(f"result is over {max_bytes} bytes")
                    chunks.append(chunk)
        except httpx.TimeoutException as err:
            raise _RetryableOutage("result download timed out") from err
        except httpx.TransportError as err:
            raise _RetryableOutage(f"result download failed: {type(err).__name__}") from err
        data = b"".join(chunks)
        if not data.startswith(PNG_SIGNATURE):
            raise ResultInvalid("result is not a PNG")
        return data
