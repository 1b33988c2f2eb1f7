"""Prometheus metrics: one registry per running bot, rendered at `GET /metrics`."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Freepik answers in seconds; queue waits can be long under load.
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
STAGES = ("queue", "freepik", "download", "upload", "total")


class Metrics:
    """The bot's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "nobg_jobs",
            "Requests finished, by input kind, outcome and how the cutout was obtained",
            ["kind", "outcome", "via"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "nobg_job_stage_seconds",
            "Seconds spent per job stage",
            ["stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.freepik_answers = Counter(
            "nobg_freepik_responses",
            "Freepik remove-background answers by HTTP status (or 'timeout'/'transport')",
            ["status"],
            registry=self.registry,
        )
        self.freepik_posts = Counter(
            "nobg_freepik_posts",
            "Freepik remove-background POSTs that may have reached Freepik (each may be "
            "billed), by attempt number for the same image: attempt>1 is a possible extra charge",
            ["attempt"],
            registry=self.registry,
        )
        self.freepik_out_of_capacity = Counter(
            "nobg_freepik_out_of_capacity",
            "Freepik answers meaning out of credits or over a quota (not retried), by status",
            ["status"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "nobg_rate_limit_refusals",
            "Requests refused by a rate limit, by scope (user or chat)",
            ["scope"],
            registry=self.registry,
        )
        self.cache = Counter(
            "nobg_cache_lookups",
            "Result cache lookups: hit, miss, or joined (shared a job in flight)",
            ["result"],
            registry=self.registry,
        )
        self.studio = Counter(
            "nobg_studio_presses",
            "Studio button presses, by action and outcome",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.budget_remaining = Gauge(
            "nobg_freepik_budget_remaining",
            "Freepik calls left today under FREEPIK_DAILY_BUDGET (all replicas; absent: none)",
            registry=self.registry,
        )
        self.stars = Counter(
            "nobg_stars",
            "Telegram Stars received for credit packs, and given back by refunds",
            ["direction"],
            registry=self.registry,
        )
        self.credits = Counter(
            "nobg_credits",
            "Credits sold, spent on Freepik calls, returned after failed jobs, and refunded",
            ["event"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "nobg_jobs_in_flight", "Jobs holding a slot", registry=self.registry
        )
        self.queue_depth = Gauge(
            "nobg_queue_depth", "Jobs waiting for a slot", registry=self.registry
        )

    def bind_gauges(self, in_flight: Callable[[], float], queued: Callable[[], float]) -> None:
        """Read the gauges from the pipeline at scrape time."""
        self.in_flight.set_function(in_flight)
        self.queue_depth.set_function(queued)

    def job_finished(
        self, kind: str, outcome: str, via: str, stages: dict[str, float] | None
    ) -> None:
        """Count a finished request and, if it ran a job, observe its stage times."""
        self.jobs.labels(kind=kind, outcome=outcome, via=via).inc()
        for stage, seconds in (stages or {}).items():
            self.stage_seconds.labels(stage=stage).observe(seconds)

    def freepik_answer(self, status: str) -> None:
        """Count one Freepik answer (or failure to get one)."""
        self.freepik_answers.labels(status=status).inc()

    def freepik_post(self, attempt: int) -> None:
        """Count one POST that may have reached Freepik, by its attempt number for the image."""
        self.freepik_posts.labels(attempt=str(attempt)).inc()

    def out_of_capacity(self, status: int) -> None:
        """Count a Freepik answer saying the account is out of credits or quota."""
        self.freepik_out_of_capacity.labels(status=str(status)).inc()

    def refused(self, scope: str) -> None:
        """Count a rate-limit refusal."""
        self.rate_limited.labels(scope=scope).inc()

    def cache_lookup(self, result: str) -> None:
        """Count a cache lookup: `hit`, `miss` or `joined`."""
        self.cache.labels(result=result).inc()

    def studio_press(self, action: str, outcome: str) -> None:
        """Count one press of a studio button."""
        self.studio.labels(action=action, outcome=outcome).inc()

    def stars_paid(self, amount: int) -> None:
        """Count Stars received for a pack."""
        self.stars.labels(direction="received").inc(amount)

    def stars_refunded(self, amount: int) -> None:
        """Count Stars given back by a refund."""
        self.stars.labels(direction="refunded").inc(amount)

    def credits_changed(self, event: str, amount: int) -> None:
        """Count credits `sold`, `spent`, `returned` (failed job) or `refunded`."""
        self.credits.labels(event=event).inc(amount)

    def totals(self) -> dict[str, int]:
        """This process's counts since it started: `done`, `freepik`, `hit`, `refused`."""
        found = {"done": 0.0, "freepik": 0.0, "hit": 0.0, "refused": 0.0}
        for metric in self.registry.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                if sample.name == "nobg_jobs_total" and sample.labels.get("outcome") == "ok":
                    found["done"] += sample.value
                elif sample.name == "nobg_freepik_posts_total":
                    found["freepik"] += sample.value
                elif sample.name == "nobg_cache_lookups_total":
                    if sample.labels.get("result") == "hit":
                        found["hit"] += sample.value
                elif sample.name == "nobg_rate_limit_refusals_total":
                    found["refused"] += sample.value
        return {key: int(value) for key, value in found.items()}

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
