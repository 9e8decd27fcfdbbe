"""One service per state folder, and no build worker outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from publisher.core.statelock import StateLock, StateLocked
from tests.support.folders import brief
from tests.support.project import make_project
from tests.support.waiting import wait_for

CLI = [sys.executable, "-c", "from publisher.cli import main; main()"]


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    with StateLock(tmp_path, "run"):
        with pytest.raises(StateLocked) as info:
            StateLock(tmp_path, "build").acquire()
        assert str(info.value) == f"another publisher run (pid {os.getpid()}) holds {tmp_path / 'publisher.lock'}"
    with StateLock(tmp_path, "build"):  # released: free again
        pass


@pytest.mark.slow
def test_a_second_run_exits_2_at_once_and_build_refuses(tmp_path: Path) -> None:
    cfg = make_project(tmp_path)
    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen([*CLI, "run", "--no-web", "--no-send", "--config", cfg.source], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"service started" in log.read_bytes() or first.poll() is not None, timeout=60, what="the first run")
        assert first.poll() is None, log.read_text()
        lock = cfg.paths.state / "publisher.lock"
        for command in (["run", "--no-web"], ["run", "--once"], ["build"]):
            second = subprocess.run([*CLI, *command, "--config", cfg.source], capture_output=True, text=True, timeout=60)
            assert second.returncode == 2, (command, second.stderr)
            assert f"error: another publisher run (pid {first.pid}) holds {lock}" in second.stderr
        assert first.poll() is None  # the first one never noticed
    finally:
        first.terminate()
        first.wait(timeout=30)
    # Gone (however it ended): the state is free again.
    again = subprocess.run([*CLI, "build", "--config", cfg.source], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


def _big_project(tmp_path: Path) -> list[str]:
    cfg = make_project(tmp_path, samples=False)
    for n in range(400):
        (cfg.paths.briefs / f"story-{n}.md").write_bytes(brief(n))
    return [*CLI, "build", "--config", cfg.source]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_no_pool_worker_survives_its_parent(tmp_path: Path, how: signal.Signals) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("a one-core machine builds without a pool")
    parent = subprocess.Popen(_big_project(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        wait_for(lambda: len(_children(parent.pid)) >= 2 or parent.poll() is not None, timeout=60, what="the pool")
        workers = _children(parent.pid)
        assert parent.poll() is None and len(workers) >= 2, "the build ended before its pool could be seen"
        os.kill(parent.pid, how)
        parent.wait(timeout=30)
        wait_for(lambda: not any(_alive(w) for w in workers), timeout=30, what="the workers to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
        for w in workers | _children(parent.pid):
            if _alive(w):  # a failed test must not leave orphans behind either
                os.kill(w, signal.SIGKILL)
    if how == signal.SIGTERM:
        assert parent.returncode != 0
