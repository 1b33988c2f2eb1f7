"""How a request ended: the outcomes counted and logged, and the user's explanation of each."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

from bot.i18n import messages
from bot.imaging.convert import TooManyPixels, UnreadableImage
from bot.imaging.pool import CpuBusy
from bot.removal import freepik
from bot.removal.cutouts import Role
from bot.removal.pipeline import JobAborted, JobTimedOut, LinkNotAnImage, LinkNotFound
from bot.removal.sources import SourceTooLarge, SourceUnavailable
from bot.requests.spending import BudgetExhausted
from bot.storage.base import StorageUnavailable


class Outcome(StrEnum):
    """How a job ended, as logged and counted."""

    OK = "ok"
    BAD_INPUT = "bad_input"
    RATE_LIMITED = "rate_limited"
    INPUT_TOO_LARGE = "input_too_large"
    SOURCE_UNAVAILABLE = "source_unavailable"
    REJECTED = "rejected"
    BAD_KEY = "bad_key"
    BUSY = "busy"
    OUT_OF_CAPACITY = "out_of_capacity"
    BUDGET_SPENT = "budget_spent"
    MISCONFIGURED = "misconfigured"
    UNAVAILABLE = "unavailable"
    RESULT_TOO_LARGE = "result_too_large"
    UNDELIVERABLE = "undeliverable"
    ABORTED = "aborted"
    TIMED_OUT = "timed_out"
    STORAGE_DOWN = "storage_down"
    INTERNAL_ERROR = "internal_error"


# What users do or run into on their own (a bad image, a limit, a blocked chat): logged at INFO.
# The rest points at trouble on our side or upstream (a bad key, Freepik down, storage, a bug)
# and is a WARNING the operator should see.
ROUTINE: frozenset[str] = frozenset(
    {
        Outcome.OK,
        Outcome.BAD_INPUT,
        Outcome.RATE_LIMITED,
        Outcome.INPUT_TOO_LARGE,
        Outcome.SOURCE_UNAVAILABLE,
        Outcome.REJECTED,
        Outcome.RESULT_TOO_LARGE,
        Outcome.UNDELIVERABLE,
    }
)


def log_level(outcome: str) -> int:
    """INFO for a routine outcome, WARNING for one the operator should look at."""
    return logging.INFO if outcome in ROUTINE else logging.WARNING


# Order matters: subclasses before their bases.
_FAILURES: list[tuple[type[BaseException], Outcome, Callable[[], str]]] = [
    (SourceTooLarge, Outcome.INPUT_TOO_LARGE, messages.input_too_large),
    (SourceUnavailable, Outcome.SOURCE_UNAVAILABLE, messages.source_unavailable),
    (TooManyPixels, Outcome.INPUT_TOO_LARGE, messages.too_many_pixels),
    (UnreadableImage, Outcome.REJECTED, messages.image_rejected),
    (CpuBusy, Outcome.BUSY, messages.busy),
    (LinkNotFound, Outcome.REJECTED, messages.link_not_found),
    (LinkNotAnImage, Outcome.REJECTED, messages.link_not_an_image),
    (freepik.ImageRejected, Outcome.REJECTED, messages.image_rejected),
    (freepik.InvalidApiKey, Outcome.BAD_KEY, messages.misconfigured),
    (freepik.OutOfCapacity, Outcome.OUT_OF_CAPACITY, messages.out_of_capacity),
    (BudgetExhausted, Outcome.BUDGET_SPENT, messages.budget_used_up),
    (freepik.QuotaExceeded, Outcome.BUSY, messages.busy),
    (freepik.UnexpectedRedirect, Outcome.MISCONFIGURED, messages.misconfigured),
    (freepik.ServiceUnavailable, Outcome.UNAVAILABLE, messages.unavailable),
    (freepik.ResultTooLarge, Outcome.RESULT_TOO_LARGE, messages.result_too_large),
    # Malformed answers, lapsed links twice in a row, results that are not PNGs.
    (freepik.FreepikError, Outcome.UNAVAILABLE, messages.unavailable),
    (freepik.ResultInvalid, Outcome.UNAVAILABLE, messages.unavailable),
    (JobAborted, Outcome.ABORTED, messages.aborted),
    (JobTimedOut, Outcome.TIMED_OUT, messages.timed_out),
    (StorageUnavailable, Outcome.STORAGE_DOWN, messages.temporarily_unavailable),
]

# The cache metric's word for each way a request got its cutout.
CACHE_RESULT = {Role.CACHED: "hit", Role.LEADER: "miss", Role.FOLLOWER: "joined"}


def classify(error: BaseException) -> tuple[Outcome, str]:
    """Map a pipeline error to its outcome and the user's explanation."""
    for kind, outcome, text in _FAILURES:
        if isinstance(error, kind):
            return outcome, text()
    return Outcome.INTERNAL_ERROR, messages.internal_error()


def log_failure(log: logging.Logger, outcome: Outcome, err: BaseException, what: str) -> None:
    """One line about a failed job: an error for a bad key or a bug, else routine info."""
    if outcome is Outcome.BAD_KEY:
        log.error("Freepik refused the API key (%s): check FREEPIK_API_KEY", err)
    elif outcome is Outcome.INTERNAL_ERROR:
        log.error("Unexpected error in %s", what, exc_info=err)
    else:
        log.info("%s failed: %s: %s", what.capitalize(), type(err).__name__, err)
