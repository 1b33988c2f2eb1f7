"""Percentiles and the printed table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The job's path, split at each request the fakes saw; "status" is measured beside it.
STAGES = ("dispatch", "to_freepik", "freepik_extra", "download", "to_upload", "upload", "status")
STAGE_HELP = {
    "dispatch": "update handed -> getFile received (PTB, handler, admission, cache, claim)",
    "to_freepik": "getFile received -> Freepik POST received",
    "freepik_extra": "Freepik POST time beyond the injected latency (the fake's own work)",
    "download": "Freepik answered -> result download fully sent",
    "to_upload": "result download sent -> sendDocument request arrived (headers)",
    "upload": "sendDocument request arrived -> its last body byte received",
    "status": "update handed -> status message received; beside the job, which starts first "
    "(not part of the split: a rate-limited status may arrive after getFile)",
}


@dataclass(frozen=True)
class JobMarks:
    """When the fakes saw each step of one job (seconds on one clock)."""

    handed: float
    status: float  # the status message (sendMessage) received
    get_file: float
    freepik_arrived: float
    freepik_answered: float
    downloaded: float  # the result download fully sent
    upload_arrived: float
    done: float  # the upload's last byte received


def job_stages(marks: JobMarks, latency: float) -> dict[str, float]:
    """The job split along its path (sums to done - handed - latency); the status beside it.

    The job does not wait for its status message: it starts first and the status goes out
    meanwhile. With Telegram's rate capped the status arrives after getFile, so a stage
    "status -> getFile" would be negative: the status is measured from the handing instead.
    """
    return {
        "dispatch": marks.get_file - marks.handed,
        "to_freepik": marks.freepik_arrived - marks.get_file,
        "freepik_extra": marks.freepik_answered - latency - marks.freepik_arrived,
        "download": marks.downloaded - marks.freepik_answered,
        "to_upload": marks.upload_arrived - marks.downloaded,
        "upload": marks.done - marks.upload_arrived,
        "status": marks.status - marks.handed,
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    """Seconds to milliseconds, rounded to 0.1 ms (NaN stays NaN)."""
    return round(seconds * 1000, 1) if not math.isnan(seconds) else math.nan


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of `values` (seconds) in milliseconds."""
    return {
        "p50_ms": ms(percentile(values, 50)),
        "p95_ms": ms(percentile(values, 95)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values)) if values else math.nan,
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned columns after the first."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max(len(str(header)), *(len(row[i]) for row in cells)) if cells else len(str(header))
        for i, header in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.ljust(widths[i]) if i == 0 else value.rjust(widths[i])
            for i, value in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line([str(h) for h in headers]), rule, *(line(row) for row in cells)])


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
