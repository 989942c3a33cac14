"""A real ``runyard serve`` process on a free loopback port, for tests that must go
over HTTP (the browser, schemathesis, two server processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    yard_path: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> Iterator[str]:
    """Start ``runyard serve`` on the yard; yield its base URL; stop it with SIGTERM and
    check it left no trace of an unexpected error on stderr."""
    port = free_port()
    with tempfile.TemporaryFile() as stderr:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runyard",
                "--yard",
                str(yard_path),
                "serve",
                "--port",
                str(port),
                *args,
            ],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        stderr.seek(0)
                        raise AssertionError(
                            f"runyard serve did not start: {stderr.read().decode()}"
                        ) from None
                    time.sleep(0.1)
            yield base
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace")
            assert "Traceback" not in errors, errors
