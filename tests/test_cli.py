"""`publisher parse` and `publisher check` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from publisher.cli import main

from tests.support.files import DATA, ROOT, SAMPLES


def test_parse_reference_prints_json() -> None:
    result = CliRunner().invoke(main, ["parse", str(DATA / "reference.txt")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["parsed_counts"] == {"takes": 17, "lenses": 6, "regions": 8}
    assert len(data["lenses"]) == 6
    assert data["slug"] == "anthropic-alibaba-claude-distillation"


def test_parse_bad_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"# x\n\xff\n")
    result = CliRunner().invoke(main, ["parse", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2: not UTF-8" in result.output
    assert "Traceback" not in result.output


def test_check_clean_folder_exits_0() -> None:
    result = CliRunner().invoke(main, ["check", str(SAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_check_reports_every_file_and_exits_1(tmp_path: Path) -> None:
    shutil.copy(DATA / "reference.txt", tmp_path / "a-good.txt")
    (tmp_path / "b-empty.md").write_bytes(b"")
    (tmp_path / "c-yaml.md").write_bytes(b"---\ntitle: [x\n---\n# T\n")
    (tmp_path / "d-notitle.md").write_bytes(b"**Meta:** date: 2026-01-01\n## Summary\nx\n")
    (tmp_path / "e-warn.md").write_bytes("# T\n**Meta:** date: 2026-01-01\n## Summary\n[x](javascript:y)\n".encode())
    (tmp_path / ".hidden.md").write_bytes(b"")
    (tmp_path / "f.md.swp").write_bytes(b"")
    result = CliRunner().invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"{tmp_path}/b-empty.md:1: error: empty file",
        f"{tmp_path}/c-yaml.md:3: error: bad front matter YAML: did not find expected ',' or ']'",
        f"{tmp_path}/d-notitle.md:1: error: no title: add a '# Title' line or front matter 'title'",
        f"{tmp_path}/e-warn.md:4: warning: dropped unsafe link 'javascript:y'",
    ]
    assert "5 file(s): 3 error(s), 1 warning(s)" in result.stderr


def test_check_warnings_only_exits_0(tmp_path: Path) -> None:
    (tmp_path / "w.md").write_bytes("# T\n**Meta:** date: 2026-01-01\n## Summary\nx\n## Odd\ny\n".encode())
    result = CliRunner().invoke(main, ["check", str(tmp_path / "w.md")])
    assert result.exit_code == 0
    assert "warning: unknown section 'Odd' kept as is" in result.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["check"]).exit_code == 2
    bad_cfg = tmp_path / "c.toml"
    bad_cfg.write_text('[site]\nbase_url = "ftp://x"\n[feeds]\nsize = "many"\n')
    result = CliRunner().invoke(main, ["check", "--config", str(bad_cfg), str(SAMPLES)])
    assert result.exit_code == 2
    assert "site.base_url: must be an absolute http(s) URL" in result.output
    assert "feeds.size: must be an integer" in result.output


def test_check_predicts_an_email_over_budget(tmp_path: Path) -> None:
    from tests.support.project import brief_text

    (tmp_path / "fine.md").write_text(brief_text("fine", "Fine"))
    (tmp_path / "huge.md").write_text(brief_text("huge", "Huge", summary="word " * 30_000))
    result = CliRunner().invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{tmp_path}/huge.md: error: its email cannot fit the size budget even with no takes")
    assert "fine.md" not in result.stdout
    assert "2 file(s): 1 error(s)" in result.stderr
