"""A wheel built from this checkout works anywhere: installed into a fresh virtualenv
outside the checkout, it builds a folder of briefs and renders one as HTML (the
templates ship inside it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.files import REFERENCE, ROOT, SAMPLES

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(ROOT)], cwd=tmp_path)
    wheels = list(dist.glob("publisher-*.whl"))
    assert len(wheels) == 1

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", str(wheels[0])], cwd=tmp_path)

    site = tmp_path / "site"
    (site / "briefs").mkdir(parents=True)
    for brief in SAMPLES.iterdir():
        shutil.copy(brief, site / "briefs" / brief.name)
    (site / "config.toml").write_text('[site]\nbase_url = "https://news.example.org/"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PUBLISHER_SIGNING_KEY"] = "w" * 64
    publisher = str(env_dir / "bin" / "publisher")

    # The installed package, not this checkout, is what runs.
    where = run([str(python), "-c", "import publisher; print(publisher.__file__)"], cwd=site, env=env).stdout
    assert str(env_dir) in where and str(ROOT) not in where

    run([publisher, "build"], cwd=site, env=env)
    published = [p for p in SAMPLES.iterdir() if b"status: draft" not in p.read_bytes()]
    assert len(published) >= 5
    assert (site / "public" / "feed.atom").read_bytes().count(b"<entry>") == len(published)
    assert len(list((site / "public" / "issues").glob("*.html"))) == len(published)

    html = run([publisher, "render", str(REFERENCE), "--as", "html"], cwd=site, env=env).stdout
    assert html.startswith("<!doctype html>") and "Anthropic" in html and "<mj-" not in html
