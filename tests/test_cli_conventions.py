"""CLI conventions: where the config comes from, what a folder without one allows, exit codes,
and the editor's commands (approve with the readers it reaches, digest per cadence, send)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import main
from tests.support.files import ROOT
from tests.support.folders import brief, put
from tests.support.ports import free_port
from tests.support.project import make_project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "c" * 64)
    monkeypatch.delenv("PUBLISHER_CONFIG", raising=False)
    make_project(tmp_path, samples=False, digests={"daily": "0 7 * * *", "weekly": "0 7 * * mon"})
    return tmp_path


def invoke(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env=env)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


def test_config_before_or_after_the_command_or_from_the_environment(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    cfg = str(project / "config.toml")
    for args, env in (
        (["--config", cfg, "status"], None),
        (["status", "--config", cfg], None),
        (["status"], {"PUBLISHER_CONFIG": cfg}),
    ):
        code, out = invoke(*args, cwd=elsewhere, env=env)
        assert code == 0 and "0 stories" in out, (args, out)
    assert not (elsewhere / "state").exists()


def test_without_a_config_file_state_is_never_made_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLISHER_CONFIG", raising=False)
    for args in (["status"], ["build"], ["approve", "x"], ["subscribers", "list"]):
        code, out = invoke(*args, cwd=tmp_path)
        assert code == 2 and "no config.toml in" in out, (args, out)
    assert list(tmp_path.iterdir()) == []
    # Commands that only read briefs work anywhere.
    put(tmp_path / "in", "story-1.md", brief(1))
    assert invoke("check", str(tmp_path / "in"), cwd=tmp_path)[0] == 0


def test_usage_errors_exit_2(project: Path) -> None:
    assert invoke("check", str(project / "nope.md"))[0] == 2
    assert invoke("send")[0] == 2
    assert invoke("digest", "--cadence", "hourly", "--config", str(project / "config.toml"))[0] == 2


def test_approve_says_whom_it_reaches_and_send_on_a_sent_issue_is_not_an_error(project: Path) -> None:
    cfg = str(project / "config.toml")
    put(project / "briefs", "story-1.md", brief(1))
    assert invoke("build", "--config", cfg)[0] == 0  # the back catalogue: no issue yet
    assert invoke("subscribers", "add", "r@example.org", "--config", cfg)[0] == 0
    code, out = invoke("approve", "story-1", "--config", cfg)
    assert code == 0 and "story story-1: released to the next send, to 1 reader" in out
    code, out = invoke("send", "story-1", "--config", cfg)
    assert code == 0 and "1 sent" in out
    code, out = invoke("send", "story-1", "--config", cfg)
    assert code == 0 and "story story-1 was sent already" in out
    code, out = invoke("hold", "story-1", "--config", cfg)
    assert code == 1 and "story story-1 is sent" in out


def test_digest_per_cadence_is_made_once_and_sent_to_its_readers(project: Path) -> None:
    cfg = str(project / "config.toml")
    assert invoke("status", "--config", cfg)[0] == 0
    put(project / "briefs", "story-1.md", brief(1))
    assert invoke("run", "--once", "--config", cfg)[0] == 0  # first start: back catalogue
    put(project / "briefs", "story-2.md", brief(2))
    assert invoke("run", "--once", "--config", cfg)[0] == 0
    assert invoke("subscribers", "add", "w@example.org", "--cadence", "weekly", "--config", cfg)[0] == 0
    code, out = invoke("digest", "--cadence", "weekly", "--config", cfg)
    assert code == 0 and "weekly digest" in out and "Subject:" in out and "Story number" in out
    again = invoke("digest", "--cadence", "weekly", "--config", cfg)
    assert again == (code, out)  # idempotent: the same digest
    code, out = invoke("send", "digest", "--cadence", "daily", "--config", cfg)
    assert code == 1 and "no daily digest issue" in out
    code, out = invoke("send", "digest", "--cadence", "weekly", "--config", cfg)
    assert code == 0 and "1 sent" in out


@pytest.mark.slow
def test_ctrl_c_on_run_exits_130_quietly(project: Path) -> None:
    port = free_port()
    with open(project / "config.toml", "a") as fh:
        fh.write(f"\n[desk]\nport = {port}\n")
    env = dict(os.environ, PUBLISHER_SIGNING_KEY="c" * 64)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "publisher"), "run", "--config", str(project / "config.toml")],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "desk and feeds at" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            seen += proc.stderr.readline() if proc.stderr else ""
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "Aborted!" not in rest and "Traceback" not in rest
