"""Requests per second for feed.atom: our server beside nginx, same public/ folder.

Measures, in one run on loopback with wrk:
  * a conditional GET (If-None-Match with the current ETag -> 304),
  * a full GET (200 with the body),
for `publisher serve`'s app under uvicorn (one process, access log off) and
for nginx serving the same folder. Ratios within one run are what to read:
the machine is shared and noisy.

    .venv/bin/python bench/bench_http.py [--duration 5] [--connections 32]

Needs Debian's `wrk` and `nginx` (nginx-light); rows for a missing tool are
skipped with a note.

The load generator and the server under test run on separate cores, pinned
with ``taskset`` (util-linux): the server on ``--server-cpus`` (default: the
first CPU this process may use), wrk on ``--client-cpus`` (default: the
rest), one wrk thread per client core. Unpinned, wrk and nginx share the two
cores and nginx's figure is wrk's ceiling, not nginx's. Without taskset or
with one core the run is unpinned and says so. The public/ folder is built from briefs/ by the
pipeline (`publisher build`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import free_port  # noqa: E402
TARGET_304 = 2000.0


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def build_public(work: Path) -> tuple[Path, str]:
    """A config in ``work`` and a public/ built from the repo's briefs; returns (config, how)."""
    for sub in ("public", "state"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    cfg_path = work / "config.toml"
    cfg_path.write_text(
        textwrap.dedent(
            f"""
            [site]
            base_url = "http://127.0.0.1:8000/"
            [paths]
            briefs = "{ROOT / 'briefs'}"
            public = "{work / 'public'}"
            state = "{work / 'state'}"
            """
        )
    )
    env = dict(os.environ, PUBLISHER_SIGNING_KEY="b" * 64)
    cli = str(Path(sys.executable).parent / "publisher")
    r = subprocess.run([cli, "build", "--config", str(cfg_path)], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0 or not (work / "public" / "feed.atom").exists():
        sys.exit(f"publisher build failed (exit {r.returncode}): {r.stderr.strip()[-400:]}")
    return cfg_path, "publisher build"


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """``cmd`` run on the CPUs ``cpus`` (a taskset list such as "0" or "1-3"); unchanged for None."""
    return ["taskset", "--cpu-list", cpus, *cmd] if cpus else cmd


def cpu_split(server: str | None, client: str | None) -> tuple[str | None, str | None, str]:
    """(server CPUs, client CPUs, a note for the report): separate cores when taskset and two cores allow."""
    mine = sorted(os.sched_getaffinity(0))
    if not shutil.which("taskset"):
        return None, None, "unpinned (taskset absent: apt-get install util-linux)"
    if server is None and client is None and len(mine) < 2:
        return None, None, "unpinned (one core)"
    server = server or str(mine[0])
    client = client or ",".join(str(c) for c in mine if str(c) not in server.split(",")) or str(mine[-1])
    return server, client, f"server on CPU {server}, wrk on CPU {client} (taskset)"


def start_ours(cfg_path: Path, port: int, cpus: str | None = None) -> subprocess.Popen[bytes]:
    code = textwrap.dedent(
        f"""
        import logging, uvicorn
        from publisher.core import config
        from publisher import store
        from publisher.publish.pipeline import Pipeline
        from publisher.web import app as web_app, server as web_server
        cfg = config.load({str(cfg_path)!r})
        engine = store.connect(cfg.store_url)
        app = web_app.create_app(cfg, engine, Pipeline(cfg, engine))
        uvicorn.run(app, host="127.0.0.1", port={port}, access_log=False, log_level="warning", **web_server.uvicorn_limits(cfg))
        """
    )
    env = dict(os.environ, PUBLISHER_SIGNING_KEY="b" * 64)
    return subprocess.Popen(pinned([sys.executable, "-c", code], cpus), cwd=ROOT, env=env)


def start_nginx(public: Path, work: Path, port: int, cpus: str | None = None) -> subprocess.Popen[bytes] | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        return None
    conf = work / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            daemon off;
            pid {work}/nginx.pid;
            error_log {work}/nginx-error.log warn;
            events {{ worker_connections 1024; }}
            http {{
              access_log off;
              client_body_temp_path {work}/nginx-tmp;
              types {{
                application/atom+xml atom;
                application/rss+xml rss;
                application/feed+json json;
                text/html html;
              }}
              charset utf-8;
              charset_types application/atom+xml application/rss+xml application/feed+json;
              server {{
                listen 127.0.0.1:{port};
                root {public};
                etag on;
                location / {{ add_header Cache-Control "public, max-age=300, must-revalidate"; }}
              }}
            }}
            """
        )
    )
    (work / "nginx-tmp").mkdir(exist_ok=True)
    # The master and its worker inherit the pinning.
    return subprocess.Popen(pinned([nginx, "-c", str(conf), "-p", str(work)], cpus))


def run_wrk(url: str, *, etag: str | None, duration: int, connections: int, cpus: str | None = None) -> tuple[float, str]:
    threads = max(1, len(cpus.replace("-", ",").split(","))) if cpus else 2
    cmd = pinned(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"], cpus)
    if etag:
        cmd += ["-H", f"If-None-Match: {etag}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print(f"warning: {non2xx.group(1)} error responses from {url}", file=sys.stderr)
    return rps, p99.group(1) if p99 else "?"


def etag_of(url: str) -> tuple[str, int]:
    with urllib.request.urlopen(url) as r:
        return r.headers["ETag"], len(r.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--server-cpus", help="taskset CPU list for the server under test (default: the first CPU)")
    ap.add_argument("--client-cpus", help="taskset CPU list for wrk (default: the other CPUs)")
    args = ap.parse_args()
    server_cpus, client_cpus, pinning = cpu_split(args.server_cpus, args.client_cpus)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        work = Path(tmp)
        # nginx workers drop root for an unprivileged user, who must read public/.
        work.chmod(0o755)
        cfg_path, how = build_public(work)
        ours_port, nginx_port = free_port(), free_port()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(start_ours(cfg_path, ours_port, server_cpus))
            servers = [("publisher (uvicorn)", f"http://127.0.0.1:{ours_port}/feed.atom")]
            ng = start_nginx(work / "public", work, nginx_port, server_cpus)
            if ng is not None:
                procs.append(ng)
                servers.append(("nginx", f"http://127.0.0.1:{nginx_port}/feed.atom"))
            else:
                print("note: nginx not installed; its rows are skipped", file=sys.stderr)
            rows: list[tuple[str, str, float, str]] = []
            size = 0
            for name, url in servers:
                wait_http(url)
                etag, size = etag_of(url)
                for label, tag in (("conditional GET (304)", etag), ("full GET (200)", None)):
                    rps, p99 = run_wrk(url, etag=tag, duration=args.duration, connections=args.connections, cpus=client_cpus)
                    rows.append((name, label, rps, p99))
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    load = os.getloadavg()
    print(f"\nfeed.atom: {size} bytes (public/ from {how}); wrk -c{args.connections} -d{args.duration}s on {os.cpu_count()} cores, "
          f"{pinning}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"| server | request | req/s | p99 latency | vs nginx |")
    print(f"|---|---|---:|---:|---:|")
    ref = {label: rps for name, label, rps, _ in rows if name == "nginx"}
    for name, label, rps, p99 in rows:
        ratio = f"{rps / ref[label]:.2f}" if label in ref else "-"
        print(f"| {name} | {label} | {rps:,.0f} | {p99} | {ratio} |")
    ours_304 = next(rps for name, label, rps, _ in rows if name.startswith("publisher") and "304" in label)
    verdict = "meets" if ours_304 >= TARGET_304 else "MISSES"
    print(f"\nconditional GETs/s from our server: {ours_304:,.0f} ({verdict} the {TARGET_304:,.0f}/s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
