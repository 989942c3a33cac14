"""The recording routes (``web.api_record``): scenarios, configs, starting, updating and
finishing runs, batches, and who recorded them; every refusal a 4xx that changes
nothing, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import runyard
from runyard.config import load_settings
from runyard.manifest import MANIFEST_NAME
from runyard.web.app import create_app
from tests.conftest import Cli

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(yard_path: Path) -> Iterator[TestClient]:
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def token_client(yard_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("RUNYARD_TOKEN", TOKEN)
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1", headers=AUTH) as test_client:
        yield test_client


def _start(client: TestClient, plan: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/runs", json={"plan_version_id": plan, **body})
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def test_scenario_and_config_create_as_the_cli_does(client, cli: Cli, tmp_path):
    made = client.post(
        "/api/v1/scenarios",
        json={"name": "north", "description": "demo", "data": {"demand": [1, 2, 3]}},
    )
    assert made.status_code == 201, made.text
    scenario = made.json()
    assert scenario["name"] == "north" and scenario["data_digest"]
    assert cli.ok("scenario", "show", "north")["scenario_id"] == scenario["scenario_id"]
    again = client.post("/api/v1/scenarios", json={"name": "north"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    bad = client.post("/api/v1/scenarios", json={"name": "sc-reserved"})
    assert bad.status_code == 422

    content = {"lot_size": 10, "safety_stock_periods": 2}
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps(content))
    local = cli.ok("config", "add", str(config_file))
    same = client.post(
        "/api/v1/configs", json={"content": {"safety_stock_periods": 2, "lot_size": 10}}
    )
    assert same.status_code == 200, same.text
    assert same.json()["config_version_id"] == local["config_version_id"]
    assert same.json()["created"] is False
    new = client.post("/api/v1/configs", json={"content": {"lot_size": 11}, "name": "v2"})
    assert new.status_code == 201 and new.json()["created"] is True
    assert new.json()["name"] == "v2"
    assert client.post("/api/v1/configs", json={"content": [1]}).status_code == 422


def test_start_update_finish(client, lineage, yard_path):
    plan = lineage["plan_version_id"]
    run = _start(client, plan, group="CH01/001", tags={"team": "a"}, run_id="remote-001")
    assert run["run_id"] == "remote-001" and run["status"] == "running"
    assert run["created_by"] is None
    folder = Path(run["path"])
    assert (folder / MANIFEST_NAME).is_file()

    patched = client.patch(
        "/api/v1/runs/remote-001", json={"tags": {"phase": "two"}, "summary": {"loss": 0.5}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["tags"] == {"team": "a", "phase": "two"}
    assert patched.json()["summary"] == {"loss": 0.5}
    assert json.loads((folder / MANIFEST_NAME).read_text())["summary"] == {"loss": 0.5}

    finished = client.post(
        "/api/v1/runs/remote-001/finish",
        json={"status": "succeeded", "summary": {"service": 0.97}, "tags": {"x": "y"}},
    )
    assert finished.status_code == 200, finished.text
    body = finished.json()
    assert body["status"] == "succeeded"
    assert body["summary"] == {"loss": 0.5, "service": 0.97}
    assert body["tags"] == {"team": "a", "phase": "two", "x": "y"}
    shown = client.get("/api/v1/runs/remote-001").json()
    assert shown["summary"] == body["summary"] and shown["size_bytes"] == body["size_bytes"]

    twice = client.post("/api/v1/runs/remote-001/finish", json={"status": "failed"})
    assert twice.status_code == 409
    late = client.patch("/api/v1/runs/remote-001", json={"tags": {"a": "b"}})
    assert late.status_code == 409
    assert client.get("/api/v1/runs/remote-001").json()["tags"] == body["tags"]


def test_refusals_are_4xx_and_change_nothing(client, lineage, snapshot):
    plan = lineage["plan_version_id"]
    before = snapshot()
    for body in (
        {"plan_version_id": "pv-nope"},
        {"plan_version_id": plan, "run_id": "../escape"},
        {"plan_version_id": plan, "run_id": "a/b"},
        {"plan_version_id": plan, "tags": {"": "x"}},
        {"plan_version_id": plan, "extra": 1},
        {},
    ):
        response = client.post("/api/v1/runs", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
    assert client.post("/api/v1/runs/nope/finish", json={"status": "succeeded"}).status_code == 404
    assert client.patch("/api/v1/runs/nope", json={}).status_code == 404
    bad_status = client.post("/api/v1/runs/nope/finish", json={"status": "running"})
    assert bad_status.status_code == 422
    after = snapshot()
    assert after.files == before.files and after.rows == before.rows


def test_locked_scenario_refuses_a_start(client, lineage, cli: Cli):
    cli.ok("scenario", "lock", lineage["scenario_id"])
    refused = client.post("/api/v1/runs", json={"plan_version_id": lineage["plan_version_id"]})
    assert refused.status_code == 423


def test_run_id_taken_is_409(client, lineage):
    plan = lineage["plan_version_id"]
    _start(client, plan, run_id="dup-1")
    again = client.post("/api/v1/runs", json={"plan_version_id": plan, "run_id": "dup-1"})
    assert again.status_code == 409


def test_a_retried_start_takes_over_the_folder_a_killed_start_left(client, lineage, yard_path):
    """mkdir and run.json done, the server killed before the row: the retry of the same
    start (same run id) takes the folder over; anything else in it and it is refused."""
    plan = lineage["plan_version_id"]
    first = _start(client, plan, run_id="orphan-1")
    folder = Path(first["path"])
    manifest = (folder / MANIFEST_NAME).read_bytes()
    # Simulate the crash: the row never committed.
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        from runyard.db.tables import runs

        conn.execute(runs.delete().where(runs.c.run_id == "orphan-1"))
    assert (folder / MANIFEST_NAME).read_bytes() == manifest
    retried = client.post("/api/v1/runs", json={"plan_version_id": plan, "run_id": "orphan-1"})
    assert retried.status_code == 201, retried.text
    assert client.get("/api/v1/runs/orphan-1").status_code == 200

    # A folder holding more than the manifest is not taken over.
    other = _start(client, plan, run_id="orphan-2")
    Path(other["path"], "data.csv").write_text("x\n")
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        from runyard.db.tables import runs

        conn.execute(runs.delete().where(runs.c.run_id == "orphan-2"))
    refused = client.post("/api/v1/runs", json={"plan_version_id": plan, "run_id": "orphan-2"})
    assert refused.status_code == 409
    assert Path(other["path"], "data.csv").is_file()

    # A manifest naming another run is not taken over either.
    stray = Path(other["path"]).parent / "orphan-3"
    stray.mkdir()
    (stray / MANIFEST_NAME).write_bytes(manifest)  # says orphan-1
    refused = client.post("/api/v1/runs", json={"plan_version_id": plan, "run_id": "orphan-3"})
    assert refused.status_code == 409
    assert (stray / MANIFEST_NAME).read_bytes() == manifest


def test_created_by_is_the_token_name(token_client, lineage, cli: Cli):
    plan = lineage["plan_version_id"]
    run = _start(token_client, plan)
    assert run["created_by"] == "RUNYARD_TOKEN"
    assert token_client.get(f"/api/v1/runs/{run['run_id']}").json()["created_by"] == "RUNYARD_TOKEN"
    listed = token_client.get("/api/v1/runs").json()["items"]
    assert [r["created_by"] for r in listed] == ["RUNYARD_TOKEN"]
    batch = token_client.post("/api/v1/runs:batch", json={"runs": [{"plan_version_id": plan}]})
    assert batch.status_code == 201, batch.text
    assert batch.json()["runs"][0]["created_by"] == "RUNYARD_TOKEN"
    local = cli.ok("run", "start", "--plan", plan)
    assert local.get("created_by") is None
    no_token = TestClient(token_client.app, base_url="http://127.0.0.1")
    refused = no_token.post("/api/v1/runs", json={"plan_version_id": plan})
    assert refused.status_code == 401


def test_batch_all_or_none(client, lineage, snapshot):
    plan = lineage["plan_version_id"]
    records = [
        {"plan_version_id": plan, "run_id": f"b-{i:03d}", "summary": {"i": i}} for i in range(50)
    ]
    made = client.post("/api/v1/runs:batch", json={"runs": records})
    assert made.status_code == 201, made.text
    assert [r["run_id"] for r in made.json()["runs"]] == [f"b-{i:03d}" for i in range(50)]
    assert all(Path(r["path"], MANIFEST_NAME).is_file() for r in made.json()["runs"])

    before = snapshot()
    bad = [
        {"plan_version_id": plan, "run_id": "c-001"},
        {"plan_version_id": plan, "run_id": "b-000"},  # exists
    ]
    assert client.post("/api/v1/runs:batch", json={"runs": bad}).status_code == 409
    running = [{"plan_version_id": plan, "status": "running"}]
    assert client.post("/api/v1/runs:batch", json={"runs": running}).status_code == 422
    assert client.post("/api/v1/runs:batch", json={"runs": [{}]}).status_code == 422
    after = snapshot()
    assert after.files == before.files and after.rows == before.rows


def test_batch_takes_a_large_body_but_not_a_deep_one(client, lineage):
    plan = lineage["plan_version_id"]
    records = [{"plan_version_id": plan, "summary": {"k": "x" * 500}} for _ in range(10_000)]
    body = json.dumps({"runs": records})
    assert len(body) > 4 * 1024 * 1024  # over a single write's JSON limit
    made = client.post(
        "/api/v1/runs:batch", content=body, headers={"content-type": "application/json"}
    )
    assert made.status_code == 201, made.text[:300]
    assert len(made.json()["runs"]) == 10_000
    too_many = {"runs": [{"plan_version_id": plan}] * 10_001}
    assert client.post("/api/v1/runs:batch", json=too_many).status_code == 422
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    refused = client.post(
        "/api/v1/runs:batch", json={"runs": [{"plan_version_id": plan, "summary": {"d": deep}}]}
    )
    assert refused.status_code == 422
    huge = b'{"runs": [' + b'{"plan_version_id": "x"},' * 800_000 + b"{}]}"
    assert len(huge) > 16 * 1024 * 1024
    refused = client.post(
        "/api/v1/runs:batch", content=huge, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 413
