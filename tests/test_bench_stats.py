"""The benchmark's per-job stages: a split of the job's path, never negative."""

from __future__ import annotations

import math

import pytest

from bench.stats import STAGES, JobMarks, job_stages

LATENCY = 1.0


def marks(*, status: float) -> JobMarks:
    """A job handed at 10 s whose getFile came 5 ms later and whose PNG was done at 11.1 s."""
    return JobMarks(
        handed=10.0,
        status=status,
        get_file=10.005,
        freepik_arrived=10.010,
        freepik_answered=11.012,
        downloaded=11.040,
        upload_arrived=11.050,
        done=11.100,
    )


@pytest.mark.parametrize(
    "status",
    [
        10.003,  # uncapped: the status message arrives before getFile
        10.400,  # TELEGRAM_MAX_RATE capped: the status waits its turn, the job goes on
    ],
)
def test_stages_split_the_job_and_none_is_negative(status: float) -> None:
    job = marks(status=status)
    stages = job_stages(job, LATENCY)
    assert set(stages) == set(STAGES)
    assert all(value >= 0 for value in stages.values()), stages
    split = sum(value for name, value in stages.items() if name != "status")
    assert math.isclose(split, job.done - job.handed - LATENCY)
    assert math.isclose(stages["status"], status - job.handed)
    assert math.isclose(stages["dispatch"], 0.005)
    assert math.isclose(stages["freepik_extra"], 0.002)
