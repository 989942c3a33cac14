"""The archives pages (``/ui/archives``): batches, archive preview then archive, a batch's
report, restore preview then restore of chosen runs, the execution log, and every
tampered or refused post changing nothing on disk or in the registry."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Cli, registry_snapshot, tree_snapshot
from tests.helpers.ui import csrf_token, json_twin, post_form, ui_client

# The UI is engine-agnostic: its pages run on SQLite here; the API tests
# (test_web_api.py, test_web_actions.py) and the registry's own tests cover PostgreSQL.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


# Guards that would keep every fresh run: off, so that these runs can move.
NO_GUARDS = {"keep_recent_minutes": "0", "keep_last_runs": "0"}
EVERYTHING = {"all": "1", **NO_GUARDS, "reason": "tidy up"}


@pytest.fixture
def client(yard_path: Path) -> Iterator[TestClient]:
    with ui_client(yard_path) as test_client:
        yield test_client


@pytest.fixture
def made(cli: Cli, lineage: dict[str, str], yard_path: Path, tmp_path: Path) -> dict[str, Any]:
    """Four finished runs: two in group CH01/001 (one with symlinks), one with no group,
    one pinned."""
    outside = tmp_path / "project"
    outside.mkdir()
    ids: dict[str, str] = {}
    for name, group in (("a", "CH01/001"), ("b", "CH01/001"), ("c", None), ("p", None)):
        args = ["run", "start", "--plan", lineage["plan_version_id"], "--run-id", f"run-{name}"]
        if group:
            args += ["--group", group]
        run = cli.ok(*args)
        cli.ok("run", "finish", run["run_id"], "--status", "succeeded")
        ids[name] = run["run_id"]
    runs_root = yard_path / "runs"
    (runs_root / ids["a"] / "out.txt").write_text("a's output")
    os.symlink(outside, runs_root / ids["a"] / "project")
    os.symlink("../nowhere", runs_root / ids["a"] / "dangling")
    cli.ok("run", "pin", ids["p"])
    archive_root = yard_path / "_archive"
    return {
        **lineage,
        **ids,
        "runs_root": runs_root,
        "archive_root": archive_root,
        "outside": outside,
    }


def _location(client: TestClient, run_id: str) -> str:
    doc = client.get(f"/api/v1/runs/{run_id}").json()
    return str(doc["location"])


def _files(made: dict[str, Any]) -> dict[str, bytes]:
    return {
        **{f"runs/{k}": v for k, v in tree_snapshot(made["runs_root"]).items()},
        **{f"archive/{k}": v for k, v in _archive_files(made).items()},
    }


def _archive_files(made: dict[str, Any]) -> dict[str, bytes]:
    root = made["archive_root"]
    return tree_snapshot(root) if root.exists() else {}


def _archive(client: TestClient, data: dict[str, str] | None = None) -> str:
    response = post_form(client, "/ui/archives/run", data or EVERYTHING)
    assert response.status_code == 303, response.text
    found = re.match(r"/ui/archives/(\d{8}T\d{6}Z(?:-\d+)?)\?msg=", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def test_empty_archives_page(client):
    page = client.get("/ui/archives")
    assert page.status_code == 200
    assert "No archive batches yet" in page.text
    assert 'action="/ui/archives/preview"' in page.text
    assert 'href="/ui/archives/log"' in page.text
    twin = json_twin(page.text)
    assert twin == "/api/v1/archives"
    assert client.get(twin).status_code == 200


def test_preview_lists_every_candidate_and_changes_nothing(client, made, yard_path):
    before_files, before_rows = _files(made), registry_snapshot(yard_path)
    page = post_form(client, "/ui/archives/preview", EVERYTHING)
    assert page.status_code == 200, page.text
    assert 'id="archive-preview"' in page.text
    rows = dict(
        re.findall(
            r'<tr>\s*<td><a class="id" href="/ui/runs/([^"]+)".*?status-(\w+)"', page.text, re.S
        )
    )
    assert rows == {
        made["a"]: "archive",
        made["b"]: "archive",
        made["c"]: "archive",
        made["p"]: "skip",
    }
    assert "pinned" in page.text  # the pinned run's reason
    assert "Archive 3 runs now" in page.text
    # The confirm form carries the same fields.
    confirm = page.text.split('action="/ui/archives/run"', 1)[1].split("</form>", 1)[0]
    for name, value in EVERYTHING.items():
        assert f'name="{name}" value="{value}"' in confirm
    assert "dry-run report" in page.text
    assert _files(made) == before_files
    assert registry_snapshot(yard_path) == before_rows
    assert {_location(client, made[k]) for k in "abcp"} == {"active"}


def test_preview_shows_every_guard_reason(client, made):
    page = post_form(
        client, "/ui/archives/preview", {"groups": "CH01/001", "keep_recent_minutes": "0"}
    )
    assert page.status_code == 200
    # The yard's keep_last_runs (2) keeps both runs of the group: nothing to archive.
    assert page.text.count("keep_last_runs") >= 2
    assert "Nothing to archive" in page.text and "/ui/archives/run" not in page.text
    recent = post_form(client, "/ui/archives/preview", {"groups": "CH01/001"})
    assert "recent_change" in recent.text and "keep_last_runs" in recent.text


def test_archive_then_restore_one_chosen_run(client, made, yard_path):
    response = post_form(client, "/ui/archives/run", EVERYTHING)
    assert response.status_code == 303
    location = response.headers["location"]
    batch = re.match(r"/ui/archives/([^?]+)\?msg=", location).group(1)
    landing = client.get(location)
    assert landing.status_code == 200
    assert "Archived 3 runs" in landing.text and batch in landing.text
    for key in "abc":
        assert not (made["runs_root"] / made[key]).exists()
        assert _location(client, made[key]) == "archived"
    assert (made["runs_root"] / made["p"]).is_dir()  # pinned: kept

    index = client.get("/ui/archives")
    assert f'href="/ui/archives/{batch}"' in index.text and "tidy up" in index.text

    page = client.get(f"/ui/archives/{batch}")
    assert page.status_code == 200
    assert json_twin(page.text) == f"/api/v1/archives/{batch}"
    assert client.get(json_twin(page.text)).status_code == 200
    for key in "abc":
        assert f'href="/ui/runs/{made[key]}"' in page.text
        assert f'name="run_ids" value="{made[key]}"' in page.text
    assert "2 links" in page.text and "1 broken" in page.text  # run a's symlinks
    assert "pinned" in page.text  # the skip and its reason

    before_files, before_rows = _files(made), registry_snapshot(yard_path)
    preview = post_form(client, f"/ui/archives/{batch}/restore/preview", {"run_ids": made["a"]})
    assert preview.status_code == 200, preview.text
    assert "Restore preview" in preview.text and "status-restore" in preview.text
    assert "1 to restore, 0 conflicts" in preview.text
    confirm = preview.text.split(f'action="/ui/archives/{batch}/restore"', 1)[1]
    assert f'name="run_ids" value="{made["a"]}"' in confirm.split("</form>", 1)[0]
    assert _files(made) == before_files and registry_snapshot(yard_path) == before_rows

    done = post_form(client, f"/ui/archives/{batch}/restore", {"run_ids": made["a"]})
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/ui/archives/{batch}?msg=")
    shown = client.get(done.headers["location"])
    assert "restored 1 run, 0 conflicts" in shown.text
    assert (made["runs_root"] / made["a"] / "out.txt").read_text() == "a's output"
    assert os.readlink(made["runs_root"] / made["a"] / "project") == str(made["outside"])
    assert _location(client, made["a"]) == "active"
    assert _location(client, made["b"]) == "archived"
    assert not (made["runs_root"] / made["b"]).exists()
    # The restore is listed on the batch page; run a is no longer offered.
    assert "Restores from this batch" in shown.text and "status-restored" in shown.text
    assert f'name="run_ids" value="{made["a"]}"' not in shown.text
    assert f'name="run_ids" value="{made["b"]}"' in shown.text

    log = client.get("/ui/archives/log")
    assert log.status_code == 200
    assert log.text.count(f'href="/ui/archives/{batch}"') == 2  # the archive and the restore
    assert "&#39;POST /ui/archives/run&#39; --all" in log.text and "tidy up" in log.text
    assert f"/ui/archives/{batch}/restore&#39; --only-run-id {made['a']}" in log.text
    assert json_twin(log.text) == "/api/v1/executions"
    assert client.get(json_twin(log.text)).status_code == 200


def test_restore_all_never_overwrites(client, made):
    batch = _archive(client)
    taken = made["runs_root"] / made["b"]
    taken.mkdir()
    (taken / "mine.txt").write_text("someone else's")
    preview = post_form(client, f"/ui/archives/{batch}/restore/preview", {"all_runs": "1"})
    assert preview.status_code == 200
    assert "2 to restore, 1 conflicts" in preview.text and "status-conflict" in preview.text
    assert "never overwritten" in preview.text
    done = post_form(client, f"/ui/archives/{batch}/restore", {"all_runs": "1"})
    assert done.status_code == 303
    assert "restored 2 runs, 1 conflict" in client.get(done.headers["location"]).text
    assert (taken / "mine.txt").read_text() == "someone else's"
    assert _location(client, made["b"]) == "archived"
    assert {_location(client, made[k]) for k in "ac"} == {"active"}


def test_nothing_eligible_archives_nothing(client, made):
    # The yard's own guards keep both runs of the group (recent, and the last 2).
    response = post_form(client, "/ui/archives/run", {"groups": "CH01/001"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/archives?msg=")
    assert "Nothing was archived" in client.get(response.headers["location"]).text
    assert not made["archive_root"].exists() or not any(made["archive_root"].iterdir())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"all": "1", "groups": "CH01/001"}, "exactly one of"),
        ({}, "exactly one of"),
        ({"groups": "CH01/001", "unscoped_only": "1"}, "cannot be combined"),
        ({"all": "1", "keep_last_runs": "two"}, "whole number"),
        ({"all": "1", "keep_last_runs": "-1"}, "negative"),
        ({"all": "1", "older_than_days": "soon"}, "must be a number"),
        ({"all": "1", "older_than_days": "-3"}, "older-than"),
        ({"all": "1", "legacy": "1"}, "legacy_patterns"),
    ],
)
@pytest.mark.parametrize("url", ["/ui/archives/preview", "/ui/archives/run"])
def test_bad_archive_fields_rerender_the_form(client, made, yard_path, data, message, url):
    before_files, before_rows = _files(made), registry_snapshot(yard_path)
    page = post_form(client, url, data)
    assert page.status_code == 422
    assert 'class="banner banner-error"' in page.text and message in page.text
    assert 'action="/ui/archives/preview"' in page.text  # the form, with what was typed
    if data.get("groups"):
        assert 'value="CH01/001"' in page.text
    assert _files(made) == before_files and registry_snapshot(yard_path) == before_rows


def test_unknown_and_invalid_batches(client, made, yard_path):
    assert client.get("/ui/archives/x").status_code == 422
    assert client.get("/ui/archives/20200101T000000Z-0").status_code == 422
    assert client.get("/ui/archives/%2E%2E").status_code == 422  # ".." reaches the route
    unknown = client.get("/ui/archives/20200101T000000Z")
    assert unknown.status_code == 404 and "<html" in unknown.text
    batch = _archive(client)
    before_files, before_rows = _files(made), registry_snapshot(yard_path)
    for url in ("/ui/archives/{}/restore/preview", "/ui/archives/{}/restore"):
        assert post_form(client, url.format("x"), {"all_runs": "1"}).status_code == 422
        assert post_form(client, url.format("..%2F.."), {"all_runs": "1"}).status_code in (
            404,
            422,
        )
        missing = post_form(client, url.format("20200101T000000Z"), {"all_runs": "1"})
        assert missing.status_code == 404
        for run_ids, text in (
            ([f"../{made['a']}"], "invalid run id"),
            (["a/b"], "invalid run id"),
            (["..", made["a"]], "invalid run id"),
            (["run-nope"], "not in this report"),
        ):
            refused = post_form(client, url.format(batch), {"run_ids": run_ids})
            assert refused.status_code == 422, refused.text
            assert text in refused.text.lower() and "Nothing was moved" in refused.text
        nothing = post_form(client, url.format(batch), {})
        assert nothing.status_code == 422 and "choose the runs" in nothing.text
    assert _files(made) == before_files and registry_snapshot(yard_path) == before_rows


def _all_posts(batch: str, made: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/ui/archives/preview", EVERYTHING),
        ("/ui/archives/run", EVERYTHING),
        (f"/ui/archives/{batch}/restore/preview", {"all_runs": "1"}),
        (f"/ui/archives/{batch}/restore", {"run_ids": made["a"]}),
    ]


def test_posts_without_csrf_or_from_another_site_change_nothing(client, made, yard_path):
    batch = _archive(client, {"groups": "CH01/001", **NO_GUARDS})
    token = csrf_token(client)
    before_files, before_rows = _files(made), registry_snapshot(yard_path)
    logs_before = tree_snapshot(yard_path / "logs")
    for url, data in _all_posts(batch, made):
        missing = client.post(url, data=data)
        assert missing.status_code == 403, url
        assert "CSRF" in missing.text
        wrong = client.post(url, data={**data, "csrf_token": "f" * 64})
        assert wrong.status_code == 403, url
        foreign = client.post(
            url, data={**data, "csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403, url
        assert "refused" in foreign.text
    assert _files(made) == before_files and registry_snapshot(yard_path) == before_rows
    assert tree_snapshot(yard_path / "logs") == logs_before  # not even a dry-run report


def test_with_a_token_posts_need_a_login(yard_path, made, monkeypatch):
    with ui_client(yard_path) as client:
        batch = _archive(client, {"groups": "CH01/001", **NO_GUARDS})
    monkeypatch.setenv("RUNYARD_TOKEN", "s3cret-token")
    with ui_client(yard_path) as client:
        before_files, before_rows = _files(made), registry_snapshot(yard_path)
        for url, data in _all_posts(batch, made):
            response = post_form(client, url, data)
            assert response.status_code == 303, url
            assert response.headers["location"].startswith("/ui/login")
        assert _files(made) == before_files and registry_snapshot(yard_path) == before_rows
        login = post_form(client, "/ui/login", {"token": "s3cret-token", "next": "/ui/archives"})
        assert login.status_code == 303
        done = post_form(client, f"/ui/archives/{batch}/restore", {"run_ids": made["a"]})
        assert done.status_code == 303 and "msg=" in done.headers["location"]
        assert _location(client, made["a"]) == "active"


def test_execution_log_pages(client, made, monkeypatch):
    assert "Nothing executed yet" in client.get("/ui/archives/log").text
    batch = _archive(client)
    post_form(client, f"/ui/archives/{batch}/restore", {"run_ids": made["a"]})
    post_form(client, f"/ui/archives/{batch}/restore", {"run_ids": made["b"]})
    monkeypatch.setattr("runyard.web.ui.archives.LOG_PAGE_SIZE", 2)
    first = client.get("/ui/archives/log")
    assert first.text.count("<tr>") == 1 + 2  # the header and two executions
    found = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert found
    second = client.get("/ui/archives/log" + found.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and second.text.count("<tr>") == 1 + 1
    assert ">archive<" in second.text  # oldest last
    assert client.get("/ui/archives/log?after=garbage").status_code == 422


def test_a_group_with_no_active_run_is_said_and_nothing_moves(client, made):
    before = _files(made)
    for url in ("/ui/archives/preview", "/ui/archives/run"):
        page = post_form(client, url, {"groups": "CH09/999", **NO_GUARDS})
        assert page.status_code == 404, url
        assert "CH09/999" in page.text and "Nothing was archived" in page.text
        assert 'value="CH09/999"' in page.text  # the form again, as typed
    assert _files(made) == before
