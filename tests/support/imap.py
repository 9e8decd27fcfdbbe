"""A real IMAP server for tests: Dovecot from Debian (dovecot-imapd), on loopback, one static password."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .ports import free_port
from .waiting import wait_until

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
PASSWORD = "imap-test-secret"

needs_dovecot = pytest.mark.skipif(DOVECOT is None, reason="needs dovecot (apt-get install dovecot-imapd)")

CONFIG = """
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:{root}/home/%u/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@contextmanager
def dovecot() -> Iterator[int]:
    """Dovecot in the foreground on a free port, its mail in a temporary folder of its own."""
    assert DOVECOT is not None
    port = free_port()
    # Not under pytest's tmp_path: as root, Dovecot's mail processes run as
    # nobody, who cannot enter pytest's 0700 folders.
    root = Path(tempfile.mkdtemp(prefix="publisher-imap-"))
    root.chmod(0o755)
    (root / "home").mkdir()
    (root / "home").chmod(0o777)
    uid, gid = ("nobody", "nogroup") if os.geteuid() == 0 else (str(os.getuid()), str(os.getgid()))
    conf = root / "dovecot.conf"
    conf.write_text(CONFIG.format(root=root, port=port, password=PASSWORD, uid=uid, gid=gid))
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import socket

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return proc.poll() is not None  # stop waiting if it died

        wait_until(listening, timeout=15)
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        shutil.rmtree(root, ignore_errors=True)
