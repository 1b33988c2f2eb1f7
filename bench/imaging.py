"""Each studio image function alone: p50 time and peak memory, in this one process, one thread.

    python -m bench.imaging                 # 25 MP and ~1 MiB cutouts, 3 and 5 runs each
    python -m bench.imaging --repeats 1 --only sticker,crop

The cutouts are phase 7's (`bench.studio.make_cutout`): a smooth 5000 x 5000 one (under 20 MB,
as Telegram lets a bot download) and the ~1.4 MB cutout of a 1280 x 960 photo. "My background"
lays the first on a 4000 x 3000 JPEG (a phone photo sent as a file) and the second on a
1280 x 960 one (a photo as Telegram sends it). Peak memory is the process's resident high-water
mark, reset before each run (`/proc/self/clear_refs`), minus what was resident before it; each
action runs in a fork of the process, so none inherits the heap another one grew.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Callable

from PIL import Image

from bench.studio import make_cutout
from bot.imaging import edits  # starts libvips on first use, on one thread as in the pool

WHITE = (255, 255, 255)


def photo(size: tuple[int, int]) -> bytes:
    """A photo-like JPEG: gradients with grain, so it compresses like a real one."""
    width, height = size
    gradient = Image.linear_gradient("L")
    grain = Image.effect_noise((width // 4, height // 4), 30).resize(size)
    image = Image.merge(
        "RGB",
        (
            gradient.resize(size),
            grain,
            gradient.transpose(Image.Transpose.ROTATE_90).resize(size),
        ),
    )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def actions(background: bytes) -> dict[str, Callable[[bytes], bytes]]:
    """Every studio action as a function of the cutout's bytes."""
    return {
        "sticker": edits.sticker,
        "crop": edits.crop,
        "white": lambda data: edits.flatten(data, WHITE),
        "shop_photo": edits.shop_photo,
        "background": lambda data: edits.with_background(data, background),
        "shadow": edits.shadow,
        "outline": edits.outline_sticker,
    }


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    # Writing 5 resets VmHWM to the current resident size (Linux 4.0+).
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def measure(function: Callable[[bytes], bytes], data: bytes, repeats: int) -> dict[str, float]:
    """p50 wall and CPU time, and the largest growth of resident memory over `repeats` runs."""
    times: list[float] = []
    cpu: list[float] = []
    grown = 0
    size = 0
    for _ in range(repeats):
        _reset_peak()
        before = _status("VmRSS")
        started, started_cpu = time.perf_counter(), time.process_time()
        size = len(function(data))
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        grown = max(grown, _status("VmHWM") - before)
    return {
        "p50_ms": round(statistics.median(times) * 1000, 1),
        "cpu_ms": round(statistics.median(cpu) * 1000, 1),
        "peak_mb": round(grown / 1e6, 1),
        "out_kb": round(size / 1024),
    }


def in_child(
    function: Callable[[bytes], bytes], data: bytes, warm_up: bytes, repeats: int
) -> dict[str, float]:
    """`measure` in a forked copy of this process, so no action runs on another's leftover heap.

    This process never starts libvips itself (its threads do not survive a fork): each child
    starts it, with one untimed run on the small `warm_up` cutout.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            function(warm_up)
            result = json.dumps(measure(function, data, repeats))
        except Exception as err:  # the table shows it instead of dying
            result = json.dumps({"error": f"{type(err).__name__}: {err}"})
        with os.fdopen(write, "w") as pipe:
            pipe.write(result)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer: dict[str, float] = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return answer


def main(argv: list[str] | None = None) -> int:
    """Time every action on both cutouts and print a table."""
    parser = argparse.ArgumentParser(prog="python -m bench.imaging", description=__doc__)
    parser.add_argument("--repeats", type=int, default=0, help="runs per action (default 3/5)")
    parser.add_argument("--only", default="", help="comma-separated actions")
    parser.add_argument("--sizes", default="1 MiB,25 MP", help="comma-separated cutout sizes")
    args = parser.parse_args(argv)
    cases = {
        "25 MP": (make_cutout((5000, 5000), 40, 32, 1), photo((4000, 3000)), 3),
        "1 MiB": (make_cutout((1280, 960), 10, 1, 6), photo((1280, 960)), 5),
    }
    only = {name for name in args.only.split(",") if name}
    print(f"{'cutout':<7} {'action':<11} {'p50 ms':>8} {'cpu ms':>8} {'peak MB':>8} {'out KB':>7}")
    for size in args.sizes.split(","):
        data, background, repeats = cases[size]
        print(f"{size} cutout: {len(data) / 2**20:.2f} MiB; background {len(background) >> 10} KB")
        for name, function in actions(background).items():
            if only and name not in only:
                continue
            row = in_child(function, data, cases["1 MiB"][0], args.repeats or repeats)
            if "error" in row:
                print(f"{size:<7} {name:<11} {row['error']}")
                continue
            print(
                f"{size:<7} {name:<11} {row['p50_ms']:>8} {row['cpu_ms']:>8} "
                f"{row['peak_mb']:>8} {row['out_kb']:>7}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
