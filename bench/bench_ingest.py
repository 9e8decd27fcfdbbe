#!/usr/bin/env python3
"""Hostile input: CPU per byte of adversarial inline Markdown, and the desk's wait while heavy briefs publish.

Run from the repository root:

    .venv/bin/python bench/bench_ingest.py [--heavy 6] [--size 1500000]

Part 1 parses a brief whose summary is 1 KB, 32 KB, 256 KB and 1 MB of each
hostile pattern (brackets, emphasis runs, backticks, image openers, nested
quotes) and prints CPU microseconds per byte (``time.process_time``). Past
``MAX_MARKUP`` a field is plain text, so the cost per byte falls, never grows.

Part 2 drops ``--heavy`` briefs of ``--size`` bytes each (prose plus a few
hundred takes) into a folder and runs one pipeline scan in a thread; the main
thread meanwhile approves and holds another story (the desk's two actions)
as fast as it can and records each call's latency. Target (issue 12): every
desk action under 200 ms while heavy briefs are parsed and rendered.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from publisher import store  # noqa: E402
from publisher.briefs import lint  # noqa: E402
from publisher.core import config  # noqa: E402
from publisher.publish.pipeline import Pipeline  # noqa: E402
from tests.support.project import brief_text  # noqa: E402

PATTERNS = {"brackets": "[", "emphasis": "*a ", "backticks": "`a", "images": "![", "links": "[a](", "quotes": "\n> > > q"}
SIZES = (1_000, 32_000, 256_000, 1_000_000)


def inline_table() -> None:
    print("CPU µs per byte of a hostile summary (parse_brief)")
    print(f"{'pattern':<10}" + "".join(f"{s:>12,}" for s in SIZES))
    for name, unit in PATTERNS.items():
        row = []
        for size in SIZES:
            data = brief_text("x", "X", summary=(unit * (size // len(unit) + 1))[:size]).encode()
            start = time.process_time()
            lint(data, "x.md")
            row.append((time.process_time() - start) / size * 1e6)
        print(f"{name:<10}" + "".join(f"{v:>12.3f}" for v in row))


def heavy_brief(n: int, size: int) -> str:
    takes = "".join(
        f"- **Outlet {i}** (Region {i % 40}, en) — A take with a [link](https://e.example/{i}) and *emphasis*.\n"
        f"  Source: https://e.example/s/{i}\n"
        for i in range(300)
    )
    prose = ("Plain prose about the story, with a [source](https://e.example/p) now and then. " * (size // 80))[:size]
    text = brief_text(f"heavy-{n}", f"Heavy {n}", summary=prose)
    return text.replace("### Wire services\n", "### Wire services\n" + takes)


def desk_wait(heavy: int, size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = config.from_mapping({"paths": {"briefs": "briefs", "public": "public", "state": "state", "templates": "none"},
                                   "briefs": {"max_bytes": 4 * size}, "email": {"max_html_bytes": 10 * size}}, base=root)
        for folder in (cfg.paths.briefs, cfg.paths.state):
            folder.mkdir()
        old = time.time() - 60
        (cfg.paths.briefs / "desk.md").write_text(brief_text("desk", "Desk"))
        os.utime(cfg.paths.briefs / "desk.md", (old, old))
        pub = Pipeline(cfg, store.connect(cfg.store_url))
        pub.sync()
        for n in range(heavy):
            path = cfg.paths.briefs / f"heavy-{n}.md"
            path.write_text(heavy_brief(n, size))
            os.utime(path, (old, old))
        scan = threading.Thread(target=pub.sync)
        start = time.monotonic()
        scan.start()
        waits: list[float] = []
        action = pub.approve
        while scan.is_alive():
            t = time.monotonic()
            action("desk")
            waits.append(time.monotonic() - t)
            action = pub.hold if action == pub.approve else pub.approve
        scan.join()
        took = time.monotonic() - start
        waits.sort()
        print(f"\n{heavy} heavy briefs of {size:,} bytes published in {took:.1f} s; {len(waits)} desk actions meanwhile")
        print(f"desk action latency: p50 {statistics.median(waits) * 1000:.1f} ms, "
              f"p95 {waits[int(len(waits) * 0.95) - 1] * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms (target < 200 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heavy", type=int, default=6)
    ap.add_argument("--size", type=int, default=1_500_000)
    args = ap.parse_args()
    inline_table()
    desk_wait(args.heavy, args.size)


if __name__ == "__main__":
    main()
