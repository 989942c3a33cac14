"""``/ui/plans``: the list with its filters, the new-plan form (create, create and run, every
refusal re-rendered with what was typed and nothing created), a plan's page with its
lineage, runs, jobs and aggregates, "run again" and "aggregate"."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import runyard
from runyard.jobs import service as job_service
from runyard.web.ui import plans as plans_ui
from tests.helpers.ui import csrf_token, json_twin, post_form, ui_client

# The UI is engine-agnostic: its pages run on SQLite here; the API tests
# (test_web_api.py, test_web_actions.py) and the registry's own tests cover PostgreSQL.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def state(snapshot):
    """The yard's files and rows, but the web secret the first app makes for itself."""
    taken = snapshot()
    taken.files.pop(".web_secret", None)
    return taken


def _twin_answers(client, page_html):
    href = json_twin(page_html)
    assert href and href.startswith("/api/v1/")
    assert client.get(href).status_code == 200
    return href


def _plans(client, **params) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/api/v1/plans", params=params).json()["items"]
    return items


def _jobs(client, plan_version_id: str) -> list[dict[str, Any]]:
    found = client.get("/api/v1/jobs", params={"plan_version_id": plan_version_id})
    items: list[dict[str, Any]] = found.json()["items"]
    return items


@pytest.fixture
def made(cli, lineage) -> dict[str, Any]:
    """The lineage plan with three runs (two succeeded, one failed), KPIs in their summaries."""
    run_ids = []
    for status, fill in (("succeeded", 0.91), ("failed", 0.5), ("succeeded", 0.97)):
        run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
        summary = json.dumps({"fill_rate": fill, "cost": 1200, "note": "text"})
        cli.ok("run", "finish", run["run_id"], "--status", status, "--summary", summary)
        run_ids.append(run["run_id"])
    return {**lineage, "run_ids": run_ids}


@pytest.fixture
def second(cli, lineage, tmp_path: Path) -> dict[str, str]:
    """A second scenario and config version, and a plan from them."""
    scenario = cli.ok("scenario", "add", "north")
    f = tmp_path / "c2.json"
    f.write_text(json.dumps({"lot_size": 20}))
    config = cli.ok("config", "add", str(f), "--name", "policy-v2")
    plan = cli.ok(
        "plan",
        "create",
        "--scenario",
        "north",
        "--config",
        config["config_version_id"],
        "--label",
        "north plan",
    )
    return {
        **lineage,
        "scenario2": scenario["scenario_id"],
        "config2": config["config_version_id"],
        "plan2": plan["plan_version_id"],
    }


# --- the list -----------------------------------------------------------------------------


def test_list_with_lineage_columns_and_filters(yard_path, second):
    with ui_client(yard_path) as client:
        page = client.get("/ui/plans")
        assert page.status_code == 200
        assert _twin_answers(client, page.text) == "/api/v1/plans"
        text = page.text
        for pid in (second["plan_version_id"], second["plan2"]):
            assert f'href="/ui/plans/{pid}"' in text
        assert f'href="/ui/scenarios/{second["scenario_id"]}">base</a>' in text
        assert f'href="/ui/scenarios/{second["scenario2"]}">north</a>' in text
        assert f'href="/ui/configs/{second["config2"]}"' in text
        assert "north plan" in text and "<td>default</td>" in text
        assert text.index(second["plan2"]) < text.index(second["plan_version_id"])  # newest first

        by_name = client.get("/ui/plans", params={"scenario": "north"})
        assert by_name.status_code == 200
        assert f'href="/ui/plans/{second["plan2"]}"' in by_name.text
        assert f'href="/ui/plans/{second["plan_version_id"]}"' not in by_name.text
        assert f'<option value="{second["scenario2"]}" selected>north</option>' in by_name.text
        assert _twin_answers(client, by_name.text) == "/api/v1/plans?scenario=north"

        by_config = client.get(
            "/ui/plans", params={"config_version_id": second["config_version_id"], "scenario": ""}
        )
        assert f'href="/ui/plans/{second["plan_version_id"]}"' in by_config.text
        assert f'href="/ui/plans/{second["plan2"]}"' not in by_config.text
        twin = _twin_answers(client, by_config.text)
        assert twin == f"/api/v1/plans?config_version_id={second['config_version_id']}"

        none = client.get(
            "/ui/plans",
            params={"scenario": "north", "config_version_id": second["config_version_id"]},
        )
        assert "No plans match these filters" in none.text


def test_list_empty_state_pages_and_bad_filters(yard_path, second, monkeypatch):
    monkeypatch.setattr(plans_ui, "PAGE_SIZE", 1)
    with ui_client(yard_path) as client:
        first = client.get("/ui/plans").text
        assert second["plan2"] in first and second["plan_version_id"] not in first
        older = re.search(r'<a rel="next" href="\?after=([^"]+)"', first)
        assert older
        page2 = client.get(f"/ui/plans?after={older.group(1)}")
        assert page2.status_code == 200 and second["plan_version_id"] in page2.text
        assert _twin_answers(client, page2.text).startswith("/api/v1/plans?after=")
        for params, status in (
            ({"after": "garbage"}, 422),
            ({"scenario": "nope"}, 404),
            ({"config_version_id": "cfg-nope"}, 404),
            ({"scenario": "bad\x00name"}, 422),
            ({"config_version_id": "x" * 300}, 422),
        ):
            answer = client.get("/ui/plans", params=params)
            assert answer.status_code == status, params
            assert "Traceback" not in answer.text


def test_list_empty_state(yard_path):
    with ui_client(yard_path) as client:
        page = client.get("/ui/plans")
        assert page.status_code == 200 and "No plans yet" in page.text
        assert 'href="/ui/plans/new"' in page.text


# --- the form -----------------------------------------------------------------------------


def _add_runner(yard_path: Path, name: str) -> None:
    config = yard_path / "runyard.toml"
    config.write_text(
        config.read_text() + f'\n[runners.{name}]\nkind = "command"\nargv = ["true"]\n'
    )


def test_form_preselects_scenario_and_lists_choices(yard_path, cli, lineage):
    cli.ok("scenario", "add", "frozen")
    cli.ok("scenario", "lock", "frozen", "--reason", "audit")
    _add_runner(yard_path, "echo")
    sid = lineage["scenario_id"]
    with ui_client(yard_path) as client:
        page = client.get("/ui/plans/new", params={"scenario": sid})
        assert page.status_code == 200
        assert _twin_answers(client, page.text) == "/api/v1/plans"
        text = page.text
        assert f'<option value="{sid}" selected>base</option>' in text
        frozen = client.get("/api/v1/scenarios/frozen").json()["scenario_id"]
        assert f'<option value="{frozen}" disabled>frozen (locked)</option>' in text
        assert f'<option value="{lineage["config_version_id"]}">policy-v1' in text
        runners = re.findall(r'<option value="([^"]+)"[^>]*>\1</option>', text)
        assert runners == ["default", "echo"]
        assert '<textarea name="params" rows="6" spellcheck="false">{}</textarea>' in text
        assert ">Create plan</button>" in text and ">Create and run</button>" in text
        assert 'name="csrf_token"' in text
        # by name too; a locked or unknown scenario is said at once
        assert f'<option value="{sid}" selected>' in client.get("/ui/plans/new?scenario=base").text
        locked = client.get("/ui/plans/new", params={"scenario": "frozen"})
        assert locked.status_code == 200 and "Scenario frozen is locked (audit)" in locked.text
        unknown = client.get("/ui/plans/new", params={"scenario": "nope"})
        assert unknown.status_code == 200 and "There is no scenario" in unknown.text
        assert client.get("/ui/plans/new", params={"scenario": "a\x00b"}).status_code == 422


def test_form_without_scenarios_or_configs_says_so(yard_path):
    with ui_client(yard_path) as client:
        page = client.get("/ui/plans/new")
        assert page.status_code == 200
        assert "No scenarios yet" in page.text and "No config versions yet" in page.text


def test_create_plan_redirects_to_its_page(yard_path, lineage):
    _add_runner(yard_path, "echo")
    with ui_client(yard_path) as client:
        created = post_form(
            client,
            "/ui/plans/new",
            {
                "scenario": lineage["scenario_id"],
                "config_version_id": lineage["config_version_id"],
                "params": '{"horizon": 26, "mode": "fast", "weights": [1.5, 2]}',
                "runner": "echo",
                "label": "  spring  ",
                "action": "create",
            },
        )
        assert created.status_code == 303
        location = created.headers["location"]
        assert location.startswith("/ui/plans/pv-") and "msg=Created+plan" in location
        pid = urlsplit(location).path.rsplit("/", 1)[1]
        plan = client.get(f"/api/v1/plans/{pid}").json()
        assert plan["params"] == {"horizon": 26, "mode": "fast", "weights": [1.5, 2]}
        assert plan["runner"] == "echo" and plan["label"] == "spring"
        assert plan["scenario_id"] == lineage["scenario_id"]
        assert _jobs(client, pid) == []  # "Create plan" does not run it
        page = client.get(location)
        assert page.status_code == 200 and f"Created plan {pid}." in page.text


def test_plan_from_the_scenario_page_created_and_run(yard_path, lineage):
    """The operator's flow: scenario page → New plan from this scenario → Create and run."""
    sid = lineage["scenario_id"]
    with ui_client(yard_path) as client:
        scenario_page = client.get(f"/ui/scenarios/{sid}").text
        link = re.search(
            r'href="(/ui/plans/new\?scenario=[^"]+)">New plan from this scenario', scenario_page
        )
        assert link
        form = client.get(html.unescape(link.group(1)))
        assert (
            form.status_code == 200 and f'<option value="{sid}" selected>base</option>' in form.text
        )
        ran = client.post(
            "/ui/plans/new",
            data={
                "csrf_token": re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text).group(
                    1
                ),
                "scenario": sid,
                "config_version_id": lineage["config_version_id"],
                "params": '{"horizon": 8}',
                "runner": "default",
                "label": "",
                "action": "run",
            },
        )
        assert ran.status_code == 303
        location = urlsplit(ran.headers["location"])
        assert location.path.startswith("/ui/jobs/job-")
        job_id = location.path.rsplit("/", 1)[1]
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["type"] == "planning" and job["status"] == "queued"
        plans = _plans(client, scenario=sid)
        new = [p for p in plans if p["plan_version_id"] != lineage["plan_version_id"]]
        assert len(new) == 1 and new[0]["params"] == {"horizon": 8} and new[0]["label"] is None
        assert job["plan_version_id"] == new[0]["plan_version_id"]
        assert "queued planning job" in parse_qs(location.query)["msg"][0]
        # linked both ways: the scenario's page and the config's page list the new plan
        pid = new[0]["plan_version_id"]
        assert f'href="/ui/plans/{pid}"' in client.get(f"/ui/scenarios/{sid}").text
        assert (
            f'href="/ui/plans/{pid}"'
            in client.get(f"/ui/configs/{lineage['config_version_id']}").text
        )


GOOD = {"params": '{"horizon": 4}', "runner": "default", "label": "typed label"}


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"params": '{"horizon": '}, 422, "params is not valid JSON"),
        ({"params": "[1, 2]"}, 422, "params must be a JSON object"),
        ({"params": '{"a": 1, "a": 2}'}, 422, "duplicate key"),
        ({"params": '{"a": NaN}'}, 422, "not valid JSON"),
        ({"scenario": "nope"}, 422, "no scenario with id or name 'nope'"),
        ({"scenario": ""}, 422, "choose a base scenario"),
        ({"scenario": "bad\x01"}, 422, "control characters"),
        ({"config_version_id": "cfg-nope"}, 422, "no config version 'cfg-nope'"),
        ({"config_version_id": ""}, 422, "choose a config version"),
        ({"runner": "nosuch"}, 422, "no runner 'nosuch'"),
        ({"runner": "../x"}, 422, "invalid runner name"),
        ({"label": "x" * 201}, 422, "at most 200 characters"),
        ({"scenario": "frozen"}, 423, "is locked (audit): creating a plan refused"),
    ],
)
def test_refused_form_is_shown_again_and_nothing_is_made(
    yard_path, cli, lineage, snapshot, change, status, says
):
    cli.ok("scenario", "add", "frozen")
    cli.ok("scenario", "lock", "frozen", "--reason", "audit")
    before = state(snapshot)
    data = {
        "scenario": lineage["scenario_id"],
        "config_version_id": lineage["config_version_id"],
        **GOOD,
        "action": "run",
        **change,
    }
    with ui_client(yard_path) as client:
        answer = post_form(client, "/ui/plans/new", data)
        assert answer.status_code == status
        text = html.unescape(answer.text)
        assert 'role="alert"' in answer.text and "Not created: " in text and says in text
        assert "<h1>New plan</h1>" in answer.text  # the form again, not an error page
        # what the user typed is kept
        assert f'spellcheck="false">{data["params"]}</textarea>' in text
        assert f'name="label" value="{data["label"]}"' in text
        if change.get("runner", "default") != "default":
            assert f'<option value="{data["runner"]}" selected>' in answer.text
    assert state(snapshot) == before


def test_create_refused_without_csrf_from_foreign_origin_and_without_login(
    yard_path, lineage, snapshot, monkeypatch
):
    data = {
        "scenario": lineage["scenario_id"],
        "config_version_id": lineage["config_version_id"],
        **GOOD,
        "action": "run",
    }
    pid = lineage["plan_version_id"]
    before = state(snapshot)
    with ui_client(yard_path) as client:
        client.get("/ui/plans/new")
        for url in ("/ui/plans/new", f"/ui/plans/{pid}/run", f"/ui/plans/{pid}/aggregate"):
            assert client.post(url, data=data).status_code == 403, url
            foreign = client.post(
                url,
                data={**data, "csrf_token": csrf_token(client)},
                headers={"Origin": "http://evil.example:8765"},
            )
            assert foreign.status_code == 403 and "refused" in foreign.text, url
    monkeypatch.setenv("RUNYARD_TOKEN", "tok-123456")
    with ui_client(yard_path) as client:
        for url in ("/ui/plans/new", f"/ui/plans/{pid}/run", f"/ui/plans/{pid}/aggregate"):
            anonymous = post_form(client, url, data)
            assert anonymous.status_code == 303, url
            assert anonymous.headers["location"].startswith("/ui/login?next=")
    assert state(snapshot) == before


# --- one plan -----------------------------------------------------------------------------


def test_plan_page_lineage_runs_and_compare(yard_path, made):
    pid = made["plan_version_id"]
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/plans/{pid}")
        assert page.status_code == 200
        assert _twin_answers(client, page.text) == f"/api/v1/plans/{pid}"
        text = page.text
        assert f'href="/ui/scenarios/{made["scenario_id"]}">base</a>' in text
        assert f'href="/ui/configs/{made["config_version_id"]}"' in text and "policy-v1" in text
        assert "&#34;horizon&#34;: 52" in text
        for run_id in made["run_ids"]:
            assert f'href="/ui/runs/{run_id}"' in text
        assert '<th class="num">cost</th>' in text and '<th class="num">fill_rate</th>' in text
        assert '<th class="num">note</th>' not in text  # not a number
        assert '<td class="num">0.97</td>' in text and '<td class="num">1,200</td>' in text
        assert f'href="/ui/runs?plan_version_id={pid}"' in text and "All runs of this plan" in text
        # compare: the newest succeeded runs, newest first
        compare = re.search(r'href="(/ui/runs/compare\?[^"]+)">Compare runs', text)
        assert compare
        ids = parse_qs(urlsplit(html.unescape(compare.group(1))).query)["ids"]
        assert ids == [made["run_ids"][2], made["run_ids"][0]]
        assert "No jobs for this plan yet" in text and "No aggregates yet" in text
        assert (
            f'action="/ui/plans/{pid}/run"' in text
            and f'action="/ui/plans/{pid}/aggregate"' in text
        )


def test_plan_page_without_runs_has_no_compare_link(yard_path, lineage):
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/plans/{lineage['plan_version_id']}").text
        assert "No runs yet" in page and "Compare runs" not in page


def test_run_again_and_aggregate_queue_jobs_shown_on_the_plan(yard_path, made):
    pid = made["plan_version_id"]
    with ui_client(yard_path) as client:
        again = post_form(client, f"/ui/plans/{pid}/run")
        assert again.status_code == 303
        job_path = urlsplit(again.headers["location"]).path
        assert job_path.startswith("/ui/jobs/job-")
        planning = client.get(f"/api/v1/jobs/{job_path.rsplit('/', 1)[1]}").json()
        assert planning["type"] == "planning" and planning["plan_version_id"] == pid

        aggregate = post_form(client, f"/ui/plans/{pid}/aggregate")
        assert aggregate.status_code == 303
        agg_id = urlsplit(aggregate.headers["location"]).path.rsplit("/", 1)[1]
        assert client.get(f"/api/v1/jobs/{agg_id}").json()["type"] == "aggregate"
        assert {j["job_id"] for j in _jobs(client, pid)} == {planning["job_id"], agg_id}

        # a worker runs the aggregate (as `runyard worker` would): the page shows its file
        with runyard.open_yard(yard_path) as yard:
            assert job_service.run_or_wait(yard, agg_id, poll_seconds=0.05).status == "succeeded"
        page = client.get(f"/ui/plans/{pid}").text
        assert (
            f'href="/ui/jobs/{agg_id}"' in page and f'href="/ui/jobs/{planning["job_id"]}"' in page
        )
        shown = client.get(f"/api/v1/plans/{pid}").json()
        assert len(shown["aggregates"]) == 1
        folder = shown["aggregates"][0]["path"]
        assert f"<code>{folder}/aggregate.csv</code>" in page
        assert f"<code>{folder}/aggregate.json</code>" in page
        assert (yard_path / folder / "aggregate.csv").is_file()  # relative to the yard
        assert f'href="/ui/jobs?plan_version_id={pid}"' in page


def test_run_again_refused_for_a_locked_scenario(yard_path, cli, lineage, snapshot):
    pid = lineage["plan_version_id"]
    cli.ok("scenario", "lock", lineage["scenario_id"], "--reason", "frozen for audit")
    before = state(snapshot)
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/plans/{pid}").text
        assert '<button type="button" disabled>Run again</button>' in page
        refused = post_form(client, f"/ui/plans/{pid}/run")
        assert refused.status_code == 423
        assert "is locked (frozen for audit): running a plan refused" in html.unescape(refused.text)
    assert state(snapshot) == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/ui/plans/pv-nope", 404),
        ("POST", "/ui/plans/pv-nope/run", 404),
        ("POST", "/ui/plans/pv-nope/aggregate", 404),
        ("GET", "/ui/plans/pv%00x", 422),
        ("GET", "/ui/plans/" + "p" * 201, 422),
        ("POST", "/ui/plans/pv%01x/run", 422),
        ("POST", "/ui/plans/" + "p" * 201 + "/aggregate", 422),
    ],
)
def test_unknown_and_invalid_plan_ids(yard_path, lineage, snapshot, method, path, status):
    before = state(snapshot)
    with ui_client(yard_path) as client:
        answer = client.get(path) if method == "GET" else post_form(client, path)
        assert answer.status_code == status
        assert "<h1>" in answer.text and "Traceback" not in answer.text
    assert state(snapshot) == before
