"""Config loading: defaults, every bad key at once, warnings, paths, documentation."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from publisher.core import config
from publisher.core.errors import ConfigError

from tests.support.files import ROOT


def test_shipped_config_loads_without_warnings() -> None:
    cfg = config.load(ROOT / "config.toml")
    assert cfg.warnings == ()
    assert cfg.paths.briefs == ROOT / "briefs"
    assert cfg.desk.host == "127.0.0.1"
    assert cfg.store_url.startswith("sqlite:///")


def test_every_key_is_in_config_toml_and_docs() -> None:
    shipped = tomllib.loads((ROOT / "config.toml").read_text())
    docs = (ROOT / "docs" / "config.md").read_text()
    for dotted, doc in config.documented_keys().items():
        section, key = dotted.split(".")
        assert key in shipped.get(section, {}), f"{dotted} missing from config.toml"
        assert doc, f"{dotted} has no doc string"
        assert f"## `[{section}]`" in docs and f"| `{key}` |" in docs, f"{dotted} missing from docs/config.md"


def test_shipped_values_equal_defaults() -> None:
    # config.toml documents the defaults; a drift would mislead operators.
    shipped = config.load(ROOT / "config.toml")
    defaults = config.from_mapping({}, base=ROOT)
    assert shipped.site == defaults.site and shipped.smtp == defaults.smtp and shipped.paths == defaults.paths


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        '[site]\nbase_url = "not a url"\ntimezone = "Mars/Base"\n'
        '[smtp]\nport = 70000\nsecurity = "ssl"\n'
        '[schedule]\nrequire_approval = "yes"\n'
        '[digests]\ndaily = "every day"\nweekly = "99 99 * * *"\n'
    )
    with pytest.raises(ConfigError) as info:
        config.load(p)
    keys = {prob.key for prob in info.value.problems}
    assert keys == {
        "site.base_url", "site.timezone", "smtp.port", "smtp.security",
        "digests.daily", "digests.weekly", "schedule.require_approval",
    }
    assert all(line.startswith(f"{p}: ") for line in str(info.value).splitlines())


def test_renamed_digest_keys_still_work_with_a_warning(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[schedule]\ndigest_cron = "30 6 * * *"\ndigest_max_lateness = 60\n')
    cfg = config.load(p)
    assert (cfg.digests.daily, cfg.digests.max_lateness) == ("30 6 * * *", 60.0)
    assert any("schedule.digest_cron is now digests.daily" in w for w in cfg.warnings)


def test_unknown_keys_warn_by_name(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[site]\ntitel = "typo"\n[nonsense]\na = 1\n')
    cfg = config.load(p)
    assert any("unknown key site.titel" in w for w in cfg.warnings)
    assert any("unknown section [nonsense]" in w for w in cfg.warnings)


def test_paths_relative_to_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    p = sub / "c.toml"
    p.write_text('[paths]\nbriefs = "../in"\npublic = "/abs/out"\n')
    cfg = config.load(p)
    assert cfg.paths.briefs == sub / "../in"
    assert cfg.paths.public == Path("/abs/out")
    assert cfg.paths.state == sub / "state"


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[site\n")
    with pytest.raises(ConfigError, match=r"\(syntax\)"):
        config.load(p)
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "missing.toml")


def test_secrets_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.from_mapping({"smtp": {"password_env": "MY_SMTP_PW"}}, base=ROOT)
    monkeypatch.delenv("MY_SMTP_PW", raising=False)
    assert cfg.smtp_password is None
    monkeypatch.setenv("MY_SMTP_PW", "s3cret")
    assert cfg.smtp_password == "s3cret"
    assert "s3cret" not in (ROOT / "config.toml").read_text()
    assert not re.search(r"password\s*=", (ROOT / "config.toml").read_text())


def test_header_values_reject_newlines() -> None:
    with pytest.raises(ConfigError, match="email.sender_name"):
        config.from_mapping({"email": {"sender_name": "a\r\nBcc: x@y"}}, base=ROOT)
