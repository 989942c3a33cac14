"""The JSON API's write side and the server's guards: every write works as the CLI's
does, and every refused write (bad input, no token, a foreign Origin, a tampered
restore) is a 4xx that changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Cli, tree_snapshot
from tests.helpers.ui import csrf_token, ui_client

KEEP_NOTHING = {"keep_recent_minutes": 0, "keep_last_runs": 0}


@pytest.fixture
def client(yard_path: Path) -> Any:
    with ui_client(yard_path) as test_client:
        yield test_client


@pytest.fixture
def made(cli: Cli, lineage: dict[str, str]) -> dict[str, Any]:
    """Three finished runs of the lineage's plan, each with a file in its folder."""
    run_ids = []
    for group in ("CH01/001", "CH01/002", None):
        args = ["run", "start", "--plan", lineage["plan_version_id"]]
        if group:
            args += ["--group", group]
        run = cli.ok(*args)
        Path(run["path"], "out.txt").write_text(f"output of {run['run_id']}\n")
        cli.ok("run", "finish", run["run_id"], "--status", "succeeded")
        run_ids.append(run["run_id"])
    return {**lineage, "run_ids": run_ids}


def _run(client: TestClient, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_scenario_lock_and_unlock(client, lineage):
    sid = lineage["scenario_id"]
    locked = client.post(f"/api/v1/scenarios/{sid}/lock", json={"reason": "Q3 audit"})
    assert locked.status_code == 200
    assert locked.json()["locked"] is True and locked.json()["locked_reason"] == "Q3 audit"
    refused = client.post("/api/v1/plans/" + lineage["plan_version_id"] + "/run")
    assert refused.status_code == 423 and refused.json()["error"]["code"] == "locked"
    assert client.get("/api/v1/jobs").json()["items"] == []
    unlocked = client.post(f"/api/v1/scenarios/{sid}/unlock")
    assert unlocked.status_code == 200 and unlocked.json()["locked"] is False
    assert client.post("/api/v1/scenarios/nope/lock").status_code == 404


def test_plan_create_run_and_aggregate(client, lineage):
    body = {
        "scenario": "base",
        "config_version_id": lineage["config_version_id"],
        "params": {"horizon": 12},
        "label": "from-api",
    }
    created = client.post("/api/v1/plans", json=body)
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["scenario_id"] == lineage["scenario_id"]
    job = client.post(f"/api/v1/plans/{plan['plan_version_id']}/run")
    assert job.status_code == 202
    assert job.json()["status"] == "queued" and job.json()["type"] == "planning"
    assert job.json()["plan_version_id"] == plan["plan_version_id"]
    aggregate = client.post(f"/api/v1/plans/{plan['plan_version_id']}/aggregate")
    assert aggregate.status_code == 202 and aggregate.json()["type"] == "aggregate"
    listed = client.get("/api/v1/jobs", params={"plan_version_id": plan["plan_version_id"]})
    assert len(listed.json()["items"]) == 2


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"scenario": "nope"}, 404, "not_found"),
        ({"config_version_id": "cfg-nope"}, 404, "not_found"),
        ({"params": [1, 2]}, 422, "invalid"),
        ({"runner": "no-such-runner"}, 422, "invalid"),
        ({"extra": 1}, 422, "invalid"),
    ],
)
def test_plan_create_refusals_create_nothing(client, lineage, change, status, code):
    body = {"scenario": "base", "config_version_id": lineage["config_version_id"], **change}
    before = client.get("/api/v1/plans").json()["items"]
    response = client.post("/api/v1/plans", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert client.get("/api/v1/plans").json()["items"] == before


def test_plan_run_of_an_unknown_plan_is_404(client, lineage):
    assert client.post("/api/v1/plans/pv-nope/run").status_code == 404
    assert client.post("/api/v1/plans/pv-nope/aggregate").status_code == 404
    assert client.get("/api/v1/jobs").json()["items"] == []


def test_pin_unpin_and_bad_run_ids(client, made):
    run_id = made["run_ids"][0]
    assert client.post(f"/api/v1/runs/{run_id}/pin").json()["pinned"] is True
    assert _run(client, run_id)["pinned"] is True
    assert client.post(f"/api/v1/runs/{run_id}/unpin").json()["pinned"] is False
    assert client.post("/api/v1/runs/no-such-run/pin").status_code == 404
    bad = client.post("/api/v1/runs/..%20x/pin")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid"


def test_job_cancel(client, lineage):
    job = client.post(f"/api/v1/plans/{lineage['plan_version_id']}/run").json()
    cancelled = client.post(f"/api/v1/jobs/{job['job_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post("/api/v1/jobs/job-nope/cancel").status_code == 404


def test_archive_dry_run_then_run_then_restore(client, made, yard_path):
    first, second, third = made["run_ids"]
    runs_before = tree_snapshot(yard_path / "runs")
    preview = client.post("/api/v1/archives", json={"all": True, **KEEP_NOTHING})
    assert preview.status_code == 200, preview.text
    doc = preview.json()
    assert doc["dry_run"] is True and doc["report"]["status"] == "dry_run"
    assert {e["run_id"] for e in doc["report"]["entries"]} == {first, second, third}
    assert (yard_path / doc["report_path"]).is_file()
    assert tree_snapshot(yard_path / "runs") == runs_before  # a dry run moves nothing
    assert _run(client, first)["location"] == "active"

    done = client.post(
        "/api/v1/archives",
        json={"groups": ["CH01/001"], "run": True, "reason": "test"} | KEEP_NOTHING,
    ).json()
    assert done["dry_run"] is False and done["report"]["summary"]["moved"] == 1
    batch_id = done["report"]["batch_id"]
    assert _run(client, first)["location"] == "archived"
    assert _run(client, second)["location"] == "active"

    batches = client.get("/api/v1/archives").json()
    assert [b["batch_id"] for b in batches] == [batch_id]
    detail = client.get(f"/api/v1/archives/{batch_id}").json()
    assert detail["report"]["entries"][0]["run_id"] == first

    restore_preview = client.post(f"/api/v1/archives/{batch_id}/restore", json={})
    assert restore_preview.status_code == 200 and restore_preview.json()["dry_run"] is True
    assert _run(client, first)["location"] == "archived"
    restored = client.post(f"/api/v1/archives/{batch_id}/restore", json={"run": True})
    assert restored.status_code == 200, restored.text
    assert _run(client, first)["location"] == "active"
    assert Path(_run(client, first)["path"], "out.txt").read_text() == f"output of {first}\n"
    history = client.get(f"/api/v1/runs/{first}/history").json()
    assert [e["kind"] for e in history] == ["archived", "restored"]
    log = client.get("/api/v1/executions").json()["items"]
    assert {e["kind"] for e in log} == {"archive", "restore"}


def test_archive_and_restore_one_run(client, made):
    run_id = made["run_ids"][1]
    preview = client.post(f"/api/v1/runs/{run_id}/archive", json=KEEP_NOTHING).json()
    assert [e["run_id"] for e in preview["report"]["entries"]] == [run_id]
    assert _run(client, run_id)["location"] == "active"
    done = client.post(f"/api/v1/runs/{run_id}/archive", json={"run": True} | KEEP_NOTHING)
    assert done.json()["report"]["summary"]["moved"] == 1
    assert _run(client, run_id)["location"] == "archived"
    again = client.post(f"/api/v1/runs/{run_id}/archive", json=KEEP_NOTHING)
    assert again.status_code == 404  # an archived run is no candidate: no active run named
    assert again.json()["error"]["code"] == "not_found"
    back = client.post(f"/api/v1/runs/{run_id}/restore", json={"run": True})
    assert back.status_code == 200 and _run(client, run_id)["location"] == "active"
    again = client.post(f"/api/v1/runs/{run_id}/restore", json={"run": True})
    assert again.status_code == 409 and "not archived" in again.json()["error"]["message"]


def test_guards_apply_and_skips_reach_metrics(client, made):
    run_id = made["run_ids"][0]
    client.post(f"/api/v1/runs/{run_id}/pin")
    done = client.post("/api/v1/archives", json={"all": True, "run": True} | KEEP_NOTHING)
    report = done.json()["report"]
    skips = {s["run_id"]: [r["code"] for r in s["reasons"]] for s in report["skips"]}
    assert skips == {run_id: ["pinned"]} and report["summary"]["moved"] == 2
    client.post(f"/api/v1/runs/{made['run_ids'][1]}/restore", json={"run": True})
    again = client.post("/api/v1/archives", json={"all": True, "run": True} | KEEP_NOTHING)
    assert again.json()["report"]["summary"]["moved"] == 1
    metrics = client.get("/metrics").text
    # each pass kept the pinned run: counted once per executed pass
    assert 'runyard_lifecycle_runs_skipped{reason="pinned"} 2.0' in metrics


@pytest.mark.parametrize(
    ("url", "body", "status"),
    [
        ("/api/v1/archives/not-a-batch/restore", {}, 422),
        ("/api/v1/archives/20990101T000000Z/restore", {}, 404),
        ("/api/v1/archives/{batch}/restore", {"run_ids": ["../etc"], "run": True}, 422),
        ("/api/v1/archives/{batch}/restore", {"run_ids": ["a/b"], "run": True}, 422),
        ("/api/v1/archives/{batch}/restore", {"run": "yes please"}, 422),
        ("/api/v1/archives", {"groups": ["G"], "all": True, "run": True}, 422),
        ("/api/v1/archives", {"run_ids": ["../../x"], "run": True}, 422),
        ("/api/v1/archives", {"all": True, "older_than_days": -1, "run": True}, 422),
        ("/api/v1/archives", {"all": True, "keep_last_runs": -1, "run": True}, 422),
        ("/api/v1/runs/{run}/archive", {"run": True, "keep_recent_minutes": "x"}, 422),
    ],
)
def test_tampered_lifecycle_requests_change_nothing(
    client, made, yard_path, tmp_path, url, body, status
):
    run_id = made["run_ids"][2]
    batch = client.post(f"/api/v1/runs/{run_id}/archive", json={"run": True} | KEEP_NOTHING)
    batch_id = batch.json()["report"]["batch_id"]
    before = tree_snapshot(yard_path / "runs"), tree_snapshot(yard_path / "_archive")
    locations = [_run(client, r)["location"] for r in made["run_ids"]]
    response = client.post(url.format(batch=batch_id, run=made["run_ids"][0]), json=body)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert (tree_snapshot(yard_path / "runs"), tree_snapshot(yard_path / "_archive")) == before
    assert [_run(client, r)["location"] for r in made["run_ids"]] == locations


def test_artifacts_are_served_only_from_inside_the_run(client, made, tmp_path):
    run = _run(client, made["run_ids"][0])
    run_dir = Path(run["path"])
    (tmp_path / "secret.txt").write_text("not yours")
    (run_dir / "leak").symlink_to(tmp_path / "secret.txt")
    listed = client.get(f"/api/v1/runs/{run['run_id']}/artifacts").json()
    kinds = {a["path"]: a["kind"] for a in listed["items"]}
    assert kinds["out.txt"] == "file" and kinds["leak"] == "symlink"
    ok = client.get(f"/api/v1/runs/{run['run_id']}/artifacts/out.txt")
    assert ok.status_code == 200 and ok.text == f"output of {run['run_id']}\n"
    assert ok.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/api/v1/runs/{run['run_id']}/artifacts/leak").status_code == 409
    traversal = client.get(f"/api/v1/runs/{run['run_id']}/artifacts/..%2F..%2Frunyard.toml")
    assert traversal.status_code == 422
    assert client.get(f"/api/v1/runs/{run['run_id']}/artifacts/nope.txt").status_code == 404


def test_compare_runs(client, made):
    a, b, _ = made["run_ids"]
    compared = client.get("/api/v1/runs/compare", params={"ids": [a, b]})
    assert compared.status_code == 200
    assert [r["run_id"] for r in compared.json()["runs"]] == [a, b]
    assert client.get("/api/v1/runs/compare", params={"ids": [a]}).status_code == 422
    assert client.get("/api/v1/runs/compare", params={"ids": [a, "nope"]}).status_code == 404


def test_foreign_origin_and_cross_site_writes_are_refused(client, made):
    run_id = made["run_ids"][0]
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        response = client.post(f"/api/v1/runs/{run_id}/pin", headers=headers)
        assert response.status_code == 403, headers
        assert response.json()["error"]["code"] == "forbidden"
    assert _run(client, run_id)["pinned"] is False
    # The test client is http://127.0.0.1 (port 80): its own origin, and only that.
    other_port = client.post(
        f"/api/v1/runs/{run_id}/pin", headers={"Origin": "http://127.0.0.1:8765"}
    )
    assert other_port.status_code == 403
    assert _run(client, run_id)["pinned"] is False
    own = client.post(f"/api/v1/runs/{run_id}/pin", headers={"Origin": "http://127.0.0.1"})
    assert own.status_code == 200


def test_token_protects_every_write_and_read(yard_path, made, monkeypatch):
    # Issue 15: with a token configured, reads need one too (tests/test_roles.py).
    monkeypatch.setenv("RUNYARD_TOKEN", "s3cret-token")
    run_id = made["run_ids"][0]
    with ui_client(yard_path) as client:
        assert client.get(f"/api/v1/runs/{run_id}").status_code == 401
        client.headers["Authorization"] = "Bearer s3cret-token"  # for _run's reads
        missing = client.post(f"/api/v1/runs/{run_id}/pin", headers={"Authorization": ""})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        wrong = client.post(f"/api/v1/runs/{run_id}/pin", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        basic = client.post(f"/api/v1/runs/{run_id}/pin", headers={"Authorization": "Basic x"})
        assert basic.status_code == 401
        assert _run(client, run_id)["pinned"] is False
        ok = client.post(
            f"/api/v1/runs/{run_id}/pin", headers={"Authorization": "Bearer s3cret-token"}
        )
        assert ok.status_code == 200 and ok.json()["pinned"] is True


def test_ui_login_sets_a_session_and_logout_needs_csrf(yard_path, monkeypatch):
    monkeypatch.setenv("RUNYARD_TOKEN", "s3cret-token")
    with ui_client(yard_path) as client:
        token = csrf_token(client)
        no_csrf = client.post("/ui/login", data={"token": "s3cret-token"})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        wrong = client.post("/ui/login", data={"token": "nope", "csrf_token": token})
        assert wrong.status_code == 401 and "does not match" in wrong.text
        good = client.post(
            "/ui/login",
            data={"token": "s3cret-token", "csrf_token": token, "next": "//evil.example/"},
        )
        assert good.status_code == 303 and good.headers["location"].startswith("/ui/runs")
        session = client.cookies.get("runyard_session")
        assert session and "." in session
        token = csrf_token(client, "/ui/login")  # a new session, a new CSRF token
        assert client.post("/ui/logout").status_code == 403  # no CSRF token
        out = client.post("/ui/logout", data={"csrf_token": token})
        assert out.status_code == 303
        assert "." not in (client.cookies.get("runyard_session") or "")


def test_ui_pages_without_login_redirect_writes_to_the_login_page(yard_path, monkeypatch):
    monkeypatch.setenv("RUNYARD_TOKEN", "s3cret-token")
    with ui_client(yard_path) as client:
        token = csrf_token(client)
        response = client.post("/ui/logout", data={"csrf_token": token})
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login")


def test_secret_is_shared_by_server_processes(yard_path):
    with ui_client(yard_path) as one, ui_client(yard_path) as two:
        token = csrf_token(one)
        two.cookies.set("runyard_session", one.cookies.get("runyard_session") or "")
        assert csrf_token(two) == token
    secret = yard_path / ".web_secret"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_unknown_ui_page_is_an_html_404_without_a_trace(client):
    response = client.get("/ui/no-such-page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text and "Not found" in response.text
    assert client.get("/static/htmx.min.js").status_code == 200


NUL_URLS = [
    "/api/v1/scenarios/a%00b",
    "/api/v1/configs/a%00b",
    "/api/v1/plans/a%00b",
    "/api/v1/jobs/a%00b",
    "/api/v1/runs?plan_version_id=a%00b",
    "/api/v1/runs?scenario=a%00b",
    "/api/v1/runs?group=a%00b",
    "/api/v1/plans?scenario=a%00b",
    "/api/v1/jobs?plan_version_id=a%00b",
    "/api/v1/configs/a%00b/diff/b",
    "/ui/scenarios/a%00b",
    "/ui/plans/a%00b",
    "/ui/runs?group=a%00b",
]


def test_a_nul_byte_is_bad_input_on_every_engine(client, lineage):
    # PostgreSQL refuses NUL in a text: that is a 4xx for the request, never a 500.
    for url in NUL_URLS:
        response = client.get(url)
        assert 400 <= response.status_code < 500, (url, response.status_code)
    body = {"scenario": "a\x00b", "config_version_id": lineage["config_version_id"]}
    assert client.post("/api/v1/plans", json=body).status_code in (404, 422)
    for url in (
        "/api/v1/scenarios/a%00b/lock",
        "/api/v1/plans/a%00b/run",
        "/api/v1/jobs/a%00b/cancel",
    ):
        assert 400 <= client.post(url).status_code < 500, url
    assert (
        client.get("/api/v1/plans").json()["items"][0]["plan_version_id"]
        == (lineage["plan_version_id"])
    )
