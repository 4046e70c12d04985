"""A throwaway VictoriaMetrics on loopback, for tests and benchmarks (not the lab's store).

Starts ``/usr/bin/victoria-metrics`` on 127.0.0.1 with a free port (never 8428, the lab's) and a
data directory of the caller's choosing; can be stopped and started again on the same port and
data to simulate a store outage.  Reads back with ``/api/v1/export`` (raw samples, ms timestamps),
after ``/internal/force_flush`` (VM 1.79 otherwise shows a new series only after ~10 s) and with an
explicit ``end`` (otherwise the last ``-search.latencyOffset`` is hidden).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

BINARY = "/usr/bin/victoria-metrics"
LAB_PORT = 8428


def free_port(host: str = "127.0.0.1") -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port != LAB_PORT:
            return port


class LocalVictoriaMetrics:
    def __init__(self, data_dir: str | os.PathLike[str], port: int | None = None, host: str = "127.0.0.1",
                 extra_args: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        if self.port == LAB_PORT:
            raise ValueError("port 8428 belongs to the emulated lab's store")
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.vm.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def healthy(self, timeout: float = 0.5) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=timeout) as resp:
                return resp.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 30.0) -> Self:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [BINARY, f"-httpListenAddr={self.host}:{self.port}", f"-storageDataPath={self.data_dir}",
                 "-search.latencyOffset=1s", "-loggerLevel=WARN", "-retentionPeriod=1y", *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-600:]
                raise RuntimeError(f"victoria-metrics exited at start (code {self.proc.returncode}): {tail}")
            if self.healthy(0.3):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"victoria-metrics on {self.url} did not answer /health within {timeout} s")

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # flushes in-memory data to disk
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------------- reading

    def force_flush(self) -> None:
        """Make everything written so far searchable now (new series otherwise take ~10 s in VM 1.79)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=30) as resp:
            resp.read()

    def export(self, match: str, flush: bool = True) -> list[dict[str, Any]]:
        """Raw series matching a selector: [{"metric": {...}, "values": [...], "timestamps": [ms, ...]}]."""
        if flush:
            self.force_flush()
        # An explicit end: by default export stops at now - search.latencyOffset (1 s here), hiding the newest points.
        body = urllib.parse.urlencode({"match[]": match, "end": int(time.time()) + 86400}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/export", data=body, timeout=30) as resp:
            return [json.loads(line) for line in resp.read().splitlines() if line.strip()]

    def count(self, match: str) -> int:
        return sum(len(s["values"]) for s in self.export(match))

    def wait_count(self, match: str, n: int, timeout: float = 15.0) -> int:
        """Poll until the selector has at least ``n`` samples (writes become visible after ~1 s); returns the count."""
        deadline = time.monotonic() + timeout
        got = 0
        while True:
            got = self.count(match)
            if got >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.25)
