#!/usr/bin/env python3
"""CPU cost of one story through the render pipeline, against node ``mjml`` 5 rendering the same MJML.

Run from the repository root:  .venv/bin/python bench/bench_render.py [--n 200] [--rounds 7]

Every figure is CPU time (``time.process_time`` here, ``process.cpuUsage()``
in node) per story, the median over interleaved rounds of ``--n`` stories
each; the machine is shared, so read the ratios, which compare numbers taken
seconds apart in one run, and the load printed beside them.

Nothing is served from a per-story cache: every story is parsed afresh from
its bytes (a new Brief, so the shared take rows and the feed entry memo,
keyed by identity, miss). What stays warm is what a process compiles once:
Jinja2 templates and, for the "warm" rows, the MJML skeleton of the
reference brief's shape (render.skeleton). The "first of its shape" rows
clear the skeleton cache before every story, the "direct" rows compile
every story's MJML as before the skeletons.

Steps: parse (bytes → Brief), read + parse (a generated corpus brief read
safely from disk, hashed and parsed, as a build worker does), the take rows (coverage.groups, shared by the
email, the web page and the feed entry), the email HTML, the plain text, the
feed entry HTML, the story's web page; then the whole pipeline (parse + email HTML + text + feed
entry) in one call sequence, as a build runs it.

Anchor: node ``mjml`` pinned to 5.x (npm, installed into bench/.work/), in
one warm node process, compiling the MJML our renderer produced for the
same brief. Targets (issue 17): whole pipeline ≤ 1 ms CPU, ≤ 0.25 × node.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.briefs import parse_brief  # noqa: E402
from publisher.core import config as config_mod  # noqa: E402
from publisher.render import coverage, email as email_render, feed_entries, site  # noqa: E402
from publisher.render.mjml import compile_mjml, finish_html, html_octets  # noqa: E402
from publisher.render.skeleton import fill, folded_octets  # noqa: E402
from publisher.render.story_mjml import story_mjml, story_pieces as story_mjml_pieces  # noqa: E402
from publisher.render.story_text import story_text  # noqa: E402
from publisher.render.text import Refs  # noqa: E402

WORK = ROOT / "bench" / ".work"
NODE_DIR = WORK / "node-mjml5"
MJML_SPEC = "mjml@5"  # pinned major: mjml 4 and 5 differ in cost (5 returns a Promise)
BASE = "https://briefs.example.org/"

NODE_SCRIPT = r"""
const mjml2html = require(process.argv[2]);
const fs = require("fs");
const src = fs.readFileSync(process.argv[3], "utf8");
const n = parseInt(process.argv[4], 10);
(async () => {
  for (let i = 0; i < 20; i++) await mjml2html(src, {});
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const out = await mjml2html(src, {});
    if (!out.html) throw new Error("no html from mjml");
  }
  const d = process.cpuUsage(t0);
  console.log(JSON.stringify((d.user + d.system) / 1000 / n));
})();
"""


def ensure_node_mjml() -> Path | None:
    module = NODE_DIR / "node_modules" / "mjml"
    if not module.exists():
        if not shutil.which("npm") or not shutil.which("node"):
            print("npm/node not found: skipping the node mjml anchor (ratios not shown)", file=sys.stderr)
            return None
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        print(f"installing npm {MJML_SPEC} into {NODE_DIR} ...", file=sys.stderr)
        proc = subprocess.run(
            ["npm", "install", "--prefix", str(NODE_DIR), MJML_SPEC, "--no-audit", "--no-fund", "--no-save"],
            capture_output=True, text=True, timeout=900,
        )
        if proc.returncode != 0:
            print(f"npm install failed; skipping node mjml:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return None
    version = node_version(module)
    if not version.startswith("5."):
        sys.exit(f"{module} is mjml {version}, not 5.x: remove {NODE_DIR} and rerun")
    return module


def node_version(module: Path) -> str:
    return str(json.loads((module / "package.json").read_text())["version"])


def node_cpu_ms(module: Path, source: str, n: int) -> float:
    """Node's CPU milliseconds per render of ``source`` (one warm process)."""
    (WORK / "issue.mjml").write_text(source, encoding="utf-8")
    (WORK / "render_cpu.js").write_text(NODE_SCRIPT, encoding="utf-8")
    out = subprocess.run(
        ["node", str(WORK / "render_cpu.js"), str(module), str(WORK / "issue.mjml"), str(n)],
        capture_output=True, text=True, check=True, timeout=900,
    )
    return float(json.loads(out.stdout))


def cpu_ms(step: Callable[[], object], n: int, setup: Callable[[], Any] | None = None) -> float:
    """CPU milliseconds per call of ``step``; ``setup`` (untimed) runs before each call."""
    total = 0.0
    for _ in range(n):
        if setup is not None:
            setup()
        t = time.process_time()
        step()
        total += time.process_time() - t
    return total / n * 1000


class Pipeline:
    """The steps, each on a fresh Brief (``fresh`` parses the bytes again, untimed)."""

    def __init__(self, data: bytes, path: str, cfg: config_mod.Config) -> None:
        self.data, self.path, self.cfg = data, path, cfg
        self.brief = self.parse()
        self.text_ctx = capture_text_context(self.brief, cfg)
        self.mjml_ctx = capture_mjml_context(self.brief, cfg)
        self.source = story_mjml(self.mjml_ctx)

    def parse(self) -> Any:
        return parse_brief(self.data, self.path, base_url=BASE)

    def fresh(self) -> None:
        self.brief = self.parse()

    def cold_shape(self) -> None:
        self.fresh()
        email_render.SKELETONS.clear()

    def groups(self) -> object:
        return coverage.groups(self.brief)

    def email(self) -> object:
        return email_render.render_story(self.brief, self.cfg)

    def mjml_python(self) -> object:
        return story_mjml(self.mjml_ctx)

    def mjml_jinja(self) -> object:
        env, _ = email_render._environment(email_render._template_dirs(self.cfg))
        return email_render._render_template(env, "email/story.mjml.j2", self.mjml_ctx, "bench")

    def html_direct(self) -> object:
        # What every story paid before skeletons: mjml-python, then folding.
        return compile_mjml(self.source, "bench")

    def html_skeleton(self) -> object:
        return finish_html(email_render.SKELETONS.html(self.key, self.source, "bench"), "bench")

    def html_marked(self) -> object:
        # What render_story does: the writer's pieces, bodies marked, so no split of the MJML.
        pieces = story_mjml_pieces(self.mjml_ctx)
        source = "".join(pieces.parts)
        return finish_html(email_render.SKELETONS.html(self.key, source, "bench", (pieces.parts, pieces.slots)), "bench")

    def _marked_skeleton(self) -> tuple[Any, list[str]]:
        pieces = story_mjml_pieces(self.mjml_ctx)
        return email_render.SKELETONS.lookup(self.key, "".join(pieces.parts), "bench", (pieces.parts, pieces.slots))

    def size_filled(self) -> object:
        # A build's web copy needs only the email HTML's folded size (story_web_text): filled and folded, as before.
        return html_octets(fill(*self._marked_skeleton()), "bench")

    def size_counted(self) -> object:
        # The same size counted from the shape's layout and the bodies (skeleton.folded_octets), as a build does now.
        size = folded_octets(*self._marked_skeleton())
        assert size is not None, "the reference brief left the counted path"
        return size

    @property
    def key(self) -> tuple[object, ...]:
        dirs = email_render._template_dirs(self.cfg)
        return (dirs, email_render._environment(dirs)[1])

    def text(self) -> object:
        return email_render._finish_text(story_text(self.text_ctx, Refs()), "bench")

    def entry(self) -> object:
        return feed_entries.entry_html(self.brief, self.cfg)

    def story_page(self) -> object:
        # The web page (render.story_html); first of a build's renders of a brief, it makes the take rows.
        return site.story_page(self.brief, self.cfg)

    def fresh_with_rows(self) -> None:
        self.fresh()
        coverage.groups(self.brief)

    def whole(self) -> object:
        brief = self.parse()
        email_render.render_story(brief, self.cfg)
        return feed_entries.entry_html(brief, self.cfg)


def _contexts(brief: Any, cfg: config_mod.Config, kind: str) -> dict[str, Any]:
    """The last view model render_story hands its ``kind`` renderer ("mjml" or "text"), to time it alone."""
    seen: list[tuple[str, dict[str, Any]]] = []
    email_render._story(brief, cfg, None, sized=False, contexts=seen)
    return [ctx for k, ctx in seen if k == kind][-1]


def capture_text_context(brief: Any, cfg: config_mod.Config) -> dict[str, Any]:
    return _contexts(brief, cfg, "text")


def capture_mjml_context(brief: Any, cfg: config_mod.Config) -> dict[str, Any]:
    return _contexts(brief, cfg, "mjml")


class CorpusReader:
    """read_and_parse as a build worker runs it (safe read, hash, parse), over generated corpus briefs in turn."""

    def __init__(self, count: int = 200) -> None:
        sys.path.insert(0, str(ROOT / "bench"))
        import corpus  # noqa: PLC0415
        from publisher.publish import reading, watch  # noqa: PLC0415

        folder = WORK / "render-corpus" / "briefs"
        if len(list(folder.glob("*.txt"))) != count:
            shutil.rmtree(folder, ignore_errors=True)
            corpus.write_briefs(folder, 11, count)
        self.cfg = config_mod.from_mapping({"site": {"base_url": BASE}, "paths": {"briefs": str(folder)}}, base=ROOT, source="<bench>")
        self.names, self.read, self.stat, self.i = sorted(os.listdir(folder)), reading.read_and_parse, watch.Stat(0, 0), 0

    def step(self) -> object:
        self.i += 1
        return self.read(self.cfg, self.names[self.i % len(self.names)], self.stat)


def measure(p: Pipeline, n: int, reader: CorpusReader) -> dict[str, float]:
    """One round: every row once, ``n`` stories each."""
    rows: dict[str, float] = {}
    rows["parse"] = cpu_ms(p.parse, n)
    rows["read + parse (corpus brief, read_and_parse)"] = cpu_ms(reader.step, n)
    rows["take rows (coverage.groups)"] = cpu_ms(p.groups, n, p.fresh)
    rows["email HTML + text (render_story), warm shape"] = cpu_ms(p.email, n, p.fresh)
    rows["  of which plain text (story_text)"] = cpu_ms(p.text, n)
    rows["email HTML + text, first of its shape"] = cpu_ms(p.email, n, p.cold_shape)
    rows["  MJML: Python writer (story_mjml)"] = cpu_ms(p.mjml_python, n)
    rows["  MJML: Jinja2 templates (before)"] = cpu_ms(p.mjml_jinja, n)
    rows["  HTML from MJML: skeleton fill + fold"] = cpu_ms(p.html_skeleton, n)
    rows["  MJML pieces + marked fill + fold (now)"] = cpu_ms(p.html_marked, n)
    rows["  HTML from MJML: mjml-python + fold (before)"] = cpu_ms(p.html_direct, n)
    rows["  web copy's size: fill + fold (before)"] = cpu_ms(p.size_filled, n)
    rows["  web copy's size: counted (now)"] = cpu_ms(p.size_counted, n)
    rows["feed entry (entry_html)"] = cpu_ms(p.entry, n, p.fresh)
    rows["  feed entry, its take rows already built"] = cpu_ms(p.entry, n, p.fresh_with_rows)
    rows["story page (site.story_page)"] = cpu_ms(p.story_page, n, p.fresh)
    rows["WHOLE pipeline, warm shape"] = cpu_ms(p.whole, n)
    rows["WHOLE pipeline, first of its shape"] = cpu_ms(p.whole, n, email_render.SKELETONS.clear)
    return rows


def corpus_shapes(cfg: config_mod.Config, n: int) -> tuple[int, int]:
    """(stories, shapes compiled) over ``n`` generated briefs (bench/corpus.py): how often a build hits."""
    sys.path.insert(0, str(ROOT / "bench"))
    import corpus  # noqa: PLC0415

    cache = email_render.SKELETONS
    email_render.SKELETONS = type(cache)()
    try:
        for story in corpus.stories(11, n):
            brief = parse_brief(corpus.brief_text(story).encode(), corpus.brief_filename(story), base_url=BASE)
            email_render.render_story(brief, cfg)
        return n, email_render.SKELETONS.misses
    finally:
        email_render.SKELETONS = cache


def personalize_us(issue: Any, cfg: config_mod.Config, brief: Any, n: int) -> float:
    """CPU µs to make one reader's message from the pre-serialised issue (target ≤ 50 µs)."""
    from publisher.mail.message import MessageTemplate  # noqa: PLC0415

    template = MessageTemplate.build(issue, cfg, sent_at=brief.published_at(cfg.site.tz))
    url = BASE + "unsubscribe?t=WzUsImFAYi5jb20iXQ.awrg6w.4QpXv3Dy55lw6YfqXxV0wlugZrg"
    counter = iter(range(10**9))

    def one() -> object:
        i = next(counter)
        return template.personalize(to=f"reader{i}@example.net", unsubscribe_url=url, message_id=f"<{i}.1@briefs.example.org>")

    return cpu_ms(one, n) * 1000


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="stories per row per round")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (node, then ours)")
    ap.add_argument("--brief", default=str(ROOT / "tests" / "data" / "reference.txt"))
    ap.add_argument("--corpus", type=int, default=500, help="generated stories to count MJML shapes over")
    args = ap.parse_args()

    cfg = config_mod.from_mapping({"site": {"base_url": BASE}}, base=ROOT, source="<bench>")
    data = Path(args.brief).read_bytes()
    pipeline = Pipeline(data, args.brief, cfg)
    issue = email_render.render_story(pipeline.brief, cfg)
    module = ensure_node_mjml()
    reader = CorpusReader()
    load_before = load()
    samples: dict[str, list[float]] = {}
    for _ in range(max(1, args.rounds)):
        if module is not None:
            samples.setdefault("node mjml 5: render only", []).append(node_cpu_ms(module, issue.mjml, args.n))
        for name, value in measure(pipeline, args.n, reader).items():
            samples.setdefault(name, []).append(value)
    report(samples, module, issue, pipeline, args, load_before)
    print(f"personalize (MessageTemplate, per reader): {personalize_us(issue, cfg, pipeline.brief, args.n * 20):.1f} µs CPU")
    stories, shapes = corpus_shapes(cfg, args.corpus)
    print(f"generated corpus (bench/corpus.py): {stories} stories, {shapes} MJML shapes compiled "
          f"(the rest filled a warm skeleton)")


def report(samples: dict[str, list[float]], module: Path | None, issue: Any, pipeline: Pipeline,
           args: argparse.Namespace, load_before: str) -> None:
    node = statistics.median(samples["node mjml 5: render only"]) if module is not None else None
    print(f"\nbrief: {Path(args.brief).name} ({pipeline.brief.take_count} takes), HTML {len(issue.html.encode()):,} B, "
          f"MJML {len(issue.mjml.encode()):,} B; {args.rounds} rounds × {args.n} stories; CPU ms per story")
    print(f"load average (1/5/15 min): before {load_before}, after {load()}; "
          f"shapes compiled this run: {email_render.SKELETONS.misses}, direct fallbacks: {email_render.SKELETONS.unfit}")
    from publisher import native

    # The parser and renderers compiled by mypyc (make native), or plain Python (PUBLISHER_NATIVE=0).
    print(f"ours: {len(native.loaded())} compiled modules loaded ({native.check().reason})")
    if module is not None:
        print(f"node mjml {node_version(module)} (pinned {MJML_SPEC}), node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"{'measurement':46} {'median':>9} {'min':>9} {'max':>9} {'/ node':>8}")
    for name, values in samples.items():
        med = statistics.median(values)
        ratio = f"{med / node:8.3f}" if node else f"{'-':>8}"
        print(f"{name:46} {med:9.3f} {min(values):9.3f} {max(values):9.3f} {ratio}")
    whole = statistics.median(samples["WHOLE pipeline, warm shape"])
    cold = statistics.median(samples["WHOLE pipeline, first of its shape"])
    print()
    print(f"whole pipeline, warm shape: {whole:.3f} ms (target ≤ 1 ms: {'OK' if whole <= 1 else 'MISSED'})"
          + (f"; / node = {whole / node:.3f} (target ≤ 0.25: {'OK' if whole / node <= 0.25 else 'MISSED'})" if node else ""))
    print(f"whole pipeline, first story of a shape: {cold:.3f} ms"
          + (f"; / node = {cold / node:.3f}" if node else ""))


if __name__ == "__main__":
    main()
