"""Real servers for scale-out tests, started on free loopback ports with data in temporary dirs."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from chatbot.bench import free_port, wait_for_http


class ChromaServer:
    """`chroma run` (chromadb's own server) on 127.0.0.1."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        chroma = Path(sys.executable).parent / "chroma"
        self.log = open(root / "chroma.log", "w")
        self.proc = subprocess.Popen([str(chroma), "run", "--path", str(root / "chroma-data"), "--host",
                                      "127.0.0.1", "--port", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for_http(f"{self.url}/api/v2/heartbeat", self.proc, 60, "chroma run")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """A throw-away PostgreSQL cluster (Debian's packages), run as the postgres user when we are root."""

    def __init__(self):
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (make test installs Debian's postgresql)")
        # outside pytest's private (0700) temp tree, so the postgres user can reach it
        root = self.root = Path(tempfile.mkdtemp(prefix="trk-pg-"))
        self.port = free_port()
        self.data = root / "pgdata"
        self.data.mkdir(parents=True)
        self.sock = root / "pgsock"
        self.sock.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
            os.chmod(root, 0o755)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.as_user, str(bindir / "initdb"), "-D", str(self.data), "-U", "trk",
                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run([*self.as_user, str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "log"),
                        "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1", "-w", "start"],
                       check=True, capture_output=True)
        self.bindir = bindir
        self.url = f"postgresql+psycopg://trk@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"postgresql://trk@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://trk@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


class RecordingProxy:
    """A plain HTTP proxy on a free loopback port in front of `upstream` (the Chroma server) that
    keeps every request it forwards: (method, path, body), as the app sent them over the wire."""

    def __init__(self, upstream: str):
        import http.client
        import http.server
        import threading
        from urllib.parse import urlparse

        target = urlparse(upstream)
        self.requests: list[tuple[str, str, bytes]] = []
        recorded = self.requests

        class Forward(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the client expects

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorded.append((self.command, self.path, body))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
