"""``runyard.connect``: recording into a real ``runyard serve`` (a subprocess on a free
port, one per test session and worker), with the same interface as a local yard.

Each test makes its own scenario, config and plan on the shared server, so tests do not
see each other's runs.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import runyard
from runyard.errors import Conflict, Invalid, NotFound
from runyard.remote.client import Client
from runyard.remote.yard import RemoteYard


@dataclass
class Served:
    url: str
    yard: Path
    env: dict[str, str]


def runyard_argv() -> list[str]:
    found = Path(sys.executable).with_name("runyard")
    return [str(found)] if found.exists() else [sys.executable, "-m", "runyard"]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a process on another machine: no yard, no server, its own HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["HOME"] = str(home)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A yard made with ``runyard init`` and served by ``runyard serve`` (no worker)."""
    base = tmp_path_factory.mktemp("served")
    env = clean_env(base)
    yard = base / "yard"
    subprocess.run([*runyard_argv(), "init", str(yard)], env=env, check=True, capture_output=True)
    port = _free_port()
    log = (base / "serve.log").open("wb")
    server = subprocess.Popen(
        [*runyard_argv(), "--yard", str(yard), "serve", "--port", str(port), "--no-worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError((base / "serve.log").read_text())
        time.sleep(0.1)
    try:
        yield Served(url, yard, env)
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.fixture
def remote(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteYard]:
    for name in ("RUNYARD_YARD", "RUNYARD_DB", "RUNYARD_SERVER", "RUNYARD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with runyard.connect(served.url) as yard:
        yield yard


def make_plan(yard: RemoteYard) -> str:
    """A fresh scenario, config and plan on the server; the plan's id."""
    name = f"s-{secrets.token_hex(4)}"
    yard.add_scenario(name, "made remotely")
    config = yard.add_config({"seed": secrets.token_hex(4)}, name="c")
    return yard.create_plan(name, config.config_version_id, {"k": 1}, label=name).plan_version_id


def digests(root: Path) -> dict[bytes, tuple[str, str]]:
    """Every entry under ``root`` by its relative path's bytes: kind and content digest
    (a link's target, never followed)."""
    out: dict[bytes, tuple[str, str]] = {}
    raw = os.fsencode(root)
    for folder, dirs, files in os.walk(raw):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, raw)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path).hex())
            elif os.path.isdir(path):
                out[rel] = ("dir", "")
            else:
                sha = hashlib.sha256()
                with open(path, "rb") as f:
                    while block := f.read(1 << 20):
                        sha.update(block)
                out[rel] = ("file", sha.hexdigest())
    return out


def hostile_tree(base: Path) -> Path:
    """A folder with a symlink, an empty folder, a non-UTF-8 name and a 20 MiB file."""
    src = base / "results"
    (src / "sub" / "empty").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.csv").write_text("x,y\n1,2\n")
    os.symlink("a.txt", src / "link-to-a")
    os.symlink("../../outside", src / "sub" / "dangling")
    with open(os.path.join(os.fsencode(src), b"caf\xe9.bin"), "wb") as f:
        f.write(b"latin-1 name")
    with open(src / "big.bin", "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(20):
            f.write(block)
    return src


def test_a_run_recorded_through_connect_is_the_same_run_as_locally(remote, served, tmp_path):
    plan = make_plan(remote)
    (tmp_path / "out.txt").write_text("hello")
    with remote.start_run(plan_version_id=plan, group="CH01/003", tags={"who": "ann"}) as run:
        run.log_summary({"fill_rate": 0.97})
        run.set_tags({"stage": "test"})
        assert run.upload(tmp_path / "out.txt").as_posix() == "out.txt"
    assert run.result is not None
    assert run.result.status.value == "succeeded"
    shown = remote.get_run(run.run_id)
    assert shown.summary == {"fill_rate": 0.97}
    assert shown.tags == {"who": "ann", "stage": "test"}
    assert shown.group == "CH01/003"
    assert (Path(shown.path) / "out.txt").read_text() == "hello"
    assert Path(shown.path).parent == served.yard / "runs"
    page = remote.list_runs(limit=1000)
    assert run.run_id in [r.run_id for r in page.items]


def test_an_exception_fails_the_run_and_is_raised_again(remote):
    plan = make_plan(remote)
    with pytest.raises(ZeroDivisionError), remote.start_run(plan_version_id=plan) as run:
        1 / 0  # noqa: B018
    failed = remote.get_run(run.run_id)
    assert failed.status.value == "failed"
    assert "ZeroDivisionError" in (failed.error or "")


def test_errors_are_runyards_own_classes(remote):
    with pytest.raises(NotFound):
        remote.get_run("20260101T000000.000000Z-abcdef")
    with pytest.raises(NotFound), remote.start_run(plan_version_id="pv-nope"):
        pass
    plan = make_plan(remote)
    with remote.start_run(plan_version_id=plan) as run, pytest.raises(Invalid):
        run.log_summary({"bad": float("nan")})


def test_a_folder_arrives_whole_links_as_links_empty_folders_and_odd_names(remote, tmp_path):
    src = hostile_tree(tmp_path)
    plan = make_plan(remote)
    with remote.start_run(plan_version_id=plan) as run:
        placed = run.upload(src)
        run.upload(src / "a.txt", dest="copies/deep/a.txt")
    assert placed.as_posix() == "results"
    folder = Path(remote.get_run(run.run_id).path)
    assert digests(folder / "results") == digests(src)
    assert os.path.islink(folder / "results" / "link-to-a")
    assert (folder / "results" / "sub" / "empty").is_dir()
    assert (folder / "copies" / "deep" / "a.txt").read_text() == "alpha\n"


def test_an_existing_destination_is_a_conflict_unless_replace(remote, tmp_path):
    plan = make_plan(remote)
    first = tmp_path / "f.txt"
    first.write_text("one")
    with remote.start_run(plan_version_id=plan) as run:
        run.upload(first)
        first.write_text("two")
        with pytest.raises(Conflict):
            run.upload(first)
        run.upload(first, replace=True)
    assert (Path(remote.get_run(run.run_id).path) / "f.txt").read_text() == "two"


class LosesFirstAnswer(httpx.HTTPTransport):
    """Sends the first POST /runs to the server, then fails as if the connection broke
    before its answer came back; records every Idempotency-Key of POST /runs."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        is_start = request.method == "POST" and request.url.path.endswith("/api/v1/runs")
        if is_start:
            self.keys.append(request.headers.get("Idempotency-Key"))
        response = super().handle_request(request)
        if is_start and len(self.keys) == 1:
            response.read()
            response.close()
            raise httpx.ReadError("connection reset before the answer", request=request)
        return response


def test_a_start_whose_answer_was_lost_is_retried_with_the_same_key_one_run(remote, served):
    plan = make_plan(remote)
    transport = LosesFirstAnswer()
    flaky = RemoteYard(Client(served.url, transport=transport))
    with flaky, flaky.start_run(plan_version_id=plan) as run:
        run.log_summary({"n": 1})
    assert len(transport.keys) == 2
    assert transport.keys[0] is not None and transport.keys[0] == transport.keys[1]
    runs = remote.client.list_runs(plan_version_id=plan)["items"]
    assert [r["run_id"] for r in runs] == [run.run_id]
    assert runs[0]["status"] == "succeeded"


def test_an_unreachable_server_is_an_error_after_retries(tmp_path):
    yard = RemoteYard(Client(f"http://127.0.0.1:{_free_port()}", attempts=2))
    with pytest.raises(runyard.RunyardError, match="cannot reach"):
        yard.get_run("20260101T000000.000000Z-abcdef")


def test_record_runs_over_http_all_at_once(remote):
    plan = make_plan(remote)
    made = remote.record_runs(
        [{"plan_version_id": plan, "status": "succeeded", "summary": {"i": i}} for i in range(3)]
    )
    assert sorted(r.summary["i"] for r in made) == [0, 1, 2]
    assert len(remote.client.list_runs(plan_version_id=plan)["items"]) == 3


def test_connect_reads_the_server_from_the_environment(served, monkeypatch):
    monkeypatch.setenv("RUNYARD_SERVER", served.url)
    with runyard.connect() as yard:
        assert yard.url == served.url + "/api/v1"
    monkeypatch.delenv("RUNYARD_SERVER")
    with pytest.raises(Invalid):
        runyard.connect()
