"""The mypyc-compiled modules: loaded only while they match the sources, and the same output as plain Python."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from publisher import native

ROOT = Path(__file__).resolve().parents[1]


def write_stamp(build: Path, sources: dict[str, list[object]], **over: object) -> None:
    build.mkdir(parents=True, exist_ok=True)
    stamp = {"abi": native.abi(), "modules": list(native.MODULES), "sources": sources, **over}
    (build / native.STAMP).write_text(json.dumps(stamp), "utf-8")


def records(*names: str) -> dict[str, list[object]]:
    return {name: native.record(native.PACKAGE / name) for name in names}


def test_a_stamp_that_matches_the_sources_is_used(tmp_path: Path) -> None:
    write_stamp(tmp_path, records("render/coverage.py", "briefs/parse.py"))
    status = native.check(tmp_path)
    assert status.active, status.reason


def test_a_changed_source_makes_the_build_stale(tmp_path: Path) -> None:
    got = records("render/coverage.py", "briefs/parse.py")
    size, mtime, digest = got["briefs/parse.py"]
    assert isinstance(size, int) and isinstance(mtime, int)
    # Touched only (a checkout): same size and hash, another mtime. Still current.
    write_stamp(tmp_path, {**got, "briefs/parse.py": [size, mtime - 10**9, digest]})
    assert native.check(tmp_path).active
    # Edited: the same size and an older mtime, another hash.
    write_stamp(tmp_path, {**got, "briefs/parse.py": [size, mtime - 10**9, "0" * 64]})
    status = native.check(tmp_path)
    assert not status.active and "briefs/parse.py changed" in status.reason
    write_stamp(tmp_path, {**got, "briefs/parse.py": [size + 1, mtime, digest]})
    assert not native.check(tmp_path).active
    write_stamp(tmp_path, {**got, "briefs/gone.py": [1, 1, "0" * 64]})
    assert "gone" in native.check(tmp_path).reason


def test_another_interpreter_or_module_list_or_the_switch_means_plain_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert native.check(tmp_path).reason == "not built (make native)"
    write_stamp(tmp_path, records("briefs/parse.py"), abi="cpython-299 .so")
    assert "built for 'cpython-299 .so'" in native.check(tmp_path).reason
    write_stamp(tmp_path, records("briefs/parse.py"), modules=["publisher.briefs.parse"])
    assert not native.check(tmp_path).active
    write_stamp(tmp_path, records("briefs/parse.py"))
    monkeypatch.setenv(native.ENV, "0")
    assert native.check(tmp_path).reason == f"{native.ENV}=0"
    assert native.check(tmp_path, honour_env=False).active
    (tmp_path / native.STAMP).write_text("{not json", "utf-8")
    assert "unreadable stamp" in native.check(tmp_path, honour_env=False).reason


def test_the_built_modules_are_the_ones_loaded() -> None:
    """``make test`` builds them first: this process must be running the compiled code."""
    if not (native.BUILD / native.STAMP).exists():
        pytest.skip("make native has not run (plain Python throughout)")
    assert native.check().active, native.check().reason
    for name in native.MODULES:
        importlib.import_module(name)
    assert native.loaded() == list(native.MODULES)
    assert all(sys.modules[name].__file__.startswith(str(native.BUILD)) for name in native.MODULES)  # type: ignore[union-attr]


# Parses and renders every sample (parse, story page, email HTML and text, web text, feed
# entry) and prints a digest of it all, and which modules were compiled.
RENDER_ALL = """
import hashlib, json, sys
from publisher import native
from publisher.briefs import parse_brief
from publisher.render import email, feed_entries, site
from tests.support.files import DATA, SAMPLES
from tests.support.project import build_config

cfg = build_config(site={"title": "World Briefs", "base_url": "https://briefs.example.org/"},
                   email={"sender_name": "Desk", "postal_address": "Desk, 1 Example Street"})
digest = hashlib.sha256()
for path in sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir()) + [DATA / "reference.txt"]:
    try:
        brief = parse_brief(path.read_bytes(), path.name, base_url="https://briefs.example.org/")
    except Exception as exc:
        digest.update(f"{path.name}: {exc}".encode())
        continue
    titles = {slug: slug.upper() for slug in brief.related}
    issue = email.render_story(brief, cfg, related_titles=titles)
    for part in (repr(brief), site.story_page(brief, cfg, related_titles=titles), issue.html, issue.text, issue.mjml,
                 email.story_web_text(brief, cfg, related_titles=titles), feed_entries.entry_html(brief, cfg)):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\\0")
print(json.dumps({"digest": digest.hexdigest(), "compiled": native.loaded()}))
"""


def render_all(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", RENDER_ALL], cwd=ROOT, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.slow
def test_compiled_and_plain_python_give_byte_identical_output() -> None:
    if not native.check().active:
        pytest.skip("make native has not run: only plain Python to compare")
    compiled = render_all({})
    plain = render_all({native.ENV: "0"})
    assert plain["compiled"] == []
    assert compiled["compiled"]  # what the renders above loaded, compiled
    assert compiled["digest"] == plain["digest"]

