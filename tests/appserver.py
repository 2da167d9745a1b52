"""Start the real app (`python app.py`) in a subprocess on a free loopback port, for UI and API tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chatbot.bench import free_port, stop_process, wait_for_http
from chatbot.config import PROJECT_ROOT


class AppServer:
    def __init__(self, root: Path, env: dict[str, str] | None = None):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {
            **os.environ, "TRK_CORPUS_DIR": str(root / "corpus"), "TRK_INDEX_DIR": str(root / "index"),
            "TRK_DATA_DIR": str(root / "data"), "TRK_PORT": str(self.port), "TRK_HOST": "127.0.0.1",
            "TRK_BROWSER_SECRET": "test-secret", **(env or {}),
        }
        self.log = open(root / f"app-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "app.py")], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)

    def wait(self, timeout: float = 120) -> AppServer:
        try:
            wait_for_http(self.url, self.proc, timeout, "app")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {(self.root / f'app-{self.port}.log').read_text()[-2000:]}") from None
        return self

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chatbot", *args], env=self.env, capture_output=True,
                              text=True, timeout=120, check=True)

    def stop(self) -> None:
        stop_process(self.proc, 20)
        self.log.close()
