"""``mlflow server`` for tests: started on a free port in its own process group, stopped with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MLFLOW = Path(sys.executable).with_name("mlflow")
START_TIMEOUT_S = 180  # a cold start imports MLflow twice and creates the store: ~30 s on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` with the project's app (the one docs/cluster.md starts), in its own process
    group, so that stopping it stops its uvicorn worker too."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def plain_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            str(MLFLOW), "server", "--app-name", "nce-study", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}", "--artifacts-destination", str(self.root / "artifacts"),
        ]
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with (self.root / "server.log").open("ab") as log_file:
            self.process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.healthy():
            assert self.process.poll() is None, f"mlflow server exited:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"mlflow server not healthy after {START_TIMEOUT_S} s:\n{self.log_tail()}"
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.process = None
        deadline = time.monotonic() + 30
        while self.healthy():  # the worker may take a moment to die with its group
            assert time.monotonic() < deadline, "the stopped server still answers"
            time.sleep(0.1)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.plain_uri}/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def log_tail(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-3000:]
