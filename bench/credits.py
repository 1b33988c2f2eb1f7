"""What payments add to admitting a new job: the credits path alone, on a real SQLite file.

    python -m bench.credits                          # 500 timed calls per case
    python -m bench.credits --calls 300 --results credits.json --synchronous full

The bot's own classes on one SQLite file in a fresh directory, as the default STORAGE_URL has it
(`SqliteStore` for the ledger, `SqliteLimitsStorage` for the free allowance, each with its own
connection thread). Each case times what `Till.admit` asks of `Credits` for one new job
(`missing_for(user, 1)`, then `spend(user)`), per call:

- off: payments off (CREDIT_PACKS empty): both calls return at once, nothing is stored.
- credit: FREE_REMOVALS=1/day used up, credits on the balance: the balance and the free window
  are read, the free window refuses, one credit is debited with its ledger entry (one write
  transaction) -- the path of every paid Freepik call.
- debit: `StateStore.debit` alone, the debit and ledger write without the allowance reads.

Issue 17's target: credit p50 at most 2 ms over off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from limits import parse_many

from bot.requests.admission import RateLimiter
from bot.requests.credits import Credits
from bot.settings import CreditPack
from bot.storage.sqlite_store import SqliteLimitsStorage, SqliteStore, synchronous_mode

USERS = 10
WARM_UP = 20
TARGET_MS = 2.0


def summary(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and p99 of `seconds`, in milliseconds."""
    ordered = sorted(seconds)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 3)

    return {
        "calls": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
    }


async def timed(call: Callable[[int], Awaitable[object]], calls: int) -> dict[str, float]:
    """Run `call` for the users in turn: `WARM_UP` untimed calls, then `calls` timed ones."""
    for n in range(WARM_UP):
        await call(n % USERS)
    seconds = []
    for n in range(calls):
        started = time.perf_counter()
        await call(n % USERS)
        seconds.append(time.perf_counter() - started)
    return summary(seconds)


async def run(calls: int, synchronous: str, directory: Path) -> dict[str, object]:
    """Time the three cases on a fresh database in `directory`."""
    path = directory / "nobg.sqlite3"
    store = SqliteStore(path, synchronous=synchronous_mode(synchronous))
    counters = SqliteLimitsStorage(path=path, synchronous=synchronous_mode(synchronous))
    packs = [CreditPack(credits=10, stars=25)]
    free = RateLimiter(parse_many("1/day"), counters, namespace="free")
    off = Credits(store, RateLimiter([], counters, namespace="free"), [])
    paid = Credits(store, free, packs)
    try:
        # Every user: enough credits for every call, and today's free removal used up.
        budget = 2 * (calls + WARM_UP) + 10
        for user in range(USERS):
            await store.credit(user, budget, f"bench-{user}", stars=25)
            first = await paid.spend(user)
            if first is None or first.kind != "free":
                raise RuntimeError(f"the free removal was not spent first: {first}")

        async def till(credits: Credits, user: int) -> None:
            missing = await credits.missing_for(user, 1)
            spent = await credits.spend(user)
            if missing or spent is None or spent.kind not in ("off", "credit"):
                raise RuntimeError(f"unexpected spend: missing {missing}, {spent}")

        async def debit(user: int) -> None:
            if await store.debit(user, note="bench") is None:
                raise RuntimeError("a debit found no credits")

        results = {
            "off": await timed(lambda user: till(off, user), calls),
            "credit": await timed(lambda user: till(paid, user), calls),
            "debit": await timed(debit, calls),
        }
        ledger_rows = len(await store.ledger())
    finally:
        await store.aclose()
        await counters.aclose()
    over = round(results["credit"]["p50_ms"] - results["off"]["p50_ms"], 3)
    return {
        "options": {"calls": calls, "users": USERS, "synchronous": synchronous},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "cases": results,
        "ledger_rows": ledger_rows,
        "credit_over_off_p50_ms": over,
        "target_ms": TARGET_MS,
        "met": over <= TARGET_MS,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print a table, optionally write the results as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.credits", description=__doc__)
    parser.add_argument("--calls", type=int, default=500, help="timed calls per case")
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    parser.add_argument("--results", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-credits-") as directory:
        results = asyncio.run(run(args.calls, args.synchronous, Path(directory)))
    cases = results["cases"]
    if not isinstance(cases, dict):  # pragma: no cover - built above
        raise TypeError(cases)
    print(f"SQLite synchronous={args.synchronous}, {args.calls} calls per case, {USERS} users")
    print(f"{'case':<8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, figures in cases.items():
        print(
            f"{name:<8} {figures['p50_ms']:>8.3f} {figures['p95_ms']:>8.3f} "
            f"{figures['p99_ms']:>8.3f}"
        )
    verdict = "met" if results["met"] else "NOT met"
    print(
        f"credit over off, p50: {results['credit_over_off_p50_ms']:.3f} ms "
        f"(target {TARGET_MS} ms: {verdict})"
    )
    if args.results is not None:
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
