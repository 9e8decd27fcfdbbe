"""Deterministic generator of realistic briefs for the benchmarks.

A generated brief has the shape of the reference brief
(``tests/data/reference.txt``): a title and dek, a ``**Meta:**`` line, a
summary of two paragraphs with two relative entity links, why it matters,
three watch items, about 17 takes in about 6 lenses from 8 regions (a few
takes bare, as in real briefs), related stories, entities and a canonical
URL that gives the slug. Three in four related links name an earlier story
of the corpus (a real desk links to its own coverage), so a build must look
up their titles; the rest name stories it does not have. Text is drawn from word banks so that no two
briefs share a sentence, which keeps compression and hashing honest.

The same stories can be written as a Hugo site (front matter + Markdown
body, RSS output) so that Hugo builds the same content in the same run.

Everything is a pure function of ``(seed, index)``: the same arguments give
byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BASE_DATE = dt.date(2025, 1, 1)
CANONICAL_BASE = "https://rbtfl.xyz/en/n/"

_TYPES = ("event", "policy", "markets", "environment", "technology", "conflict", "health", "science")
_HEADS = ("Whose Money", "What They're Not Saying", "Who Benefits", "Who Pays", "What Comes Next", "Who Decides")
_SUBJECTS = (
    "central bank", "port authority", "chip maker", "grid operator", "health ministry", "election commission",
    "shipping line", "wheat exporters", "data regulator", "defence ministry", "rail union", "pension fund",
    "satellite operator", "refinery group", "water utility", "telecom carrier", "airline alliance", "mining consortium",
)
_VERBS = (
    "announced", "delayed", "approved", "rejected", "expanded", "suspended", "disclosed", "challenged",
    "tightened", "relaxed", "investigated", "financed", "cancelled", "renegotiated", "audited", "defended",
)
_OBJECTS = (
    "a tariff schedule", "export licences", "a rescue package", "new reserve rules", "a merger review",
    "emissions limits", "a price cap", "a subsidy programme", "a procurement deal", "a spectrum auction",
    "labour reforms", "a debt swap", "a court ruling", "a safety inspection", "a border agreement",
    "a bond issue", "a data-sharing pact", "a capacity expansion",
)
_PLACES = (
    "Jakarta", "Lagos", "Rotterdam", "Santiago", "Seoul", "Nairobi", "Warsaw", "Mumbai", "Toronto", "Ankara",
    "Hanoi", "Lima", "Oslo", "Cairo", "Manila", "Bogotá", "Athens", "Riyadh", "Osaka", "Denver",
)
_ADJS = (
    "sharp", "modest", "unexpected", "long-awaited", "contested", "record", "partial", "temporary",
    "sweeping", "narrow", "costly", "quiet", "abrupt", "phased", "provisional", "binding",
)
_NOUNS = (
    "investors", "regulators", "lawmakers", "analysts", "farmers", "exporters", "consumers", "unions",
    "neighbours", "creditors", "insurers", "importers", "voters", "suppliers", "engineers", "diplomats",
)
_CONNECT = ("while", "although", "after", "because", "as", "even though", "before", "since")
_LENSES = (
    "US financial press", "European business desks", "Gulf state media", "Asian markets coverage",
    "Latin American regional", "African business press", "wire services", "independent investigative",
    "state broadcasters", "trade and industry press", "opinion and analysis", "local and regional papers",
)
_REGIONS = (
    ("United States", "en"), ("United Kingdom", "en"), ("Germany", "de"), ("France", "fr"), ("Japan", "ja"),
    ("India", "en"), ("Brazil", "pt"), ("Nigeria", "en"), ("Qatar", "ar"), ("Mexico", "es"), ("Indonesia", "id"),
    ("South Korea", "ko"), ("Kenya", "en"), ("Spain", "es"), ("Hong Kong / China", "en"), ("Australia", "en"),
)
_OUTLETS = (
    "Daily Ledger", "Morning Courier", "Financial Dispatch", "The Observer Post", "Market Wire", "Evening Herald",
    "Global Monitor", "Capital Review", "Harbour Times", "Metro Gazette", "Continental Report", "Pacific Record",
    "Atlas Weekly", "Signal News", "Frontier Tribune", "Summit Journal", "Coastal Chronicle", "Northern Star",
    "Union Bulletin", "Prairie Standard", "Delta Telegraph", "Meridian Daily", "Horizon Press", "Keystone News",
)
_ENTITIES = (
    "World Bank", "IMF", "European Commission", "OPEC", "WTO", "African Union", "ASEAN", "Federal Reserve",
    "Bank of Japan", "Mercosur", "Gavi", "IAEA", "UNHCR", "Maersk", "TSMC", "Siemens", "Petrobras", "Tata Group",
)


@dataclass(frozen=True)
class Take:
    outlet: str
    region: str
    language: str
    text: str  # may be empty (a bare take)
    quote: str | None
    source: str


@dataclass(frozen=True)
class Story:
    """One generated story, independent of the output format."""

    index: int
    slug: str
    title: str
    dek: str
    type: str
    date: dt.date
    heads: tuple[str, ...]
    summary: tuple[str, ...]  # Markdown paragraphs, with relative links
    why: str
    watch: tuple[str, ...]
    lenses: tuple[tuple[str, tuple[Take, ...]], ...]
    related: tuple[str, ...]
    entities: tuple[str, ...]

    @property
    def canonical(self) -> str:
        return CANONICAL_BASE + self.slug

    @property
    def tags(self) -> tuple[str, ...]:
        return (self.type, *(e.lower().replace(" ", "-") for e in self.entities[:2]))

    @property
    def take_count(self) -> int:
        return sum(len(takes) for _, takes in self.lenses)

    @property
    def region_count(self) -> int:
        return len({t.region for _, takes in self.lenses for t in takes})


def _sentence(rng: random.Random, index: int) -> str:
    # The index and a number make every sentence unique across the corpus.
    return (
        f"The {rng.choice(_SUBJECTS)} in {rng.choice(_PLACES)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
        f"worth {rng.randint(2, 950)} million in case {index}-{rng.randint(100, 999)}, "
        f"{rng.choice(_CONNECT)} {rng.choice(_NOUNS)} expected a {rng.choice(_ADJS)} response."
    )


def _clause(rng: random.Random) -> str:
    return (
        f"{rng.choice(_NOUNS).capitalize()} read the {rng.choice(_ADJS)} move as a signal "
        f"about {rng.choice(_OBJECTS)}, citing {rng.randint(3, 97)}% of recent filings"
    )


def _entity_slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def _slug(seed: int, index: int, place: str, subject: str) -> str:
    return f"{place.lower().replace('á', 'a')}-{subject.replace(' ', '-')}-{index:06d}-{seed}"


def slug_of(seed: int, index: int) -> str:
    """The slug of story ``index`` without generating the rest of it (its first two draws)."""
    rng = random.Random(f"{seed}:{index}")
    subject = rng.choice(_SUBJECTS)
    return _slug(seed, index, rng.choice(_PLACES), subject)


def _related(rng: random.Random, seed: int, index: int) -> tuple[str, ...]:
    """2–4 distinct related slugs: three in four an earlier story of the corpus, else one it does not have."""
    slots = rng.randint(2, 4)
    known = min(index, sum(rng.random() < 0.75 for _ in range(slots)))
    earlier = [slug_of(seed, j) for j in rng.sample(range(index), known)]
    return tuple(earlier + [f"related-story-{rng.randrange(10**6):06d}" for _ in range(slots - known)])


def story(seed: int, index: int, *, days: int = 365) -> Story:
    """The ``index``-th story of the corpus ``seed`` (dates spread over ``days``)."""
    rng = random.Random(f"{seed}:{index}")
    subject = rng.choice(_SUBJECTS)
    place = rng.choice(_PLACES)
    title = f"{place} {subject} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} in {rng.choice(_ADJS)} shift"
    title = title[0].upper() + title[1:]
    slug = _slug(seed, index, place, subject)
    ents = tuple(rng.sample(_ENTITIES, 3))
    date = BASE_DATE + dt.timedelta(days=rng.randrange(days))

    summary = (
        f"The [{ents[0]}](/en/entity/{_entity_slug(ents[0])}) said on {date:%B %d} that t"
        + _sentence(rng, index)[1:]
        + " "
        + _sentence(rng, index)
        + f" Officials at [{ents[1]}](/en/entity/{_entity_slug(ents[1])}) declined to comment.",
        _sentence(rng, index) + " " + _clause(rng) + ".",
    )
    why = _clause(rng) + ". " + _sentence(rng, index)
    watch = tuple(f"Whether the {_sentence(rng, index)[4:-1]}." for _ in range(3))

    regions = rng.sample(_REGIONS, 8)
    n_takes = rng.randint(15, 19)
    n_lenses = rng.randint(5, 7)
    lens_names = rng.sample(_LENSES, n_lenses)
    # Every lens gets at least one take; the rest are spread at random.
    sizes = [1] * n_lenses
    for _ in range(n_takes - n_lenses):
        sizes[rng.randrange(n_lenses)] += 1
    lenses: list[tuple[str, tuple[Take, ...]]] = []
    t = 0
    for name, size in zip(lens_names, sizes):
        takes = []
        for _ in range(size):
            region, lang = regions[t % len(regions)]
            outlet = rng.choice(_OUTLETS)
            bare = rng.random() < 0.3
            text = "" if bare else _sentence(rng, index) + " " + _clause(rng) + "."
            quote = None if bare or rng.random() < 0.2 else f"{_clause(rng)}."
            host = outlet.lower().replace(" ", "")
            source = f"https://www.{host}.example/{date:%Y/%m/%d}/{slug}-{t}"
            takes.append(Take(outlet, region, lang, text, quote, source))
            t += 1
        lenses.append((name, tuple(takes)))

    related = _related(rng, seed, index)
    return Story(
        index=index,
        slug=slug,
        title=title,
        dek=_clause(rng),
        type=rng.choice(_TYPES),
        date=date,
        heads=tuple(rng.sample(_HEADS, 2)),
        summary=summary,
        why=why,
        watch=watch,
        lenses=tuple(lenses),
        related=related,
        entities=ents,
    )


def stories(seed: int, n: int, *, start: int = 0) -> Iterator[Story]:
    for i in range(start, start + n):
        yield story(seed, i)


def brief_text(s: Story) -> str:
    """The story in the reference brief format."""
    out = [
        f"# {s.title}",
        f"> {s.dek}",
        "",
        f"**Meta:** type: {s.type} · date: {s.date.isoformat()} · heads: {', '.join(s.heads)} · "
        f"{s.take_count} takes · {len(s.lenses)} lenses · {s.region_count} regions",
        "",
        "## Summary",
        "",
    ]
    for para in s.summary:
        out += [para, ""]
    out += ["## Why it matters", "", s.why, "", "## What to watch", ""]
    out += [f"- {w}" for w in s.watch]
    out += ["---", "", "## Regional takes (batched by bias / lens)", ""]
    for name, takes in s.lenses:
        out.append(f"### {name}")
        for take in takes:
            out.append(f"- **{take.outlet}** ({take.region}, {take.language}) — {take.text}".rstrip())
            if take.quote:
                out.append(f'  > "{take.quote}"')
            out.append(f"  Source: {take.source}")
        out.append("")
    out += [
        "## Across the graph",
        f"- Related: {', '.join(f'[[{r}]]' for r in s.related)}",
        f"- Entities: {', '.join(s.entities)}",
        "",
        "---",
        f"Canonical: {s.canonical}",
    ]
    return "\n".join(out) + "\n"


def brief_filename(s: Story) -> str:
    return f"{s.index:06d}_{s.slug}.txt"


def write_briefs(folder: Path, seed: int, n: int) -> list[Path]:
    """Write ``n`` briefs into ``folder`` (created); returns their paths in index order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in stories(seed, n):
        p = folder / brief_filename(s)
        p.write_bytes(brief_text(s).encode("utf-8"))
        paths.append(p)
    return paths


def append_to_summary(text: str, sentence: str) -> str:
    """``text`` with ``sentence`` appended to the summary's last paragraph."""
    marker = "\n\n## Why it matters"
    at = text.index(marker)
    return text[:at] + " " + sentence + text[at:]


# --- Hugo -------------------------------------------------------------------

_HUGO_CONFIG = """\
baseURL = "https://briefs.example.org/"
languageCode = "en"
title = "Publisher Briefs"
disableKinds = []

[outputs]
home = ["HTML", "RSS"]
section = ["HTML", "RSS"]
taxonomy = ["HTML", "RSS"]
term = ["HTML", "RSS"]

[markup.goldmark.renderer]
unsafe = false
"""

_HUGO_LAYOUTS = {
    "_default/baseof.html": """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ .Title }} · {{ .Site.Title }}</title></head>
<body><main>{{ block "main" . }}{{ end }}</main></body></html>
""",
    "_default/single.html": """\
{{ define "main" }}<article><h1>{{ .Title }}</h1>
<p class="dek">{{ .Params.dek }}</p>
<p class="meta">{{ .Date.Format "2006-01-02" }} · {{ delimit .Params.tags ", " }}</p>
{{ .Content }}
{{ with .Params.related }}<h2>Related stories</h2><ul>{{ range . }}{{ with site.GetPage (printf "/posts/%s" .) }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a></li>{{ end }}{{ end }}</ul>{{ end }}
<p><a href="{{ .Params.canonical }}">Canonical</a></p></article>{{ end }}
""",
    "_default/list.html": """\
{{ define "main" }}<h1>{{ .Title }}</h1><ul>
{{ range .Pages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a> {{ .Date.Format "2006-01-02" }}</li>
{{ end }}</ul>{{ end }}
""",
}


def hugo_markdown(s: Story) -> str:
    """The story as Hugo content: YAML front matter + the brief's body as Markdown."""
    fm = [
        "---",
        f'title: "{s.title}"',
        f"date: {s.date.isoformat()}",
        f"slug: {s.slug}",
        f'dek: "{s.dek}"',
        f"canonical: {s.canonical}",
        "tags: [" + ", ".join(s.tags) + "]",
        "related: [" + ", ".join(s.related) + "]",  # titles looked up as ours are (site.GetPage)
        "---",
        "",
    ]
    body = brief_text(s).split("\n", 2)[2]  # drop the H1 and dek, which are front matter now
    # The related line is the front matter's list, rendered by the layout; other wiki links stay plain text.
    body = "\n".join(line for line in body.split("\n") if not line.startswith("- Related: "))
    return "\n".join(fm) + body.replace("[[", "").replace("]]", "")


def write_hugo_site(site: Path, seed: int, n: int) -> None:
    """A Hugo site under ``site`` holding the same ``n`` stories as posts."""
    (site / "content" / "posts").mkdir(parents=True, exist_ok=True)
    (site / "config.toml").write_text(_HUGO_CONFIG, encoding="utf-8")
    for rel, text in _HUGO_LAYOUTS.items():
        p = site / "layouts" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    for s in stories(seed, n):
        (site / "content" / "posts" / f"{s.slug}.md").write_text(hugo_markdown(s), encoding="utf-8")


def sample(seed: int = 1, n: int = 3) -> Sequence[str]:
    """A few brief texts, for eyeballing: ``python bench/corpus.py``."""
    return [brief_text(s) for s in stories(seed, n)]


if __name__ == "__main__":
    print(sample(1, 1)[0])
