"""The jobs pages (``/ui/jobs``): list with filters and keyset pages, a job's page and
its self-refreshing fragment, cancel, the aggregate form, and every refused post."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runyard.jobs import service as job_service
from runyard.models import Job
from runyard.registry import jobs as job_registry
from tests.conftest import Cli
from tests.helpers.ui import csrf_token, json_twin, post_form, ui_client

# The UI is engine-agnostic: its pages run on SQLite here; the API tests
# (test_web_api.py, test_web_actions.py) and the registry's own tests cover PostgreSQL.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


HX = {"HX-Request": "true", "HX-Target": "job-live"}


@pytest.fixture
def client(yard_path: Path) -> Iterator[TestClient]:
    with ui_client(yard_path) as test_client:
        yield test_client


def _queue_planning(client: TestClient, plan_version_id: str) -> Job:
    # No worker runs inside the test client: the job stays queued.
    return job_service.enqueue_planning(client.app.state.yard, plan_version_id)  # type: ignore[attr-defined]


def _job(client: TestClient, job_id: str) -> Job:
    return job_service.get_job(client.app.state.yard, job_id)  # type: ignore[attr-defined]


def _job_ids(html: str) -> list[str]:
    return re.findall(r'href="/ui/jobs/(job-[0-9a-z]+)"', html)


def _all_jobs(client: TestClient) -> list[str]:
    # Through the core, not the API: with a token, API reads need one (issue 15).
    with client.app.state.yard.read() as conn:  # type: ignore[attr-defined]
        page = job_registry.list_jobs(conn, limit=1000)
    return [j.job_id for j in page.items]


@pytest.fixture
def finished(cli: Cli, lineage: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A succeeded planning job (its run) and a succeeded aggregate job of the plan."""
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    pv = lineage["plan_version_id"]
    planning = cli.ok("plan", "run", pv, "--wait")
    assert planning["status"] == "succeeded", planning
    for cost in (1, 2):  # the skipped simulation's run is not aggregated: two that are
        run = cli.ok("run", "start", "--plan", pv)
        cli.ok(
            "run",
            "finish",
            run["run_id"],
            "--status",
            "succeeded",
            "--summary",
            f'{{"cost": {cost}}}',
        )
    aggregate = cli.ok("job", "aggregate", "--plan", pv, "--wait")
    assert aggregate["status"] == "succeeded", aggregate
    return {**lineage, "planning": planning, "aggregate": aggregate}


def test_empty_list_page(client):
    page = client.get("/ui/jobs")
    assert page.status_code == 200
    assert "No jobs yet" in page.text
    assert "Aggregate a plan" in page.text
    twin = json_twin(page.text)
    assert twin == "/api/v1/jobs"
    assert client.get(twin).status_code == 200


def test_list_columns_and_filters(client, finished):
    pv = finished["plan_version_id"]
    queued = _queue_planning(client, pv)
    page = client.get("/ui/jobs")
    assert page.status_code == 200
    ids = _job_ids(page.text)
    assert ids == [queued.job_id, finished["aggregate"]["job_id"], finished["planning"]["job_id"]]
    assert f'href="/ui/plans/{pv}"' in page.text
    assert f'href="/ui/runs/{finished["planning"]["run_id"]}"' in page.text
    assert 'class="badge status-queued"' in page.text
    # The recent plans feed the aggregate form's suggestions.
    assert f'<option value="{pv}">' in page.text

    by_type = client.get("/ui/jobs", params={"type": "aggregate"})
    assert _job_ids(by_type.text) == [finished["aggregate"]["job_id"]]
    assert json_twin(by_type.text) == "/api/v1/jobs?type=aggregate"
    assert client.get(json_twin(by_type.text)).status_code == 200
    by_status = client.get("/ui/jobs", params={"status": "queued", "type": ""})
    assert _job_ids(by_status.text) == [queued.job_id]
    by_plan = client.get("/ui/jobs", params={"plan_version_id": pv, "status": "succeeded"})
    assert set(_job_ids(by_plan.text)) == {
        finished["aggregate"]["job_id"],
        finished["planning"]["job_id"],
    }
    none = client.get("/ui/jobs", params={"plan_version_id": "pv-nope"})
    assert none.status_code == 200 and "No jobs match these filters" in none.text


def test_filters_swap_only_the_table_for_htmx(client, finished):
    fragment = client.get(
        "/ui/jobs",
        params={"type": "planning"},
        headers={"HX-Request": "true", "HX-Target": "jobs-table"},
    )
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="jobs-table">')
    assert "<html" not in fragment.text
    assert _job_ids(fragment.text) == [finished["planning"]["job_id"]]
    # A history restore wants the whole page.
    restore = client.get(
        "/ui/jobs",
        headers={
            "HX-Request": "true",
            "HX-Target": "jobs-table",
            "HX-History-Restore-Request": "true",
        },
    )
    assert "<html" in restore.text


def test_keyset_pages(client, lineage, monkeypatch):
    monkeypatch.setattr("runyard.web.ui.jobs.PAGE_SIZE", 2)
    made = [_queue_planning(client, lineage["plan_version_id"]).job_id for _ in range(5)]
    seen: list[str] = []
    url = "/ui/jobs?status=queued"
    while True:
        page = client.get(url)
        assert page.status_code == 200
        seen += _job_ids(page.text)
        found = re.search(r'<a rel="next" href="([^"]+)"', page.text)
        if not found:
            break
        url = "/ui/jobs" + found.group(1).replace("&amp;", "&")
        assert "status=queued" in url and "after=" in url
    assert seen == made[::-1]


@pytest.mark.parametrize(
    ("params", "status"),
    [({"status": "nope"}, 422), ({"type": "nope"}, 422), ({"after": "garbage"}, 422)],
)
def test_bad_filters_are_4xx_pages(client, params, status):
    page = client.get("/ui/jobs", params=params)
    assert page.status_code == status
    assert "<html" in page.text and "Traceback" not in page.text


def test_job_page_full_and_fragment_polling_only_while_active(client, finished):
    queued = _queue_planning(client, finished["plan_version_id"])
    page = client.get(f"/ui/jobs/{queued.job_id}")
    assert page.status_code == 200
    assert "<html" in page.text and 'id="job-live"' in page.text
    assert 'hx-trigger="every 2s"' in page.text
    assert f'hx-get="/ui/jobs/{queued.job_id}"' in page.text
    assert "Cancel job" in page.text
    assert '<pre class="log"' in page.text
    twin = json_twin(page.text)
    assert twin == f"/api/v1/jobs/{queued.job_id}"
    assert client.get(twin).json()["status"] == "queued"

    fragment = client.get(f"/ui/jobs/{queued.job_id}", headers=HX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "<nav" not in fragment.text
    assert fragment.text.lstrip().startswith('<div id="job-live"')
    assert 'hx-trigger="every 2s"' in fragment.text
    # htmx names the target; without a name the fragment is still what an htmx ask gets.
    bare = client.get(f"/ui/jobs/{queued.job_id}", headers={"HX-Request": "true"})
    assert "<html" not in bare.text and 'hx-trigger="every 2s"' in bare.text

    done_id = finished["planning"]["job_id"]
    done = client.get(f"/ui/jobs/{done_id}")
    assert done.status_code == 200
    assert "hx-trigger" not in done.text and "Cancel job" not in done.text
    assert "status-succeeded" in done.text
    assert f'href="/ui/runs/{finished["planning"]["run_id"]}"' in done.text
    assert "claimed by" in done.text  # the worker's log lines
    done_fragment = client.get(f"/ui/jobs/{done_id}", headers=HX)
    assert "<html" not in done_fragment.text
    assert "hx-trigger" not in done_fragment.text  # the refreshing stops here


def test_aggregate_job_links_its_files(client, finished):
    job = finished["aggregate"]
    page = client.get(f"/ui/jobs/{job['job_id']}")
    assert page.status_code == 200
    for name in ("aggregate.csv", "aggregate.json"):
        href = f"/ui/jobs/{job['job_id']}/files/{name}"
        assert f'href="{href}"' in page.text
        served = client.get(href)
        assert served.status_code == 200, served.text
    assert client.get(f"/ui/jobs/{job['job_id']}/files/aggregate.csv").text.startswith("run_id")
    assert client.get(f"/ui/jobs/{job['job_id']}/files/run.json").status_code == 404
    planning = finished["planning"]["job_id"]
    assert client.get(f"/ui/jobs/{planning}/files/aggregate.csv").status_code == 404
    assert client.get("/ui/jobs/job-nope/files/aggregate.csv").status_code == 404


def test_unknown_job_is_a_404_page(client):
    page = client.get("/ui/jobs/job-nope")
    assert page.status_code == 404
    assert "<html" in page.text and "job-nope" in page.text
    assert client.get("/ui/jobs/job-nope", headers=HX).status_code == 404


def test_cancel_a_queued_job(client, lineage):
    queued = _queue_planning(client, lineage["plan_version_id"])
    response = post_form(client, f"/ui/jobs/{queued.job_id}/cancel")
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/ui/jobs/{queued.job_id}?msg=")
    assert _job(client, queued.job_id).status == "cancelled"
    shown = client.get(response.headers["location"])
    assert "cancelled" in shown.text and "hx-trigger" not in shown.text
    again = post_form(client, f"/ui/jobs/{queued.job_id}/cancel")
    assert again.status_code == 409
    assert "nothing to cancel" in again.text
    assert post_form(client, "/ui/jobs/job-nope/cancel").status_code == 404


def test_aggregate_form_queues_a_job(client, lineage):
    pv = lineage["plan_version_id"]
    response = post_form(client, "/ui/jobs/aggregate", {"plan_version_id": f"  {pv} "})
    assert response.status_code == 303
    location = response.headers["location"]
    job_id = re.match(r"/ui/jobs/(job-[0-9a-z]+)\?msg=", location)
    assert job_id, location
    job = _job(client, job_id.group(1))
    assert job.type == "aggregate" and job.status == "queued" and job.plan_version_id == pv
    page = client.get(location)
    assert "Aggregate job" in page.text and "queued" in page.text


@pytest.mark.parametrize(("value", "status"), [("pv-nope", 404), ("", 422), ("   ", 422)])
def test_aggregate_form_refuses_an_unknown_plan(client, lineage, value, status):
    response = post_form(client, "/ui/jobs/aggregate", {"plan_version_id": value})
    assert response.status_code == status
    assert 'class="banner banner-error"' in response.text
    assert "Nothing was queued" in response.text
    assert 'action="/ui/jobs/aggregate"' in response.text  # the form, again
    if value.strip():
        assert f'value="{value}"' in response.text
    assert _all_jobs(client) == []


def test_posts_without_csrf_or_from_another_site_change_nothing(client, lineage):
    queued = _queue_planning(client, lineage["plan_version_id"])
    pv = lineage["plan_version_id"]
    token = csrf_token(client)
    refused = [
        client.post("/ui/jobs/aggregate", data={"plan_version_id": pv}),
        client.post("/ui/jobs/aggregate", data={"plan_version_id": pv, "csrf_token": "0" * 64}),
        client.post(f"/ui/jobs/{queued.job_id}/cancel", data={}),
        client.post(
            "/ui/jobs/aggregate",
            data={"plan_version_id": pv, "csrf_token": token},
            headers={"Origin": "https://evil.example"},
        ),
        client.post(
            f"/ui/jobs/{queued.job_id}/cancel",
            data={"csrf_token": token},
            headers={"Origin": "https://evil.example"},
        ),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert all("<html" in r.text for r in refused)
    assert _all_jobs(client) == [queued.job_id]
    assert _job(client, queued.job_id).status == "queued"


def test_with_a_token_posts_need_a_login(yard_path, lineage, monkeypatch):
    monkeypatch.setenv("RUNYARD_TOKEN", "s3cret-token")
    with ui_client(yard_path) as client:
        queued = _queue_planning(client, lineage["plan_version_id"])
        for url, data in (
            ("/ui/jobs/aggregate", {"plan_version_id": lineage["plan_version_id"]}),
            (f"/ui/jobs/{queued.job_id}/cancel", {}),
        ):
            response = post_form(client, url, data)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/ui/login")
        assert _all_jobs(client) == [queued.job_id]
        assert _job(client, queued.job_id).status == "queued"
        # Logged in, the same cancel works.
        login = post_form(client, "/ui/login", {"token": "s3cret-token", "next": "/ui/jobs"})
        assert login.status_code == 303
        response = post_form(client, f"/ui/jobs/{queued.job_id}/cancel")
        assert response.status_code == 303
        assert _job(client, queued.job_id).status == "cancelled"
