"""Recording from another host, proven with real processes.

A real ``runyard serve`` (SQLite; and PostgreSQL with two server processes on one
registry and one runs root) is driven by a separate Python process that has no yard, no
database URL and its own HOME and working folder: it only knows the server's URL and a
token. It records a scenario, a config, a plan, 50 runs with summaries and uploaded
folders (links, an empty folder, a name that is not UTF-8, a 20 MiB file), a failed run
and a cancelled one. Then the server's yard must hold exactly those runs and files
(digests equal), ``runyard check`` must be clean, and the runs must answer queries as
local ones do.

Then the crashes: a client killed mid-upload leaves no partial file and a run that can
still be finished; a start retried with the same Idempotency-Key makes one run; a server
killed mid-request and started again takes the client's retry, and nothing is doubled.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import runyard
from tests.conftest import fresh_pg_schema

TOKEN = "e2e-bootstrap-token"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runyard_argv() -> list[str]:
    found = Path(sys.executable).with_name("runyard")
    return [str(found)] if found.exists() else [sys.executable, "-m", "runyard"]


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["RUNYARD_TOKEN"] = TOKEN
    return env


class Server:
    """``runyard serve`` in its own process group; ``start`` waits until it answers."""

    def __init__(self, yard_path: Path, port: int | None = None) -> None:
        self.yard_path = yard_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        argv = [*runyard_argv(), "--yard", str(self.yard_path), "serve"]
        argv += ["--port", str(self.port), "--no-worker"]
        self.process = subprocess.Popen(
            argv, env=server_env(), start_new_session=True, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/runs?limit=1", timeout=1).status_code < 500:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"runyard serve exited ({self.process.returncode})")
            time.sleep(0.1)
        raise RuntimeError("runyard serve did not answer within 30 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.kill()


def client_env(home: Path) -> dict[str, str]:
    """A process that knows only the server: no yard, no database URL, its own HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "PG", "DATABASE"))}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def run_client(script: str, home: Path, *args: str, timeout: float = 300) -> Any:
    """Run ``script`` in a fresh interpreter in ``home``; its last stdout line as JSON."""
    path = home / "client.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, str(path), *args],
        cwd=home,
        env=client_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_source(root: Path) -> Path:
    """A run's output folder as pipelines leave them."""
    src = root / "out"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.25\n")
    (src / "sub" / "deeper" / "frame.bin").write_bytes(os.urandom(70_000))
    (src / "link-to-metrics").symlink_to("metrics.csv")
    (src / "dangling").symlink_to("no/such/file")
    (src / "outside").symlink_to("/etc/hostname")
    os.chmod(src / "metrics.csv", 0o640)
    with open(os.path.join(os.fsencode(src), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 name")
    return src


def tree_digest(root: Path) -> dict[bytes, tuple[str, str]]:
    """Every entry under ``root``: kind and content digest (file), target (link)."""
    out: dict[bytes, tuple[str, str]] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.fsdecode(os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", "")
            else:
                with open(full, "rb") as f:
                    out[rel] = ("file", hashlib.sha256(f.read()).hexdigest())
    return out


RECORDER = """
    import json, sys
    from pathlib import Path
    import runyard

    urls, token, src, big = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4]
    yards = [runyard.connect(url, token=token) for url in urls]
    first = yards[0]
    scenario = first.add_scenario("remote-e2e", data={"region": "kanto"})
    config = first.add_config({"model": "psi", "steps": 3}, name="remote-base")
    plan = first.create_plan(scenario.scenario_id, config.config_version_id, {"alpha": 1})
    ok = []
    for i in range(50):
        yard = yards[i % len(yards)]
        with yard.start_run(
            plan_version_id=plan.plan_version_id, group=f"g{i % 5}", tags={"i": str(i)}
        ) as run:
            run.log_summary({"fill_rate": i / 50, "n": i})
            run.set_tags({"host": "elsewhere"})
            run.upload(src, dest="out")
            if i == 0:
                run.upload(big)
        ok.append(run.run_id)
    try:
        with first.start_run(plan_version_id=plan.plan_version_id) as run:
            raise RuntimeError("the render crashed")
    except RuntimeError:
        failed = run.run_id
    try:
        with yards[-1].start_run(plan_version_id=plan.plan_version_id) as run:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        cancelled = run.run_id
    print(json.dumps({"plan": plan.plan_version_id, "ok": ok, "failed": failed,
                      "cancelled": cancelled}))
"""


def record_and_verify(yard_path: Path, servers: list[Server], tmp_path: Path) -> None:
    home = tmp_path / "client-home"
    home.mkdir()
    src = make_source(tmp_path / "data")
    big = tmp_path / "data" / "big.bin"
    big.write_bytes(os.urandom(20 << 20))
    urls = ",".join(s.url for s in servers)
    answer = run_client(RECORDER, home, urls, TOKEN, str(src), str(big))

    with runyard.open_yard(yard_path) as yard:
        everything = yard.list_runs(limit=1000).items
        assert sorted(r.run_id for r in everything) == sorted(
            [*answer["ok"], answer["failed"], answer["cancelled"]]
        )
        by_id = {r.run_id: r for r in everything}
        assert by_id[answer["failed"]].status.value == "failed"
        assert "the render crashed" in (by_id[answer["failed"]].error or "")
        assert by_id[answer["cancelled"]].status.value == "cancelled"
        expected = tree_digest(src)
        for i, run_id in enumerate(answer["ok"]):
            run = by_id[run_id]
            assert run.status.value == "succeeded"
            assert run.summary == {"fill_rate": i / 50, "n": i}
            assert run.tags == {"i": str(i), "host": "elsewhere"}
            assert run.group == f"g{i % 5}"
            assert run.created_by == "RUNYARD_TOKEN"
            assert tree_digest(Path(run.path) / "out") == expected
            assert os.stat(Path(run.path) / "out" / "metrics.csv").st_mode & 0o777 == 0o640
        first = Path(by_id[answer["ok"][0]].path)
        assert (
            hashlib.sha256((first / "big.bin").read_bytes()).digest()
            == hashlib.sha256(big.read_bytes()).digest()
        )
        # Queryable as local runs are.
        best = yard.list_runs(where="kpi.fill_rate >= 0.5", order_by="kpi.fill_rate desc")
        assert [r.run_id for r in best.items][:3] == answer["ok"][::-1][:3]
        assert len(yard.list_runs(where="kpi.fill_rate >= 0.5", limit=100).items) == 25
        assert len(yard.list_runs(where="tag.host = 'elsewhere'", limit=100).items) == 50
        for run in everything:  # no temporary upload file anywhere
            leftovers = [p for p in Path(run.path).rglob(".runyard-upload-*")]
            assert leftovers == []
    check = subprocess.run(
        [*runyard_argv(), "--yard", str(yard_path), "check", "--json"],
        env=server_env(),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_host_without_the_yard_records_runs_and_files_sqlite(
    tmp_path: Path, served: list[Server]
) -> None:
    yard_path = tmp_path / "yard"
    runyard.init_yard(yard_path)
    served.append(Server(yard_path).start())
    record_and_verify(yard_path, served, tmp_path)


def test_two_servers_on_one_postgresql_registry(
    tmp_path: Path, served: list[Server], pg_database: str
) -> None:
    yard_path = tmp_path / "yard"
    runyard.init_yard(yard_path, db_url=fresh_pg_schema(pg_database))
    served.append(Server(yard_path).start())
    served.append(Server(yard_path).start())
    record_and_verify(yard_path, served, tmp_path)


@pytest.fixture
def one_server(tmp_path: Path, served: list[Server]) -> tuple[Path, Server, str]:
    yard_path = tmp_path / "yard"
    runyard.init_yard(yard_path)
    server = Server(yard_path).start()
    served.append(server)
    with runyard.connect(server.url, token=TOKEN) as remote:
        scenario = remote.add_scenario("crashes")
        config = remote.add_config({"k": 1})
        plan = remote.create_plan(scenario.scenario_id, config.config_version_id)
    return yard_path, server, plan.plan_version_id


SLOW_UPLOADER = """
    import json, os, sys
    import runyard

    url, token, plan, big = sys.argv[1:5]
    yard = runyard.connect(url, token=token)
    context = yard.start_run(plan_version_id=plan)
    run = context.__enter__()
    print(json.dumps({"run_id": run.run_id}), flush=True)
    run.upload(big, dest="huge.bin")  # killed during this
"""


def test_a_client_killed_mid_upload_leaves_no_partial_file(
    tmp_path: Path, one_server: tuple[Path, Server, str]
) -> None:
    yard_path, server, plan_id = one_server
    home = tmp_path / "home"
    home.mkdir()
    big = tmp_path / "sparse.bin"
    with open(big, "wb") as f:  # 4 GiB of zeros, sparse: quick to make, slow to send
        f.truncate(4 << 30)
    script = home / "client.py"
    script.write_text(textwrap.dedent(SLOW_UPLOADER))
    client = subprocess.Popen(
        [sys.executable, str(script), server.url, TOKEN, plan_id, str(big)],
        cwd=home,
        env=client_env(home),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    run_id = json.loads(client.stdout.readline())["run_id"]
    with runyard.open_yard(yard_path) as yard:
        run_dir = Path(yard.list_runs(limit=1).items[0].path)
    assert run_dir.name == run_id
    deadline = time.monotonic() + 30
    while not list(run_dir.glob(".runyard-upload-*")):  # the upload has begun
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.02)
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 30
    while list(run_dir.glob(".runyard-upload-*")):  # the server drops the half file
        assert time.monotonic() < deadline, "the temporary upload file was left behind"
        time.sleep(0.05)
    assert not (run_dir / "huge.bin").exists()
    with runyard.connect(server.url, token=TOKEN) as remote:
        assert remote.get_run(run_id).status.value == "running"
    finish = subprocess.run(
        [*runyard_argv(), "--server", server.url, "run", "finish", run_id, "--status", "failed"],
        env={**client_env(home), "RUNYARD_TOKEN": TOKEN},
        cwd=home,
        capture_output=True,
        text=True,
    )
    assert finish.returncode == 0, finish.stderr
    with runyard.open_yard(yard_path) as yard:
        assert runyard_status(yard, run_id) == "failed"


def runyard_status(yard: runyard.Yard, run_id: str) -> str:
    from runyard.registry.runs import get_run

    return get_run(yard, run_id).status.value


def test_a_retried_start_with_the_same_key_makes_one_run(
    one_server: tuple[Path, Server, str],
) -> None:
    yard_path, server, plan_id = one_server
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "start-once-1"}
    body = {"plan_version_id": plan_id, "run_id": "retry-me-1", "tags": {"a": "b"}}
    with httpx.Client(base_url=server.url) as http:
        first = http.post("/api/v1/runs", json=body, headers=headers)
        second = http.post("/api/v1/runs", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert second.json() == first.json()
    with runyard.open_yard(yard_path) as yard:
        assert [r.run_id for r in yard.list_runs().items] == ["retry-me-1"]


BATCH_RECORDER = """
    import json, sys
    import runyard

    url, token, plan, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    yard = runyard.connect(url, token=token)
    print("go", flush=True)
    runs = yard.record_runs(
        [{"plan_version_id": plan, "summary": {"i": i}} for i in range(n)]
    )
    print(json.dumps({"ids": [r.run_id for r in runs]}))
"""


def test_a_server_killed_mid_request_takes_the_retry_and_doubles_nothing(
    tmp_path: Path, one_server: tuple[Path, Server, str]
) -> None:
    yard_path, server, plan_id = one_server
    home = tmp_path / "home"
    home.mkdir()
    script = home / "client.py"
    script.write_text(textwrap.dedent(BATCH_RECORDER))
    n = 3000
    client = subprocess.Popen(
        [sys.executable, str(script), server.url, TOKEN, plan_id, str(n)],
        cwd=home,
        env=client_env(home),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "go"
    time.sleep(0.3)  # the batch is on its way, or being written
    server.kill()
    restarted = Server(yard_path, port=server.port).start()
    server.process = restarted.process
    out, _ = client.communicate(timeout=120)
    assert client.returncode == 0
    ids = json.loads(out.strip().splitlines()[-1])["ids"]
    assert len(ids) == len(set(ids)) == n
    with runyard.open_yard(yard_path) as yard:
        stored = yard.list_runs(limit=1000)
        total = len(stored.items)
        while stored.next_cursor:
            stored = yard.list_runs(limit=1000, after=stored.next_cursor)
            total += len(stored.items)
    assert total == n
