"""Client for Freepik's remove-background endpoint and its error family."""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError, model_validator
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
)
from tenacity.retry import retry_base
from tenacity.stop import stop_base

logger = logging.getLogger(__name__)

# Freepik is being rebranded (api.magnific.com, x-magnific-api-key): FREEPIK_API_KEY_HEADER.
API_KEY_HEADER = "x-freepik-api-key"
REMOVE_BACKGROUND_PATH = "/v1/ai/beta/remove-background"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_RESULT_BYTES = 50 * 1024 * 1024  # Telegram's upload limit for documents
MAX_DOWNLOAD_REDIRECTS = 5

T = TypeVar("T")


class FreepikError(Exception):
    """Base of every error the Freepik client raises."""


class ImageRejected(FreepikError):
    """Freepik could not read or accept the image (HTTP 400/415/422)."""


class ImageNotFetched(ImageRejected):
    """Freepik could not download the image from `image_url` (400 "Failed to download...")."""


class InvalidApiKey(FreepikError):
    """The API key is missing, wrong or not allowed to use the endpoint."""


class QuotaExceeded(FreepikError):
    """Rate limited, still so after the retries (or out of credits: `OutOfCapacity`)."""

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


class OutOfCapacity(QuotaExceeded):
    """Out of credits, or over a daily/monthly quota: waiting minutes will not help."""


class UnexpectedRedirect(FreepikError):
    """The API answered with a redirect; it is never followed (the key must not travel)."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


class RemovalResult(BaseModel):
    """The documented answer: temporary URLs, of which only the cutout's is needed.

    The schema marks no field required; `url` and `high_resolution` are the same file, so
    either stands in for the other and the answer is malformed only when both are missing.
    """

    original: str | None = None
    high_resolution: str = ""
    preview: str | None = None
    url: str = ""

    @model_validator(mode="before")
    @classmethod
    def _fill_in(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if v not in (None, "")}
        cutout = data.get("high_resolution") or data.get("url")
        if not isinstance(cutout, str):
            raise ValueError("the answer has neither high_resolution nor url")
        data.setdefault("high_resolution", cutout)
        data.setdefault("url", cutout)
        return data


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter for failures that cannot have cost."""

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_retry_after: float = 30.0  # longer Retry-After: give up now, the user retries later
    total_budget: float = 90.0
    # Retries of a POST that may already have been billed (5xx, read timeout).
    billed_retries: int = 1

    def wait(self, state: RetryCallState) -> float:
        """Seconds to sleep before the next attempt: Retry-After if given, else backoff."""
        retry_after = _retry_after_of(state)
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_wait, self.initial_wait * 2 ** (state.attempt_number - 1))
        return float(random.uniform(0, ceiling))  # noqa: S311 - jitter, not cryptography


def _retry_after_of(state: RetryCallState) -> float | None:
    error = state.outcome.exception() if state.outcome else None
    return getattr(error, "retry_after", None)


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
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return str(body)[:200]


# Words in a 403/429 message that mean money or a long quota, not a short burst.
_CAPACITY_WORDS = re.compile(
    r"credit|quota|balance|insufficient|payment|daily|monthly|per day|per month", re.I
)
# Freepik's 400 when it cannot fetch `image_url`: "Failed to download the image".
_NOT_FETCHED = re.compile(r"download", re.IGNORECASE)


class _Unsent(ServiceUnavailable):
    """The request never left: connection refused, connect or pool timeout. Free to retry."""


class _AskedToWait(QuotaExceeded):
    """429 (a short rate limit): Freepik asks us to come back."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after)


class _Overloaded(ServiceUnavailable):
    """503: Freepik says to try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _MaybeBilled(ServiceUnavailable):
    """500/502/504 or a failure after the request was sent: it may have been billed."""


class _DownloadOutage(ServiceUnavailable):
    """A result download failed in a way worth retrying (downloads are free)."""


@dataclass(slots=True)
class PostCount:
    """POSTs for one image that may have reached Freepik (each may be billed)."""

    sent: int = 0
    billed_failures: int = 0


class _RetryRule(retry_base):
    """Retry what cannot have been billed, and at most `billed_retries` of what may have."""

    def __init__(self, count: PostCount, billed_retries: int) -> None:
        self._count = count
        self._billed_retries = billed_retries

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(error, _MaybeBilled):
            return self._count.billed_failures <= self._billed_retries
        return isinstance(error, (_Unsent, _AskedToWait, _Overloaded, _DownloadOutage))


BeforePost = Callable[[int], Awaitable[None]]


class FreepikClient:
    """Owns one pooled `httpx.AsyncClient` for Freepik calls and result downloads."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.freepik.com",
        *,
        api_key_header: str = API_KEY_HEADER,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: Callable[[str], None] | None = None,
        on_post: Callable[[int], None] | None = None,
        on_out_of_capacity: Callable[[int], None] | None = None,
        before_post: BeforePost | None = None,
    ) -> None:
        self._api_key = api_key
        self._api_key_header = api_key_header
        self._observe = observer or (lambda status: None)
        self._on_post = on_post or (lambda attempt: None)
        self._on_out_of_capacity = on_out_of_capacity or (lambda status: None)
        self._before_post = before_post
        self._endpoint = base_url.rstrip("/") + REMOVE_BACKGROUND_PATH
        self._retry = retry or RetryPolicy()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=10.0, read=timeout, write=30.0, pool=30.0),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Never on the POST (the key must not go to another host); downloads opt in.
            follow_redirects=False,
            max_redirects=MAX_DOWNLOAD_REDIRECTS,
            transport=transport,
            headers={"user-agent": "nobg-bot/0.1"},
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def remove_background(
        self, image_url: str, count: PostCount | None = None
    ) -> RemovalResult:
        """Ask Freepik to cut out the image at `image_url` and return the result links.

        `count` carries the POST numbering across calls for the same image (a re-run).
        """
        count = count if count is not None else PostCount()
        rule = _RetryRule(count, self._retry.billed_retries)
        return await self._with_retries(rule, lambda: self._remove_once(image_url, count))

    async def download_result(
        self, url: str, *, max_bytes: int = MAX_RESULT_BYTES
    ) -> tuple[bytes, ...]:
        """Download a result PNG (streamed, capped at `max_bytes`, up to 5 redirects).

        It comes in the pieces it arrived in: joining them would copy the whole PNG into
        fresh memory (a few ms per 4 MiB), and the upload sends the pieces as they are.
        """
        rule = _RetryRule(PostCount(), 0)
        return await self._with_retries(rule, lambda: self._download_once(url, max_bytes))

    async def _with_retries(self, rule: _RetryRule, attempt: Callable[[], Awaitable[T]]) -> T:
        policy = self._retry
        retrying = AsyncRetrying(
            retry=rule,
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

    async def _remove_once(self, image_url: str, count: PostCount) -> RemovalResult:
        attempt = count.sent + 1
        if self._before_post is not None:
            await self._before_post(attempt)
        try:
            response = await self._client.post(
                self._endpoint,
                data={"image_url": image_url},
                headers={self._api_key_header: self._api_key, "accept": "application/json"},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
            # Nothing reached Freepik: retrying costs nothing.
            self._observe("transport")
            raise _Unsent(f"cannot reach Freepik: {type(err).__name__}") from err
        except httpx.TimeoutException as err:
            self._sent(count, billed_failure=True)
            self._observe("timeout")
            raise _MaybeBilled(f"Freepik did not answer in time: {type(err).__name__}") from err
        except httpx.TransportError as err:
            self._sent(count, billed_failure=True)
            self._observe("transport")
            raise _MaybeBilled(f"Freepik connection failed: {type(err).__name__}") from err
        self._sent(
            count, billed_failure=response.status_code >= 500 and response.status_code != 503
        )
        self._observe(str(response.status_code))
        self._raise_for_status(response)
        try:
            return RemovalResult.model_validate_json(response.content)
        except ValidationError as err:
            raise MalformedResponse("Freepik's answer has no cutout link") from err

    def _sent(self, count: PostCount, *, billed_failure: bool) -> None:
        count.sent += 1
        if billed_failure:
            count.billed_failures += 1
        self._on_post(count.sent)

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 300:
            return
        if status < 400:
            location = response.headers.get("location", "(no Location)")
            logger.error(
                "Freepik answered HTTP %d redirecting to %s: not followed (the API key must "
                "not travel); check FREEPIK_API_URL",
                status,
                location,
            )
            raise UnexpectedRedirect(f"HTTP {status} redirect to {location}", location)
        message = f"HTTP {status}: {_message_of(response)}"
        if status == 402 or (status in (403, 429) and _CAPACITY_WORDS.search(message)):
            self._on_out_of_capacity(status)
            logger.error("Freepik is out of capacity (%s): not retried", message)
            raise OutOfCapacity(message)
        if status in (400, 413, 415, 422):
            if status == 400 and _NOT_FETCHED.search(message):
                raise ImageNotFetched(message)
            raise ImageRejected(message)
        if status in (401, 403):
            raise InvalidApiKey(message)
        if status == 429:
            raise _AskedToWait(message, retry_after=_retry_after_seconds(response))
        if status == 503:
            raise _Overloaded(message, retry_after=_retry_after_seconds(response))
        if status >= 500:
            raise _MaybeBilled(message)
        raise MalformedResponse(message)

    async def _download_once(self, url: str, max_bytes: int) -> tuple[bytes, ...]:
        # No API key here: result links may live on another host, so redirects are fine.
        try:
            async with self._client.stream("GET", url, follow_redirects=True) as response:
                if response.status_code in (403, 404, 410):
                    raise ResultExpired(f"result link answered HTTP {response.status_code}")
                if response.status_code >= 500:
                    raise _DownloadOutage(f"result download answered {response.status_code}")
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
        except httpx.TooManyRedirects as err:
            raise ResultInvalid("result download: too many redirects") from err
        except httpx.TimeoutException as err:
            raise _DownloadOutage("result download timed out") from err
        except httpx.TransportError as err:
            raise _DownloadOutage(f"result download failed: {type(err).__name__}") from err
        head = b""
        for chunk in chunks:
            head += chunk[: len(PNG_SIGNATURE) - len(head)]
            if len(head) == len(PNG_SIGNATURE):
                break
        if head != PNG_SIGNATURE:
            raise ResultInvalid("result is not a PNG")
        return tuple(chunks)
