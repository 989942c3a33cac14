"""The JSON API (``/api/v1``): the registry's read side through the test client, every
bad input a 4xx with the CLI's error code, never a 500."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import runyard
from runyard.config import load_settings
from runyard.web.app import create_app
from tests.conftest import Cli
from tests.helpers.server import running_server


@pytest.fixture
def client(yard_path: Path) -> Iterator[TestClient]:
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def made(cli: Cli, lineage: dict[str, str]) -> dict[str, Any]:
    """Three runs of the lineage fixture's plan, one failed, in two groups."""
    run_ids = []
    for group, status in (("CH01/001", "succeeded"), ("CH01/002", "failed"), (None, "succeeded")):
        args = ["run", "start", "--plan", lineage["plan_version_id"]]
        if group:
            args += ["--group", group]
        run = cli.ok(*args)
        cli.ok("run", "finish", run["run_id"], "--status", status)
        run_ids.append(run["run_id"])
    return {**lineage, "run_ids": run_ids}


def test_runs_list_detail_and_filters(client, made):
    page = client.get("/api/v1/runs").json()
    assert [r["run_id"] for r in page["items"]] == made["run_ids"][::-1]  # newest first
    one = page["items"][0]
    assert {"plan_version_id", "config_version_id", "scenario_id"} <= set(one)
    failed = client.get("/api/v1/runs", params={"status": "failed"}).json()["items"]
    assert [r["run_id"] for r in failed] == [made["run_ids"][1]]
    grouped = client.get("/api/v1/runs", params={"group": "CH01/001"}).json()["items"]
    assert [r["run_id"] for r in grouped] == [made["run_ids"][0]]
    by_plan = client.get("/api/v1/runs", params={"plan_version_id": made["plan_version_id"]})
    assert len(by_plan.json()["items"]) == 3
    by_name = client.get("/api/v1/runs", params={"scenario": "base"}).json()["items"]
    assert len(by_name) == 3
    shown = client.get(f"/api/v1/runs/{made['run_ids'][0]}").json()
    assert shown["plan_version_id"] == made["plan_version_id"] and shown["status"] == "succeeded"


def test_keyset_pages_cover_every_run_once(client, made):
    seen, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = client.get("/api/v1/runs", params=params).json()
        seen += [r["run_id"] for r in page["items"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert sorted(seen) == sorted(made["run_ids"]) and len(seen) == 3


def test_lineage_endpoints(client, made):
    scenarios = client.get("/api/v1/scenarios").json()["items"]
    assert [s["name"] for s in scenarios] == ["base"]
    assert client.get("/api/v1/scenarios/base").json()["scenario_id"] == made["scenario_id"]
    config = client.get(f"/api/v1/configs/{made['config_version_id']}").json()
    assert config["content"]["safety_stock_periods"] == 2
    same = client.get(
        f"/api/v1/configs/{made['config_version_id']}/diff/{made['config_version_id']}"
    ).json()
    assert same["identical"] is True
    plan = client.get(f"/api/v1/plans/{made['plan_version_id']}").json()
    assert plan["run_count"] == 3 and plan["scenario"]["name"] == "base"
    assert [p["plan_version_id"] for p in client.get("/api/v1/plans").json()["items"]] == [
        made["plan_version_id"]
    ]


def test_jobs_endpoints(client, cli, made, monkeypatch):
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    job = cli.ok("plan", "run", made["plan_version_id"], "--wait")
    listed = client.get("/api/v1/jobs", params={"plan_version_id": made["plan_version_id"]})
    assert [j["job_id"] for j in listed.json()["items"]] == [job["job_id"]]
    shown = client.get(f"/api/v1/jobs/{job['job_id']}").json()
    assert shown["status"] == "succeeded" and shown["plan_version_id"] == made["plan_version_id"]
    log = client.get(f"/api/v1/jobs/{job['job_id']}/log")
    assert log.status_code == 200 and "claimed by" in log.text


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/v1/runs/nope", {}, 404, "not_found"),
        ("/api/v1/runs/a..b", {}, 422, "invalid"),
        ("/api/v1/runs", {"status": "nope"}, 422, "invalid"),
        ("/api/v1/runs", {"limit": 0}, 422, "invalid"),
        ("/api/v1/runs", {"after": "garbage"}, 422, "invalid"),
        ("/api/v1/runs", {"plan_version_id": "pv-nope"}, 404, "not_found"),
        ("/api/v1/runs", {"started_after": "yesterday"}, 422, "invalid"),
        ("/api/v1/plans/pv-nope", {}, 404, "not_found"),
        ("/api/v1/scenarios/nope", {}, 404, "not_found"),
        ("/api/v1/configs/cfg-nope", {}, 404, "not_found"),
        ("/api/v1/jobs", {"status": "nope"}, 422, "invalid"),
        ("/api/v1/jobs/job-nope", {}, 404, "not_found"),
        ("/api/v1/jobs/job-nope/log", {}, 404, "not_found"),
    ],
)
def test_bad_input_is_a_4xx_with_the_cli_code(client, made, path, params, status, code):
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_a_foreign_host_is_refused(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    refused = client.get("/healthz", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    for name in ("evil.example:80", "10.0.0.5.evil.example", "[::1].evil", "localhost.evil"):
        assert client.get("/healthz", headers={"Host": name}).status_code == 400, name


@pytest.mark.parametrize("host", ["10.0.0.5", "10.0.0.5:8765", "[fe80::1]:8765", "[::1]", "::1"])
def test_an_ip_address_as_host_is_never_rebinding(client, host):
    """DNS rebinding needs a host name; a client that typed the server's address gets in."""
    assert client.get("/healthz", headers={"Host": host}).status_code == 200


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    assert "/api/v1/runs" in spec["paths"] and "/api/v1/runs/{run_id}" in spec["paths"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_serve_refuses_a_public_address_without_a_token(cli):
    result = cli("serve", "--host", "0.0.0.0")
    assert result.exit_code == 4
    assert "without a token" in result.stderr and "runyard token create" in result.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_serve_on_a_public_address_with_a_named_token_accepts_its_own_names(yard_path, cli):
    """A named token (no RUNYARD_TOKEN) is enough to listen beyond loopback; requests
    may then name this machine or an --allowed-host, and nothing else."""
    assert cli("token", "create", "farm", "--role", "recorder").exit_code == 0
    args = ("--host", "0.0.0.0", "--no-worker", "--allowed-host", "yard-host.example")
    with running_server(yard_path, *args) as base:
        for host, status in [
            (socket.gethostname(), 200),
            ("yard-host.example", 200),
            ("127.0.0.1", 200),
            ("evil.example", 400),
        ]:
            request = urllib.request.Request(f"{base}/healthz", headers={"Host": host})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    got = answer.status
            except urllib.error.HTTPError as exc:
                got = exc.code
            assert got == status, host


@pytest.mark.parametrize("backend", ["sqlite"])
def test_serve_refuses_an_allowed_host_that_is_not_a_host_name(cli):
    result = cli("serve", "--allowed-host", "a b")
    assert result.exit_code == 5
    assert "not a host name" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("backend", ["sqlite"])
def test_runyard_serve_answers_and_stops_cleanly(yard_path, made):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "runyard", "--yard", str(yard_path), "serve", "--port", str(port)],
        env={**os.environ, "RUNYARD_SKIP_SIMULATION": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/runs") as answer:
                    body = answer.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, server.stderr.read().decode()
                time.sleep(0.1)
        assert made["run_ids"][0] in body
        # The background worker runs a job queued while the server is up.
        with runyard.open_yard(yard_path) as yard:
            from runyard.jobs import service

            job = service.enqueue_planning(yard, made["plan_version_id"])
            deadline = time.monotonic() + 20
            while service.get_job(yard, job.job_id).status.value != "succeeded":
                assert time.monotonic() < deadline, "the server's worker did not run the job"
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        # Uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM.
        assert server.wait(timeout=20) in (0, -signal.SIGTERM)
        assert b"Traceback" not in server.stderr.read()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metrics_read_the_registry_and_two_servers_agree(yard_path, cli, made, monkeypatch):
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    cli.ok("plan", "run", made["plan_version_id"], "--wait")
    cli.ok("run", "pin", made["run_ids"][0])
    cli.ok(
        "archive", "--all", "--keep-recent-minutes", "0", "--keep-last-runs", "0", "--run", "--yes"
    )
    cli.ok("backup")
    # Two real server processes on the same registry answer the same figures.
    with (
        running_server(yard_path, "--no-worker") as first,
        running_server(yard_path, "--no-worker") as second,
    ):
        texts = []
        for base in (first, second):
            with urllib.request.urlopen(f"{base}/metrics") as answer:
                texts.append(answer.read().decode())
    assert texts[0] == texts[1]
    text = texts[0]
    runs = cli.ok("run", "list", "--limit", "1000")["items"]
    by_status: dict[str, int] = {}
    for run in runs:
        by_status[run["status"]] = by_status.get(run["status"], 0) + 1
    for status, count in by_status.items():
        assert _metric(text, f'runyard_runs{{status="{status}"}}') == count
    archived = sum(1 for r in runs if r["location"] == "archived")
    assert archived and _metric(text, 'runyard_runs_by_location{location="archived"}') == archived
    assert _metric(text, "runyard_active_runs") == len(runs) - archived
    assert _metric(text, 'jobs_duration_seconds_count{type="planning"}') == 1
    assert _metric(text, 'jobs_duration_seconds_bucket{le="+Inf",type="planning"}') == 1
    assert _metric(text, 'runyard_jobs{status="succeeded"}') == 1
    assert _metric(text, 'runyard_lifecycle_executions{kind="archive",status="complete"}') == 1
    assert _metric(text, 'runyard_lifecycle_runs_moved{kind="archive"}') == archived
    assert _metric(text, "runyard_last_good_backup_timestamp_seconds") > 0
    assert _metric(text, 'runyard_lifecycle_runs_skipped{reason="pinned"}') == 1


def test_metrics_count_the_bytes_sent_to_and_fetched_from_stores(client):
    from runyard.store import counters

    def scrape() -> tuple[float, float]:
        text = client.get("/metrics").text
        assert "runyard_store_bytes_sent_total counter" in text
        assert "runyard_store_bytes_fetched_total counter" in text
        return (
            _metric(text, "runyard_store_bytes_sent_total"),
            _metric(text, "runyard_store_bytes_fetched_total"),
        )

    # The counters are the process's own: other tests may have moved bytes already.
    assert scrape() == (counters.bytes_sent.value, counters.bytes_fetched.value)
    sent, fetched = scrape()
    counters.bytes_sent.add(5 * 1024 * 1024)
    counters.bytes_fetched.add(1234)
    assert scrape() == (sent + 5 * 1024 * 1024, fetched + 1234)


def test_cli_commands_do_not_import_the_web_stack() -> None:
    # `runyard --help`, `run list`… should not pay for FastAPI, Jinja2 and NumPy.
    code = (
        "import sys, runyard.cli.main; "
        "print(sorted(m for m in ('fastapi', 'jinja2', 'numpy', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
