"""Idempotency keys (``registry.idempotency``, ``web.api_record``): a retried create gets
the first answer and creates nothing; the key and the create commit together; a key
reused for another request is refused; concurrent twins make one thing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import runyard
from runyard.config import load_settings
from runyard.db.tables import idempotency_keys, plan_versions, runs
from runyard.web.app import create_app

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def client(yard_path: Path) -> Iterator[TestClient]:
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def _count(yard_path: Path, table: Any) -> int:
    with runyard.open_yard(yard_path) as yard, yard.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def test_retry_returns_the_same_run(client, lineage, yard_path):
    body = {"plan_version_id": lineage["plan_version_id"], "tags": {"a": "b"}}
    first = client.post("/api/v1/runs", json=body, headers=_key("start-1"))
    assert first.status_code == 201, first.text
    again = client.post("/api/v1/runs", json=body, headers=_key("start-1"))
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _count(yard_path, runs) == 1
    other = client.post("/api/v1/runs", json=body, headers=_key("start-2"))
    assert other.status_code == 201 and other.json()["run_id"] != first.json()["run_id"]
    assert _count(yard_path, runs) == 2


def test_same_key_other_body_or_route_is_422(client, lineage, yard_path):
    plan = lineage["plan_version_id"]
    assert client.post("/api/v1/runs", json={"plan_version_id": plan}, headers=_key("k")).is_success
    reused = client.post(
        "/api/v1/runs", json={"plan_version_id": plan, "group": "x"}, headers=_key("k")
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    elsewhere = client.post("/api/v1/scenarios", json={"name": "s2"}, headers=_key("k"))
    assert elsewhere.status_code == 422
    assert _count(yard_path, runs) == 1


def test_bad_keys_are_422(client, lineage):
    plan = lineage["plan_version_id"]
    for bad in ("", " x", "x" * 201, "é"):
        headers = {"Idempotency-Key": bad.encode("utf-8")}
        response = client.post("/api/v1/runs", json={"plan_version_id": plan}, headers=headers)
        assert response.status_code == 422, bad


def test_a_refused_create_stores_no_key(client, lineage, yard_path):
    refused = client.post("/api/v1/runs", json={"plan_version_id": "pv-nope"}, headers=_key("r"))
    assert refused.status_code == 404
    assert _count(yard_path, idempotency_keys) == 0
    made = client.post(
        "/api/v1/runs", json={"plan_version_id": "pv-nope"}, headers=_key("r")
    )  # the same key may be retried once the cause is fixed: nothing was stored
    assert made.status_code == 404


def test_every_create_replays(client, lineage, yard_path):
    plan = lineage["plan_version_id"]
    calls = [
        ("/api/v1/scenarios", {"name": "north"}),
        ("/api/v1/configs", {"content": {"k": 1}}),
        (
            "/api/v1/plans",
            {"scenario": "north", "config_version_id": lineage["config_version_id"]},
        ),
        ("/api/v1/runs:batch", {"runs": [{"plan_version_id": plan, "run_id": "bt-1"}]}),
    ]
    for i, (url, body) in enumerate(calls):
        first = client.post(url, json=body, headers=_key(f"c-{i}"))
        assert first.status_code in (200, 201), (url, first.text)
        again = client.post(url, json=body, headers=_key(f"c-{i}"))
        assert again.status_code == first.status_code, (url, again.text)
        assert again.json() == first.json() and again.headers.get("Idempotent-Replayed")
    assert _count(yard_path, plan_versions) == 2  # the lineage's and one more
    run = client.post("/api/v1/runs", json={"plan_version_id": plan}).json()
    finish = {"status": "failed", "error": "boom"}
    url = f"/api/v1/runs/{run['run_id']}/finish"
    first = client.post(url, json=finish, headers=_key("fin"))
    assert first.status_code == 200
    again = client.post(url, json=finish, headers=_key("fin"))
    assert again.status_code == 200 and again.json() == first.json()
    assert client.post(url, json=finish).status_code == 409  # without the key: finished


def test_the_key_commits_with_the_run(client, lineage, yard_path, monkeypatch):
    """A failure after the run's insert but inside its transaction leaves neither."""
    from runyard.registry import idempotency

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed mid-request")

    monkeypatch.setattr("runyard.web.api_record.remember", broken)
    body = {"plan_version_id": lineage["plan_version_id"], "run_id": "atomic-1"}
    with pytest.raises(RuntimeError):
        client.post("/api/v1/runs", json=body, headers=_key("atomic"))
    assert _count(yard_path, runs) == 0 and _count(yard_path, idempotency_keys) == 0
    assert not (yard_path / "runs" / "atomic-1").exists()
    monkeypatch.setattr("runyard.web.api_record.remember", idempotency.remember)
    made = client.post("/api/v1/runs", json=body, headers=_key("atomic"))
    assert made.status_code == 201, made.text


@pytest.mark.parametrize("same_run_id", [True, False])
def test_concurrent_twins_make_one_run(yard_path, lineage, same_run_id):
    app = create_app(load_settings(yard_path))
    body: dict[str, Any] = {"plan_version_id": lineage["plan_version_id"]}
    if same_run_id:
        body["run_id"] = "twin-1"
    answers: list[Any] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        barrier.wait()
        answers.append(client.post("/api/v1/runs", json=body, headers=_key("twin")))

    with TestClient(app, base_url="http://127.0.0.1") as client:
        threads = [threading.Thread(target=post) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert _count(yard_path, runs) == 1
    assert len(list((yard_path / "runs").iterdir())) == 1


def test_keys_older_than_a_week_are_pruned(client, lineage, yard_path, monkeypatch):
    from datetime import timedelta

    from runyard.registry import idempotency
    from runyard.registry.common import utcnow

    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        for key, age in (("old", timedelta(days=8)), ("recent", timedelta(days=6))):
            conn.execute(
                idempotency_keys.insert().values(
                    principal="",
                    key=key,
                    route="POST /api/v1/scenarios",
                    request_digest="0" * 64,
                    status_code=201,
                    response="{}",
                    created_at=utcnow() - age,
                )
            )
    monkeypatch.setattr(idempotency, "_next_prune_at", 0.0)
    body = {"plan_version_id": lineage["plan_version_id"]}
    assert client.post("/api/v1/runs", json=body, headers=_key("new")).status_code == 201
    with runyard.open_yard(yard_path) as yard, yard.read() as conn:
        keys = set(conn.execute(select(idempotency_keys.c.key)).scalars())
    assert keys == {"recent", "new"}
    # pruned once an hour at most: an old key written now stays until the next prune
    assert idempotency._next_prune_at > 0
