"""The runs pages (``/ui/runs``): the history with its filters, keyset pages and htmx
table swap; a run's page with its artifacts, manifest and history; its files served as
inert downloads; pin, archive and restore of one run; runs compared side by side with
charts. Every refused request is a 4xx page and changes nothing."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import runyard
from runyard.lifecycle.lock import yard_lock
from tests.conftest import Cli, registry_snapshot, tree_snapshot
from tests.helpers.ui import csrf_token, json_twin, post_form, ui_client

# The UI is engine-agnostic: its pages run on SQLite here; the API tests
# (test_web_api.py, test_web_actions.py) and the registry's own tests cover PostgreSQL.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


RUN_LINK = re.compile(r'<a class="id" href="/ui/runs/([^"/]+)"[ >]')


def _listed(page: str) -> list[str]:
    return RUN_LINK.findall(page)


def _run_dir(yard_path: Path, run_id: str) -> Path:
    return yard_path / "runs" / run_id


def _flash(response: Any) -> str:
    location = response.headers["location"]
    return parse_qs(urlsplit(location).query).get("msg", [""])[0]


def _state(yard_path: Path) -> tuple[Any, Any]:
    return registry_snapshot(yard_path), tree_snapshot(yard_path / "runs")


def _archivable(yard_path: Path) -> None:
    """Guards that let a run made a moment ago be archived (no recent/keep-last hold)."""
    toml = yard_path / "runyard.toml"
    text = toml.read_text()
    text = text.replace("keep_recent_minutes = 60", "keep_recent_minutes = 0")
    text = text.replace("keep_last_runs = 2", "keep_last_runs = 0")
    toml.write_text(text)


@pytest.fixture
def made(cli: Cli, lineage: dict[str, str]) -> dict[str, Any]:
    """Three runs of the lineage plan: CH01/001 succeeded, CH01/002 failed, none running."""
    run_ids = []
    for group, status in (("CH01/001", "succeeded"), ("CH01/002", "failed"), (None, None)):
        args = ["run", "start", "--plan", lineage["plan_version_id"]]
        if group:
            args += ["--group", group]
        run = cli.ok(*args)
        if status:
            summary = {"fill_rate": 0.9, "cost": {"total": 1200, "holding": 200}, "note": "x"}
            cli.ok(
                "run", "finish", run["run_id"], "--status", status, "--summary", json.dumps(summary)
            )
        run_ids.append(run["run_id"])
    return {**lineage, "run_ids": run_ids}


# ---------------------------------------------------------------- the history


def test_history_lists_runs_newest_first_with_lineage_links(yard_path, made):
    with ui_client(yard_path) as client:
        page = client.get("/ui/runs")
        assert page.status_code == 200
        text = page.text
        assert _listed(text) == made["run_ids"][::-1]
        assert f'href="/ui/plans/{made["plan_version_id"]}"' in text
        assert f'<a href="/ui/scenarios/{made["scenario_id"]}">base</a>' in text
        assert f'href="/ui/configs/{made["config_version_id"]}"' in text
        assert "CH01/002" in text and 'class="badge status-failed"' in text
        assert 'form="compare-form"' in text and "Compare selected" in text
        assert 'action="/ui/runs/compare"' in text
        assert 'hx-get="/ui/runs"' in text and 'hx-target="#runs-table"' in text
        twin = json_twin(text)
        assert twin == "/api/v1/runs"
        assert client.get(twin).status_code == 200


def test_history_empty_state(yard_path):
    with ui_client(yard_path) as client:
        page = client.get("/ui/runs")
    assert page.status_code == 200 and "No runs yet" in page.text


def test_history_names_a_page_of_scenarios_in_one_query(yard_path, made, monkeypatch):
    from runyard.registry import scenarios

    calls = []
    real = scenarios.scenario_names

    def counting(conn, ids):
        calls.append(sorted(set(ids)))
        return real(conn, ids)

    monkeypatch.setattr("runyard.registry.runs.scenario_names", counting)
    with ui_client(yard_path) as client:
        assert client.get("/ui/runs").status_code == 200
    assert calls == [[made["scenario_id"]]]


FILTER_CASES = [
    ("plan_version_id", "{plan_version_id}", [0, 1, 2]),
    ("scenario", "base", [0, 1, 2]),
    ("scenario", "{scenario_id}", [0, 1, 2]),
    ("config_version_id", "{config_version_id}", [0, 1, 2]),
    ("status", "failed", [1]),
    ("status", "running", [2]),
    ("status", "cancelled", []),
    ("group", "CH01/001", [0]),
    ("location", "active", [0, 1, 2]),
    ("location", "archived", []),
    ("legacy", "false", [0, 1, 2]),
    ("legacy", "true", []),
    ("started_after", "2000-01-01T00:00", [0, 1, 2]),
    ("started_before", "2000-01-01T00:00", []),
]


def test_each_filter(yard_path, made):
    with ui_client(yard_path) as client:
        for param, template, expected in FILTER_CASES:
            value = template.format(**made)
            # A GET form sends its empty fields too: they mean "any".
            params = {"plan_version_id": "", "status": "", "location": "", param: value}
            page = client.get("/ui/runs", params=params)
            assert page.status_code == 200, (param, page.text)
            want = [made["run_ids"][i] for i in expected][::-1]
            assert _listed(page.text) == want, param
            if not want:
                assert "No runs match these filters" in page.text
            # the form shows the filter it applied
            shown = f'value="{value}"', f'<option value="{value}" selected>'
            assert any(s in page.text for s in shown), param
            twin = json_twin(page.text)
            assert twin is not None and f"{param}=" in twin and "status=&" not in twin
            api = client.get(twin)
            assert api.status_code == 200, (param, api.text)
            assert [r["run_id"] for r in api.json()["items"]] == want, param


def test_unknown_lineage_filter_is_an_empty_table(yard_path, made):
    unknown = {
        "plan_version_id": "pv-nope",
        "scenario": "no-such-scenario",
        "config_version_id": "cfg-nope",
    }
    with ui_client(yard_path) as client:
        for param, value in unknown.items():
            page = client.get("/ui/runs", params={param: value})
            assert page.status_code == 200
            assert _listed(page.text) == []
            assert "No runs match these filters" in page.text and value in page.text


BAD_FILTERS = [
    {"status": "nope"},
    {"location": "elsewhere"},
    {"legacy": "maybe"},
    {"after": "garbage"},
    {"started_after": "yesterday"},
    {"started_before": "2026-13-45"},
    {"limit": "0"},
    {"limit": "many"},
]


def test_bad_filters_are_a_422_page(yard_path, made):
    with ui_client(yard_path) as client:
        for params in BAD_FILTERS:
            page = client.get("/ui/runs", params=params)
            assert page.status_code == 422, params
            assert "422 · Invalid input" in page.text and "Traceback" not in page.text
            assert page.headers["content-type"].startswith("text/html")


def test_keyset_pages_cover_every_run_once_and_keep_filters(yard_path, made):
    seen: list[str] = []
    with ui_client(yard_path) as client:
        url = "/ui/runs?limit=2&plan_version_id=" + made["plan_version_id"]
        pages = 0
        while url:
            page = client.get(url)
            assert page.status_code == 200
            pages += 1
            seen += _listed(page.text)
            found = re.search(r'rel="next" href="([^"]+)"', page.text)
            url = "/ui/runs" + html.unescape(found.group(1)) if found else ""
            if url:
                assert "limit=2" in url and made["plan_version_id"] in url and "after=" in url
        assert pages == 2
        assert "« first page" in page.text
    assert seen == made["run_ids"][::-1]


def test_htmx_swaps_only_the_table(yard_path, made):
    with ui_client(yard_path) as client:
        partial = client.get(
            "/ui/runs", params={"status": "failed"}, headers={"HX-Request": "true"}
        )
        assert partial.status_code == 200
        assert "<html" not in partial.text and "<table" in partial.text
        assert _listed(partial.text) == [made["run_ids"][1]]
        assert "HX-Request" in partial.headers["vary"]
        full = client.get("/ui/runs", params={"status": "failed"})
        assert "<html" in full.text and 'id="runs-table"' in full.text
        # htmx restoring a page missing from its history cache needs the whole page
        restore = client.get(
            "/ui/runs",
            params={"status": "failed"},
            headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
        )
        assert "<html" in restore.text
        empty = client.get(
            "/ui/runs", params={"status": "cancelled"}, headers={"HX-Request": "true"}
        )
        assert "<html" not in empty.text and "No runs match" in empty.text


# ---------------------------------------------------------------- a run's page


@pytest.fixture
def with_files(yard_path: Path, made: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    run_id = made["run_ids"][0]
    folder = _run_dir(yard_path, run_id)
    (folder / "out").mkdir()
    (folder / "out" / "report.html").write_text("<script>alert(1)</script><h1>hi</h1>")
    (folder / "out" / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(32))
    (folder / "data.csv").write_text("a,b\n1,2\n")
    (folder / "notes 日本語.txt").write_text("memo")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    os.symlink(secret, folder / "escape.txt")
    os.symlink("data.csv", folder / "inside-link.csv")
    return {**made, "run_id": run_id, "folder": folder}


def test_run_page_shows_summary_kpis_artifacts_manifest(yard_path, with_files):
    run_id = with_files["run_id"]
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/runs/{run_id}")
        assert page.status_code == 200
        text = page.text
        assert f'href="/ui/plans/{with_files["plan_version_id"]}"' in text
        assert f'href="/ui/configs/{with_files["config_version_id"]}"' in text
        assert f'<a href="/ui/scenarios/{with_files["scenario_id"]}">base</a>' in text
        assert "CH01/001" in text and "status-succeeded" in text
        # KPIs: nested keys flattened, numbers formatted
        assert "<code>cost.total</code>" in text and "1,200" in text
        assert "<code>fill_rate</code>" in text and "0.9" in text
        assert "<code>note</code>" in text  # not a number: in the other values
        # artifacts: every entry, links escaped, a symlink shown with its target
        for rel in ("out/report.html", "out/plot.png", "data.csv"):
            assert f"/ui/runs/{run_id}/artifacts/{rel}" in text
        assert f"/ui/runs/{run_id}/artifacts/notes%20%E6%97%A5%E6%9C%AC%E8%AA%9E.txt" in text
        assert "escape.txt" in text and "secret.txt" in text
        assert "?download=1" in text
        # the manifest, pretty-printed
        assert '<pre class="manifest">' in text and f"&#34;run_id&#34;: &#34;{run_id}&#34;" in text
        assert "Never archived" in text
        assert "Pin</button>" in text and "Preview archive" in text
        twin = json_twin(text)
        assert twin == f"/api/v1/runs/{run_id}"
        assert client.get(twin).json()["plan_version_id"] == with_files["plan_version_id"]


def test_run_page_of_a_running_run_and_an_error(yard_path, cli, made):
    running = made["run_ids"][2]
    failed = made["run_ids"][1]
    with ui_client(yard_path) as client:
        assert "status-running" in client.get(f"/ui/runs/{running}").text
        cli.ok("run", "start", "--plan", made["plan_version_id"], "--run-id", "oops")
        cli.ok("run", "finish", "oops", "--status", "failed", "--error", "disk <full>")
        page = client.get("/ui/runs/oops")
        assert "disk &lt;full&gt;" in page.text and 'role="alert"' in page.text
        assert client.get(f"/ui/runs/{failed}").status_code == 200


def test_run_page_with_a_corrupt_manifest(yard_path, made):
    run_id = made["run_ids"][0]
    (_run_dir(yard_path, run_id) / "run.json").write_text("{not json")
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200 and "is not valid JSON" in page.text


@pytest.mark.parametrize(("path", "status"), [("/ui/runs/nope", 404), ("/ui/runs/a..b", 422)])
def test_run_page_unknown_and_invalid_ids(yard_path, made, path, status):
    with ui_client(yard_path) as client:
        page = client.get(path)
    assert page.status_code == status and "<html" in page.text and "Traceback" not in page.text


def test_artifact_view_is_inert_plain_text(yard_path, with_files):
    base = f"/ui/runs/{with_files['run_id']}/artifacts"
    with ui_client(yard_path) as client:
        page = client.get(f"{base}/out/report.html")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/plain; charset=utf-8"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["content-security-policy"] == "sandbox"
        assert not page.headers["content-disposition"].startswith("attachment")
        assert page.text == "<script>alert(1)</script><h1>hi</h1>"
        csv = client.get(f"{base}/data.csv")
        assert (
            csv.headers["content-type"] == "text/plain; charset=utf-8" and csv.text == "a,b\n1,2\n"
        )
        png = client.get(f"{base}/out/plot.png")
        assert png.headers["content-type"] == "image/png"
        assert png.headers["content-security-policy"] == "sandbox"
        unicode_name = client.get(f"{base}/notes 日本語.txt")
        assert unicode_name.status_code == 200 and unicode_name.text == "memo"
        inside = client.get(f"{base}/inside-link.csv")  # a link that stays inside: served
        assert inside.status_code == 200 and inside.text == "a,b\n1,2\n"


def test_artifact_download_is_an_attachment(yard_path, with_files):
    base = f"/ui/runs/{with_files['run_id']}/artifacts"
    with ui_client(yard_path) as client:
        page = client.get(f"{base}/out/report.html", params={"download": "1"})
    assert page.status_code == 200
    assert page.headers["content-disposition"].startswith("attachment")
    assert 'filename="report.html"' in page.headers["content-disposition"]
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["content-security-policy"] == "sandbox"


ARTIFACT_REFUSALS = [
    ("escape.txt", 409),  # a symlink leading outside the run: never served
    ("missing.txt", 404),
    ("out", 422),  # a folder
    ("out/%2e%2e/%2e%2e/secret.txt", 422),
    ("%2e%2e/%2e%2e/runyard.toml", 422),
    ("/etc/passwd", 422),  # absolute
    ("out%5creport.html", 422),  # a backslash
]


def test_artifact_refusals(yard_path, with_files):
    with ui_client(yard_path) as client:
        for rel, status in ARTIFACT_REFUSALS:
            page = client.get(f"/ui/runs/{with_files['run_id']}/artifacts/{rel}")
            assert page.status_code == status, (rel, page.text)
            assert "TOP SECRET" not in page.text and "yard_id" not in page.text
            assert page.headers["content-type"].startswith("text/html")


def test_artifacts_of_unknown_or_invalid_runs(yard_path, with_files):
    with ui_client(yard_path) as client:
        assert client.get("/ui/runs/nope/artifacts/data.csv").status_code == 404
        assert client.get("/ui/runs/a..b/artifacts/data.csv").status_code == 422


# ---------------------------------------------------------------- pin, unpin


def _pinned(yard_path: Path, run_id: str) -> bool:
    with runyard.open_yard(yard_path) as yard:
        from runyard.registry.runs import get_run

        return get_run(yard, run_id).pinned


def test_pin_and_unpin(yard_path, made):
    run_id = made["run_ids"][0]
    with ui_client(yard_path) as client:
        pinned = post_form(client, f"/ui/runs/{run_id}/pin")
        assert pinned.status_code == 303
        assert urlsplit(pinned.headers["location"]).path == f"/ui/runs/{run_id}"
        assert "pinned" in _flash(pinned)
        assert _pinned(yard_path, run_id)
        page = client.get(pinned.headers["location"])
        assert "📌 pinned" in page.text and "Unpin</button>" in page.text
        assert 'role="status"' in page.text
        assert "📌" in client.get("/ui/runs").text
        unpinned = post_form(client, f"/ui/runs/{run_id}/unpin")
        assert unpinned.status_code == 303 and "no longer pinned" in _flash(unpinned)
        assert not _pinned(yard_path, run_id)


# ---------------------------------------------------------------- archive, restore


def test_archive_preview_then_archive_then_restore_one_run(yard_path, made):
    _archivable(yard_path)
    run_id = made["run_ids"][0]
    folder = _run_dir(yard_path, run_id)
    with ui_client(yard_path) as client:
        before = tree_snapshot(yard_path / "runs")
        preview = post_form(client, f"/ui/runs/{run_id}/archive/preview", {"reason": "tidy"})
        assert preview.status_code == 200
        assert "Archive now</button>" in preview.text and "dry run" in preview.text
        assert 'value="tidy"' in preview.text
        assert tree_snapshot(yard_path / "runs") == before  # a dry run moves nothing
        assert json_twin(preview.text) == f"/api/v1/runs/{run_id}"

        done = post_form(client, f"/ui/runs/{run_id}/archive", {"reason": "tidy"})
        assert done.status_code == 303
        message = _flash(done)
        batch = re.search(r"archived into batch (\S+)\.", message)
        assert batch, message
        batch_id = batch.group(1)
        assert not folder.exists()
        with runyard.open_yard(yard_path) as yard:
            assert yard.settings.run_dir(run_id, batch_id).is_dir()
        page = client.get(done.headers["location"])
        assert f'href="/ui/archives/{batch_id}"' in page.text
        assert "Preview restore" in page.text and "status-archived" in page.text
        # its files are served from where they are now
        assert client.get(f"/ui/runs/{run_id}/artifacts/run.json").status_code == 200
        others = made["run_ids"][1:]
        assert all(_run_dir(yard_path, r).is_dir() for r in others)  # only this run moved

        restore_preview = post_form(client, f"/ui/runs/{run_id}/restore/preview")
        assert restore_preview.status_code == 200
        assert "Restore now</button>" in restore_preview.text and batch_id in restore_preview.text
        assert client.get(json_twin(restore_preview.text)).status_code == 200
        assert not folder.exists()
        restored = post_form(client, f"/ui/runs/{run_id}/restore")
        assert restored.status_code == 303
        assert f"restored from batch {batch_id}" in _flash(restored)
        assert folder.is_dir()
        page = client.get(f"/ui/runs/{run_id}")
        assert "Preview archive" in page.text
        assert page.text.count(f'href="/ui/archives/{batch_id}"') == 2  # archived, restored
        history = client.get(f"/api/v1/runs/{run_id}/history")
        assert [e["kind"] for e in history.json()] == ["archived", "restored"]


def test_archive_preview_shows_every_skip_reason_and_archive_skips(yard_path, made):
    run_id = made["run_ids"][0]  # made a moment ago: the default guards keep it
    with ui_client(yard_path) as client:
        before = _state(yard_path)
        preview = post_form(client, f"/ui/runs/{run_id}/archive/preview")
        assert preview.status_code == 200
        assert "status-skip" in preview.text and "would not be archived" in preview.text
        assert "<code>recent_change</code>" in preview.text
        assert "<code>keep_last_runs</code>" in preview.text
        assert "Archive now" not in preview.text
        done = post_form(client, f"/ui/runs/{run_id}/archive")
        assert done.status_code == 303
        assert "not archived: skipped because" in _flash(done) and "recent_change" in _flash(done)
        assert _state(yard_path)[1] == before[1]
        running = made["run_ids"][2]
        preview = post_form(client, f"/ui/runs/{running}/archive/preview")
        assert "<code>in_progress</code>" in preview.text


def test_restore_of_an_active_run_is_refused(yard_path, made):
    run_id = made["run_ids"][0]
    with ui_client(yard_path) as client:
        before = _state(yard_path)
        for url in (f"/ui/runs/{run_id}/restore/preview", f"/ui/runs/{run_id}/restore"):
            page = post_form(client, url)
            assert page.status_code == 409 and "not archived" in page.text
        assert _state(yard_path) == before


def test_archive_while_the_yard_is_busy_is_an_error_page(yard_path, made):
    _archivable(yard_path)
    run_id = made["run_ids"][0]
    with ui_client(yard_path) as client:
        token = csrf_token(client)
        before = _state(yard_path)
        with yard_lock(yard_path, "test"):
            page = client.post(
                f"/ui/runs/{run_id}/archive", data={"csrf_token": token, "reason": "x"}
            )
        assert page.status_code in (409, 423)
        assert "busy" in page.text and "<html" in page.text and "Traceback" not in page.text
        assert _state(yard_path)[1] == before[1]
        assert _run_dir(yard_path, run_id).is_dir()


# ---------------------------------------------------------------- refusals of every post

POSTS = ("pin", "unpin", "archive/preview", "archive", "restore/preview", "restore")


@pytest.mark.parametrize("action", POSTS)
def test_posts_without_csrf_or_from_another_origin_are_refused(yard_path, made, action):
    _archivable(yard_path)
    run_id = made["run_ids"][0]
    with ui_client(yard_path) as client:
        token = csrf_token(client)
        before = _state(yard_path)
        url = f"/ui/runs/{run_id}/{action}"
        no_token = client.post(url, data={"reason": "x"})
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        wrong = client.post(url, data={"csrf_token": "0" * 64})
        assert wrong.status_code == 403
        foreign = client.post(
            url, data={"csrf_token": token}, headers={"Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403 and "evil.example" in foreign.text
        assert _state(yard_path) == before


@pytest.mark.parametrize("action", POSTS)
def test_posts_need_a_login_when_a_token_is_set(yard_path, made, action, monkeypatch):
    _archivable(yard_path)
    monkeypatch.setenv("RUNYARD_TOKEN", "s3cret-token")
    run_id = made["run_ids"][0]
    with ui_client(yard_path) as client:
        before = _state(yard_path)
        page = post_form(client, f"/ui/runs/{run_id}/{action}")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/ui/login?next=")
        assert _state(yard_path) == before
        # logged in, the same post goes through
        login = post_form(client, "/ui/login", {"token": "s3cret-token", "next": "/ui/runs"})
        assert login.status_code == 303
        if action == "pin":
            assert post_form(client, f"/ui/runs/{run_id}/pin").status_code == 303
            assert _pinned(yard_path, run_id)


@pytest.mark.parametrize("action", POSTS)
def test_posts_for_unknown_or_invalid_runs(yard_path, made, action):
    with ui_client(yard_path) as client:
        before = _state(yard_path)
        for run_id, status in (("nope", 404), ("a..b", 422), ("-x", 422)):
            page = post_form(client, f"/ui/runs/{run_id}/{action}")
            assert page.status_code == status and "<html" in page.text
        assert _state(yard_path) == before


def test_an_overlong_reason_is_refused(yard_path, made):
    _archivable(yard_path)
    run_id = made["run_ids"][0]
    with ui_client(yard_path) as client:
        before = _state(yard_path)
        page = post_form(client, f"/ui/runs/{run_id}/archive", {"reason": "x" * 501})
        assert page.status_code == 422
        assert _state(yard_path)[1] == before[1]


# ---------------------------------------------------------------- compare


def _psi(folder: Path, rows: list[tuple[str, str, float, float]]) -> None:
    lines = ["sku,period,demand,production,arrivals,sales,inventory,backlog"]
    lines += [f"{sku},{period},1,1,1,1,{inv},{back}" for sku, period, inv, back in rows]
    (folder / "psi.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def two(cli: Cli, lineage: dict[str, str], yard_path: Path) -> dict[str, Any]:
    """Two runs of two plans (horizon 52 and 26) with KPIs and PSI tables."""
    other = cli.ok(
        "plan",
        "create",
        "--scenario",
        lineage["scenario_id"],
        "--config",
        lineage["config_version_id"],
        "--param",
        "horizon=26",
    )
    ids = []
    for plan, kpis in (
        (lineage["plan_version_id"], {"fill_rate": 0.91, "stockouts": 4, "name": "a"}),
        (other["plan_version_id"], {"fill_rate": 0.97, "stockouts": 2, "name": "a"}),
    ):
        run = cli.ok("run", "start", "--plan", plan)
        cli.ok(
            "run", "finish", run["run_id"], "--status", "succeeded", "--summary", json.dumps(kpis)
        )
        ids.append(run["run_id"])
    _psi(
        _run_dir(yard_path, ids[0]),
        [("A", "w1", 10, 0), ("B", "w1", 5, 1), ("A", "w2", 8, 2), ("B", "w2", 4, 0)],
    )
    _psi(_run_dir(yard_path, ids[1]), [("A", "w1", 12, 0), ("A", "w2", 9, 3)])
    return {**lineage, "ids": ids, "other_plan": other["plan_version_id"]}


def test_compare_two_runs_with_psi_charts(yard_path, two):
    a, b = two["ids"]
    with ui_client(yard_path) as client:
        page = client.get("/ui/runs/compare", params={"ids": [a, b]})
        assert page.status_code == 200, page.text
        text = page.text
        assert f'href="/ui/runs/{a}"' in text and f'href="/ui/runs/{b}"' in text
        assert f'href="/ui/plans/{two["other_plan"]}"' in text
        assert f'<a href="/ui/scenarios/{two["scenario_id"]}">base</a>' in text
        # parameters: horizon differs and is highlighted
        assert re.search(r'<tr class="differs">\s*<th scope="row"><code>horizon</code>', text)
        assert "Same config" in text
        # KPIs: numbers formatted, differing rows highlighted, best/worst marked
        assert re.search(r'<tr class="differs">\s*<th scope="row"><code>fill_rate</code>', text)
        assert re.search(r'<tr>\s*<th scope="row"><code>name</code>', text)
        assert "▲ highest" in text and "▼ lowest" in text
        # charts: inventory and backlog over time, one line per run; a KPI bar chart
        figures = re.findall(r'<figure class="chart">(.*?)</figure>', text, re.S)
        assert len(figures) >= 3
        assert all("<figcaption>" in f and "<svg" in f for f in figures)
        inventory = next(f for f in figures if "Inventory per period" in f)
        assert inventory.count("<polyline") == 2
        backlog = next(f for f in figures if "Backlog per period" in f)
        assert backlog.count("<polyline") == 2
        # runs are named by their plan (here its scenario: no label) and a short id
        assert f'data-series="base · {a[-6:]}"' in inventory
        assert f'data-series="base · {b[-6:]}"' in inventory
        assert f"<title>{a}</title>" in inventory  # the full id on hover
        bars = [f for f in figures if 'class="bar"' in f]
        assert bars
        twin = json_twin(text)
        assert twin == f"/api/v1/runs/compare?ids={a}&ids={b}"
        assert [r["run_id"] for r in client.get(twin).json()["runs"]] == [a, b]


def test_compare_only_differences(yard_path, two):
    a, b = two["ids"]
    with ui_client(yard_path) as client:
        page = client.get("/ui/runs/compare", params={"ids": [a, b]})
        toggle = re.search(r'<a href="([^"]+)">Only differences</a>', page.text)
        assert toggle
        href = html.unescape(toggle.group(1))
        assert parse_qs(urlsplit(href).query) == {"ids": [a, b], "only_diff": ["1"]}
        only = client.get(href)
        assert only.status_code == 200
        assert "<code>horizon</code>" in only.text and "<code>name</code>" not in only.text
        assert "<code>fill_rate</code>" in only.text
        assert "Show all rows" in only.text


def test_compare_kpis_of_different_scales_share_one_normalised_chart(yard_path, cli, lineage):
    ids = []
    for kpis in ({"cost": 120000, "fill_rate": 0.9}, {"cost": 98000, "fill_rate": 0.95}):
        run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
        cli.ok(
            "run", "finish", run["run_id"], "--status", "succeeded", "--summary", json.dumps(kpis)
        )
        ids.append(run["run_id"])
    with ui_client(yard_path) as client:
        page = client.get("/ui/runs/compare", params={"ids": ids})
    assert page.status_code == 200
    figures = re.findall(r'<figure class="chart">(.*?)</figure>', page.text, re.S)
    assert len(figures) == 1  # no PSI: one bar chart of every KPI, each scaled to its largest
    assert figures[0].count('class="bar"') == 4 and "No PSI series" in page.text


COMPARE_REFUSALS = [
    ([], 422),
    (["{a}"], 422),
    (["{a}", "{a}"], 422),
    (["{a}", "nope"], 404),
    (["{a}", "a..b"], 422),
    (["{a}"] + [f"r{i}" for i in range(12)], 422),
]


def test_compare_refusals(yard_path, two):
    a = two["ids"][0]
    with ui_client(yard_path) as client:
        for ids, status in COMPARE_REFUSALS:
            page = client.get("/ui/runs/compare", params={"ids": [i.format(a=a) for i in ids]})
            assert page.status_code == status, ids
            assert "<html" in page.text and "Traceback" not in page.text


def test_compare_selected_from_the_history(yard_path, two):
    """The history's checkboxes submit to the compare page as repeated ``ids``."""
    with ui_client(yard_path) as client:
        text = client.get("/ui/runs").text
        form = re.search(r'<form method="get" action="/ui/runs/compare" id="compare-form"', text)
        assert form
        boxes = re.findall(r'name="ids" value="([^"]+)" form="compare-form"', text)
        assert sorted(boxes) == sorted(two["ids"])
        page = client.get("/ui/runs/compare", params={"ids": boxes})
        assert page.status_code == 200
