"""An SMTP sink in a process of its own (aiosmtpd), appending each accepted recipient to a file.

``python -m tests.support.sink_process PORT FILE``: used where the senders
are processes too (workers, benches), so the sink does not share their GIL.
The file has one address per line, written as each message is accepted.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class FileSink:
    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (open for the process's life)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.out.write("".join(f"{r}\n" for r in envelope.rcpt_tos))
        return "250 2.0.0 accepted"


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    controller = Controller(FileSink(path), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
