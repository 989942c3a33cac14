"""``/ui/scenarios``: the list and a scenario's page, lock and unlock, the way to a new plan,
and the closed legacy path; every refused post changes nothing."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from runyard.web.ui import scenarios as scenarios_ui
from tests.helpers.ui import csrf_token, json_twin, post_form, ui_client

# The UI is engine-agnostic: its pages run on SQLite here; the API tests
# (test_web_api.py, test_web_actions.py) and the registry's own tests cover PostgreSQL.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def state(snapshot):
    """The yard's files and rows, but the web secret the first app makes for itself."""
    taken = snapshot()
    taken.files.pop(".web_secret", None)
    return taken


def _scenario(client, id_or_name):
    return client.get(f"/api/v1/scenarios/{id_or_name}").json()


def _twin_answers(client, page_html):
    href = json_twin(page_html)
    assert href and href.startswith("/api/v1/")
    assert client.get(href).status_code == 200
    return href


def test_list_shows_scenarios_with_lock_state_and_new_plan_link(yard_path, cli, lineage):
    cli.ok("scenario", "add", "frozen", "--description", "old data")
    cli.ok("scenario", "lock", "frozen", "--reason", "audit in progress")
    with ui_client(yard_path) as client:
        page = client.get("/ui/scenarios")
        assert page.status_code == 200
        assert _twin_answers(client, page.text) == "/api/v1/scenarios"
        text = page.text
        sid = lineage["scenario_id"]
        assert ">base</a>" in text and sid in text and "demo demand" in text
        assert f'href="/ui/plans/new?scenario={sid}"' in text
        assert "New plan from this scenario" in text
        assert "audit in progress" in text and "since " in text
        frozen = _scenario(client, "frozen")
        # a locked scenario offers Unlock, an open one Lock (with its reason field)
        assert f'action="/ui/scenarios/{frozen["scenario_id"]}/unlock"' in text
        assert f'action="/ui/scenarios/{sid}/lock"' in text
        assert 'aria-label="Lock reason for base"' in text
        assert f'href="/ui/plans/new?scenario={frozen["scenario_id"]}"' not in text


def test_list_empty_state_and_keyset_pages(yard_path, cli, monkeypatch):
    with ui_client(yard_path) as client:
        assert "No scenarios yet" in client.get("/ui/scenarios").text
    for name in ("a", "b", "c"):
        cli.ok("scenario", "add", name)
    monkeypatch.setattr(scenarios_ui, "PAGE_SIZE", 2)
    with ui_client(yard_path) as client:
        first = client.get("/ui/scenarios").text
        assert ">a</a>" in first and ">b</a>" in first and ">c</a>" not in first
        older = re.search(r'<a rel="next" href="\?after=([^"]+)"', first)
        assert older
        second = client.get(f"/ui/scenarios?after={older.group(1)}")
        assert second.status_code == 200 and ">c</a>" in second.text and ">a</a>" not in second.text
        assert json_twin(second.text) == f"/api/v1/scenarios?after={older.group(1)}"
        assert client.get(json_twin(second.text)).json()["items"][0]["name"] == "c"
        bad = client.get("/ui/scenarios?after=garbage")
        assert bad.status_code == 422 and "invalid cursor" in bad.text


def test_detail_by_id_and_name_lists_its_plans(yard_path, cli, lineage, tmp_path: Path):
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"demand": [1, 2, 3]}))
    with_data = cli.ok("scenario", "add", "with-data", "--data", str(data))
    with ui_client(yard_path) as client:
        sid = lineage["scenario_id"]
        for key in (sid, "base"):
            page = client.get(f"/ui/scenarios/{key}")
            assert page.status_code == 200
            assert _twin_answers(client, page.text) == f"/api/v1/scenarios/{sid}"
            assert f'href="/ui/plans/{lineage["plan_version_id"]}"' in page.text
            assert f'href="/ui/configs/{lineage["config_version_id"]}"' in page.text
            assert f'href="/ui/plans/new?scenario={sid}"' in page.text
            assert f'href="/ui/runs?scenario={sid}"' in page.text
        shown = client.get(f"/ui/scenarios/{with_data['scenario_id']}").text
        assert with_data["data_digest"] in shown and " B</dd>" in shown
        assert "No plans from this scenario yet" in shown


def test_lock_from_list_and_unlock_from_detail(yard_path, lineage):
    sid = lineage["scenario_id"]
    with ui_client(yard_path) as client:
        locked = post_form(client, f"/ui/scenarios/{sid}/lock", {"reason": "quarter close"})
        assert locked.status_code == 303
        assert locked.headers["location"].startswith("/ui/scenarios?msg=Locked")
        now = _scenario(client, sid)
        assert now["locked"] is True and now["locked_reason"] == "quarter close"
        assert now["locked_at"]
        # the lineage file follows, as with `runyard scenario lock`
        lineage_file = yard_path / "lineage" / "scenarios" / f"{sid}.json"
        assert json.loads(lineage_file.read_text())["locked"] is True
        page = client.get(locked.headers["location"]).text
        assert "Locked scenario base" in page and "quarter close" in page
        detail = client.get(f"/ui/scenarios/{sid}").text
        assert "This scenario is locked: quarter close" in detail
        assert f'href="/ui/plans/new?scenario={sid}"' not in detail
        assert f'action="/ui/scenarios/{sid}/unlock"' in detail
        assert '<input type="hidden" name="back" value="detail">' in detail

        unlocked = post_form(client, f"/ui/scenarios/{sid}/unlock", {"back": "detail"})
        assert unlocked.status_code == 303
        assert unlocked.headers["location"].startswith(f"/ui/scenarios/{sid}?msg=Unlocked")
        now = _scenario(client, sid)
        assert now["locked"] is False and now["locked_reason"] is None
        assert json.loads(lineage_file.read_text())["locked"] is False

        # by name, without a reason, and back to the list whatever "back" says
        again = post_form(client, "/ui/scenarios/base/lock", {"back": "https://evil.example/"})
        assert again.status_code == 303 and again.headers["location"].startswith("/ui/scenarios?")
        assert _scenario(client, sid)["locked"] is True


@pytest.mark.parametrize(
    ("url", "data", "status", "says"),
    [
        ("/ui/scenarios/nope/lock", {}, 404, "no scenario with id or name"),
        ("/ui/scenarios/nope/unlock", {}, 404, "no scenario with id or name"),
        ("/ui/scenarios/bad%01id/lock", {}, 422, "control characters"),
        ("/ui/scenarios/" + "x" * 300 + "/lock", {}, 422, "at most 200 characters"),
        ("/ui/scenarios/base/lock", {"reason": "r" * 1001}, 422, "at most 1000 characters"),
    ],
)
def test_lock_bad_input_changes_nothing(yard_path, lineage, snapshot, url, data, status, says):
    before = state(snapshot)
    with ui_client(yard_path) as client:
        answer = post_form(client, url, data)
        assert answer.status_code == status
        assert says in html.unescape(answer.text) and "Traceback" not in answer.text
    assert state(snapshot) == before


def test_lock_refused_without_csrf_from_foreign_origin_and_without_login(
    yard_path, lineage, snapshot, monkeypatch
):
    sid = lineage["scenario_id"]
    url = f"/ui/scenarios/{sid}/lock"
    before = state(snapshot)
    with ui_client(yard_path) as client:
        client.get("/ui/scenarios")  # a session cookie, but no token in the post
        no_csrf = client.post(url, data={"reason": "x"})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        wrong_csrf = client.post(url, data={"reason": "x", "csrf_token": "0" * 64})
        assert wrong_csrf.status_code == 403
        foreign = client.post(
            url,
            data={"reason": "x", "csrf_token": csrf_token(client)},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403 and "refused" in foreign.text
    monkeypatch.setenv("RUNYARD_TOKEN", "s3cret-token")
    with ui_client(yard_path) as client:
        anonymous = post_form(client, url, {"reason": "x"})
        assert anonymous.status_code == 303
        assert anonymous.headers["location"].startswith("/ui/login?next=")
        # logged in, the same post works: the refusal above was the login, nothing else
        login = post_form(client, "/ui/login", {"token": "s3cret-token", "next": "/ui/scenarios"})
        assert login.status_code == 303
        assert state(snapshot) == before
        assert post_form(client, url, {"reason": "x"}).status_code == 303
        assert _scenario(client, sid)["locked"] is True


def test_detail_unknown_and_invalid_ids(yard_path, lineage):
    with ui_client(yard_path) as client:
        missing = client.get("/ui/scenarios/nope")
        assert missing.status_code == 404 and "no scenario with id or name" in missing.text
        assert "<h1>404" in missing.text
        assert client.get("/ui/scenarios/bad%00id").status_code == 422
        assert client.get("/ui/scenarios/" + "y" * 201).status_code == 422


LEGACY_BANNER = "Runs are no longer started from a scenario"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_legacy_run_path_is_closed_with_a_banner_to_plans(yard_path, lineage, snapshot, method):
    sid = lineage["scenario_id"]
    before = state(snapshot)
    with ui_client(yard_path) as client:
        answer = client.request(method, f"/ui/scenarios/{sid}/run")
        assert answer.status_code == 403
        assert LEGACY_BANNER in answer.text and 'class="banner banner-warn"' in answer.text
        assert "legacy_path_closed" in answer.text
        link = re.search(r'<a class="button" href="([^"]+)">([^<]+)</a>', answer.text)
        assert link and link.group(1) == f"/ui/plans/new?scenario={sid}"
        assert link.group(2) == "Create a plan from this scenario"
        # the link leads to the form with this scenario chosen
        form = client.get(link.group(1)).text
        assert re.search(rf'<option value="{sid}" selected>base</option>', form)
        # the same with a CSRF token and a login-less yard: still closed, still no run
        posted = post_form(client, f"/ui/scenarios/{sid}/run")
        assert posted.status_code == 403 and LEGACY_BANNER in posted.text
    assert state(snapshot) == before


def test_legacy_run_path_answers_403_for_unknown_and_odd_ids(yard_path, snapshot):
    before = state(snapshot)
    with ui_client(yard_path) as client:
        unknown = client.get("/ui/scenarios/no-such-scenario/run")
        assert unknown.status_code == 403 and LEGACY_BANNER in unknown.text
        assert 'href="/ui/plans/new?scenario=no-such-scenario"' in unknown.text
        odd = client.post('/ui/scenarios/"><b onmouseover=alert(1)>x/run')
        assert odd.status_code == 403 and LEGACY_BANNER in odd.text
        assert "<b onmouseover" not in odd.text  # escaped, never markup
        # URL-encoded in the link (and so never markup either)
        encoded = "%22%3E%3Cb%20onmouseover%3Dalert%281%29%3Ex"
        assert f'href="/ui/plans/new?scenario={encoded}"' in odd.text
    assert state(snapshot) == before
