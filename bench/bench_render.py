#!/usr/bin/env python3
"""Render speed of a story issue, and per-recipient personalisation, against node ``mjml``.

Run from the repository root:  .venv/bin/python bench/bench_render.py [--n 300]

In one run, on the same brief and the same MJML source, it measures:

* our whole per-story pipeline: parse the brief, the feed entry HTML
  (``feeds.entry_html``, when the feeds module is present), the email
  (Jinja2 → MJML → HTML, size check) and the plain-text version;
* its parts: parse, Jinja2, mjml-python alone;
* the reference MJML renderer (npm ``mjml``, installed into bench/.work/ by
  this script) compiling the same MJML many times in one warm node process;
* per-recipient cost: ``MessageTemplate.personalize`` against building an
  ``EmailMessage`` per recipient (the naive way).

Targets: our whole pipeline ≤ 0.5 × node mjml's render alone; personalise
≤ 50 µs. The machine is shared and noisy: read the ratios, which compare
numbers taken seconds apart, not the absolute times.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.headerregistry import Address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mjml  # noqa: E402
from jinja2 import Environment  # noqa: E402

from publisher.core import config as config_mod
from publisher.briefs import parse_brief  # noqa: E402
from publisher.briefs.model import Brief  # noqa: E402
from publisher.mail.message import MessageTemplate  # noqa: E402
from publisher.render import email as email_render

WORK = ROOT / "bench" / ".work"
BASE = "https://briefs.example.org/"

NODE_SCRIPT = r"""
// mjml 5 returns a Promise, mjml 4 the result: await covers both.
const mjml2html = require(process.argv[2]);
const fs = require("fs");
const src = fs.readFileSync(process.argv[3], "utf8");
const n = parseInt(process.argv[4], 10);
const opts = process.argv[5] === "skip" ? { validationLevel: "skip" } : {};
(async () => {
  for (let i = 0; i < 20; i++) await mjml2html(src, opts);
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const out = await mjml2html(src, opts);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (i === 0 && !out.html) throw new Error("no html from mjml");
  }
  console.log(JSON.stringify(times));
})();
"""


def ensure_node_mjml() -> Path | None:
    module = WORK / "node_modules" / "mjml"
    if module.exists():
        return module
    if not shutil.which("npm"):
        print("npm not found: skipping node mjml", file=sys.stderr)
        return None
    WORK.mkdir(parents=True, exist_ok=True)
    print("installing npm mjml into bench/.work ...", file=sys.stderr)
    proc = subprocess.run(
        ["npm", "install", "--prefix", str(WORK), "mjml", "--no-audit", "--no-fund"],
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        print(f"npm install failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return module


def node_times(module: Path, source: str, n: int, mode: str = "default") -> list[float]:
    src_file = WORK / "issue.mjml"
    src_file.write_text(source, encoding="utf-8")
    script = WORK / "render.js"
    script.write_text(NODE_SCRIPT, encoding="utf-8")
    out = subprocess.run(
        ["node", str(script), str(module), str(src_file), str(n), mode],
        capture_output=True, text=True, check=True, timeout=600,
    )
    return [float(x) for x in json.loads(out.stdout)]


def node_version(module: Path) -> str:
    return str(json.loads((module / "package.json").read_text())["version"])


def timed(fn: Callable[[], object], n: int, warmup: int = 10) -> list[float]:
    """Milliseconds per call, one sample per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def naive_message(issue: email_render.RenderedIssue, cfg: config_mod.Config, to: str, url: str, mid: str) -> bytes:
    """What a per-recipient EmailMessage build costs (the approach we avoid)."""
    token = email_render.unsubscribe_placeholder(issue.content_hash)
    msg = EmailMessage()
    msg["From"] = Address(cfg.email.sender_name, addr_spec=cfg.email.sender_address)
    msg["To"] = to
    msg["Subject"] = issue.subject
    msg["Message-ID"] = mid
    msg["List-Unsubscribe"] = f"<{url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(issue.text.replace(token, url))
    msg.add_alternative(issue.html.replace(token, url.replace("&", "&amp;")), subtype="html")
    return msg.as_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="renders per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved node/ours rounds")
    ap.add_argument("--brief", default=str(ROOT / "tests" / "data" / "reference.txt"))
    args = ap.parse_args()

    cfg = config_mod.from_mapping({"site": {"base_url": BASE}}, base=ROOT, source="<bench>")
    data = Path(args.brief).read_bytes()
    brief = parse_brief(data, args.brief, base_url=BASE)
    issue = email_render.render_story(brief, cfg)

    try:
        # Imported by name: the feeds module is another engineer's, and the
        # bench still runs (without that column) where it is absent.
        entry_html = importlib.import_module("publisher.feeds").entry_html
        have_feeds = True
    except ImportError:
        have_feeds = False

    def pipeline() -> object:
        b = parse_brief(data, args.brief, base_url=BASE)
        if have_feeds:
            entry_html(b, cfg)
        return email_render.render_story(b, cfg)

    env, _ = email_render._environment(email_render._template_dirs(cfg))
    story_ctx = capture_story_context(brief, cfg)
    results: dict[str, list[float]] = {}
    module = ensure_node_mjml()
    # Rounds interleave node and us, so a burst of load elsewhere on the
    # machine hits both sides; the ratio uses medians over all rounds.
    rounds = max(1, args.rounds)
    per_round = max(10, args.n // rounds)
    for _ in range(rounds):
        if module is not None:
            results.setdefault("node mjml: render only", []).extend(node_times(module, issue.mjml, per_round))
            results.setdefault("node mjml: render, validation skipped", []).extend(
                node_times(module, issue.mjml, per_round, "skip")
            )
        results.setdefault("ours: whole pipeline", []).extend(timed(pipeline, per_round))
    results["  parse"] = timed(lambda: parse_brief(data, args.brief, base_url=BASE), args.n)
    if have_feeds:
        results["  feed entry (feeds.entry_html)"] = timed(lambda: entry_html(brief, cfg), args.n)
    results["  email: html + text (render_story)"] = timed(lambda: email_render.render_story(brief, cfg), args.n)
    results["    mjml-python only"] = timed(lambda: mjml.mjml2html(issue.mjml, disable_comments=True, fonts={}), args.n)
    results["    jinja2 story.mjml only"] = timed(lambda: env.get_template("email/story.mjml.j2").render(story_ctx), args.n)

    template = MessageTemplate.build(issue, cfg, sent_at=brief.published_at(cfg.site.tz))
    url = BASE + "unsubscribe?t=WzUsImFAYi5jb20iXQ.awrg6w.4QpXv3Dy55lw6YfqXxV0wlugZrg"
    counter = iter(range(10**9))

    def personalize() -> object:
        i = next(counter)
        return template.personalize(to=f"reader{i}@example.net", unsubscribe_url=url, message_id=f"<{i}.1@briefs.example.org>")

    per_n = args.n * 20
    results["personalize (MessageTemplate)"] = timed(personalize, per_n)
    results["per-recipient EmailMessage (naive)"] = timed(
        lambda: naive_message(issue, cfg, "reader@example.net", url, "<1.1@briefs.example.org>"), args.n
    )

    takes = brief.take_count
    print(f"\nbrief: {Path(args.brief).name} ({takes} takes), HTML {len(issue.html.encode()):,} bytes, "
          f"MJML {len(issue.mjml.encode()):,} bytes; {args.n} renders each"
          + ("" if have_feeds else "; feeds.entry_html not available, pipeline excludes it"))
    print(f"{'measurement':40} {'median':>10} {'p90':>10}")
    for name, samples in results.items():
        med = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        unit, scale = ("µs", 1000.0) if med < 0.1 else ("ms", 1.0)
        print(f"{name:40} {med * scale:>8.3f}{unit} {p90 * scale:>8.3f}{unit}")
    print()
    ours = statistics.median(results["ours: whole pipeline"])
    if module is not None:
        node = statistics.median(results["node mjml: render only"])
        node_skip = statistics.median(results["node mjml: render, validation skipped"])
        ratio = ours / node
        print(f"node mjml {node_version(module)}")
        print(f"ours whole pipeline / node mjml render        = {ratio:.2f}  (target ≤ 0.50: {'OK' if ratio <= 0.5 else 'MISSED'})")
        print(f"ours whole pipeline / node mjml, no validation = {ours / node_skip:.2f}")
        print(f"mjml-python / node mjml                       = {statistics.median(results['    mjml-python only']) / node:.3f}")
    per = statistics.median(results["personalize (MessageTemplate)"]) * 1000
    naive = statistics.median(results["per-recipient EmailMessage (naive)"]) * 1000
    print(f"personalize = {per:.1f} µs  (target ≤ 50 µs: {'OK' if per <= 50 else 'MISSED'}); "
          f"naive EmailMessage = {naive:.0f} µs, {naive / per:.0f}× slower")


def capture_story_context(brief: Brief, cfg: config_mod.Config) -> dict[str, Any]:
    """The context render_story hands to story.mjml.j2, so Jinja2 can be timed alone."""
    captured: dict[str, Any] = {}
    original = email_render._render_template

    def spy(env: Environment, name: str, context: dict[str, Any], what: str) -> str:
        if name == "email/story.mjml.j2":
            captured.update(context)
        return original(env, name, context, what)

    email_render._render_template = spy
    try:
        email_render.render_story(brief, cfg)
    finally:
        email_render._render_template = original
    return captured


if __name__ == "__main__":
    main()
