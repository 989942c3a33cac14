"""The overview (``/ui``) and its JSON twin (``/api/v1/overview``), on both engines: every
figure made through the CLI and the core (runs finished, archived, a failed and a running
job, a backup), every link, the twin equal to the page, an empty yard, a yard with no
recorded sizes, and the proof that a page view never walks the disk."""

from __future__ import annotations

import html
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

import runyard
from runyard import fsutil
from runyard.db.tables import runs as runs_table
from runyard.durability.backup import last_good_backup
from runyard.jobs import service as job_service
from runyard.models import JobStatus, RunLocation, RunStatus
from runyard.registry import jobs as job_registry
from runyard.registry import overview as overview_core
from runyard.registry.overview import overview
from tests.conftest import Cli
from tests.helpers.ui import json_twin, ui_client

KEEP_NOTHING = ("--keep-recent-minutes", "0", "--keep-last-runs", "0")
FIGURE_RE = re.compile(r'data-figure="([^"]+)"[^>]*>([^<]*)<')


@pytest.fixture
def client_of(yard_path: Path) -> Iterator[Any]:
    """``client_of()`` opens the test client once the data is made (settings such as
    RUNYARD_MAX_RUNS are read when the app starts)."""
    opened: list[Any] = []

    def make() -> TestClient:
        context = ui_client(yard_path)
        opened.append(context)
        return context.__enter__()

    yield make
    for context in opened:
        context.__exit__(None, None, None)


def figures(page: str) -> dict[str, str]:
    """The page's ``data-figure`` values, as shown (thousands separators removed)."""
    return {name: html.unescape(value).replace(",", "") for name, value in FIGURE_RE.findall(page)}


def text(page: str) -> str:
    """What a reader sees: tags removed, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def hrefs(page: str) -> set[str]:
    return {html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)}


def finish(cli: Cli, pv: str, group: str, status: str = "succeeded", payload: int = 0) -> str:
    run = cli.ok("run", "start", "--plan", pv, "--group", group)
    if payload:
        (Path(run["path"]) / "out.bin").write_bytes(b"x" * payload)
    cli.ok("run", "finish", run["run_id"], "--status", status)
    return str(run["run_id"])


@pytest.fixture
def yard_data(
    cli: Cli, lineage: dict[str, str], yard_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Runs in three groups (one archived), a failed run, a run still running (no size
    yet), a failed job, a running job, a verified backup."""
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    pv = lineage["plan_version_id"]
    labelled = cli.ok(
        "plan",
        "create",
        "--scenario",
        lineage["scenario_id"],
        "--config",
        lineage["config_version_id"],
        "--label",
        "Q3 baseline",
    )["plan_version_id"]
    made = {
        "big": [finish(cli, pv, "CH01/001", payload=1000 * (i + 1)) for i in range(3)],
        "old": [finish(cli, pv, "CH02/001", payload=500) for _ in range(2)],
        "failed": finish(cli, pv, "CH03/001", status="failed", payload=10),
    }
    made["running"] = cli.ok("run", "start", "--plan", pv, "--group", "CH03/001")["run_id"]
    cli.ok("archive", "--group", "CH02/001", "--run", "--yes", *KEEP_NOTHING)
    # A failed job: queued, then its scenario is locked before a worker takes it.
    failed_job = cli.ok("plan", "run", labelled)
    cli.ok("scenario", "lock", "base", "--reason", "freeze")
    assert cli.ok("worker", "--exit-when-idle")["finished"] == {"failed": 1}
    cli.ok("scenario", "unlock", "base")
    # A running job: queued, then claimed by a worker that is still at it.
    with runyard.open_yard(yard_path) as yard:
        queued = job_service.enqueue_planning(yard, labelled)
        with yard.write() as conn:
            postgres = yard.engine.dialect.name == "postgresql"
            running = job_registry.claim(conn, "test-worker", postgres, queued.job_id)
        assert running is not None and running.status == JobStatus.running
    backup = cli.ok("backup")
    assert backup["backup"]["verified"] is True
    every = cli.ok("run", "list", "--limit", "1000")["items"]
    return {
        **made,
        "pv": pv,
        "labelled": labelled,
        "failed_job": failed_job["job_id"],
        "running_job": running.job_id,
        "backup": backup["backup"],
        "runs": {r["run_id"]: r for r in every},
    }


# --------------------------------------------------------------------------- the page


def test_front_door_is_the_overview(client_of):
    client = client_of()
    for url in ("/ui", "/ui/"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "<h1>Overview</h1>" in page.text
        assert json_twin(page.text) == "/api/v1/overview"
        assert '<a href="/ui" class="active" aria-current="page">Overview</a>' in page.text
        assert '<link rel="stylesheet" href="/static/overview.css">' in page.text
    assert client.get("/static/overview.css").status_code == 200
    # Other pages carry the link too, not lit.
    assert '<a href="/ui">Overview</a>' in client.get("/ui/runs").text


def test_every_item_with_its_links(client_of, yard_data, monkeypatch):
    monkeypatch.setenv("RUNYARD_MAX_RUNS", "2")
    client = client_of()
    page = client.get("/ui")
    assert page.status_code == 200
    shown, links = figures(page.text), hrefs(page.text)
    runs = yard_data["runs"]

    # Runs by status and location, each linking to the runs list filtered that way.
    assert shown["runs"] == str(len(runs)) == "7"
    for status in RunStatus:
        expected = sum(1 for r in runs.values() if r["status"] == status.value)
        assert shown[f"status.{status.value}"] == str(expected)
        assert f"/ui/runs?status={status.value}" in links
    assert shown["status.succeeded"] == "5" and shown["status.failed"] == "1"
    assert shown["status.running"] == "1"
    for location in RunLocation:
        expected = sum(1 for r in runs.values() if r["location"] == location.value)
        assert shown[f"location.{location.value}"] == str(expected)
        assert f"/ui/runs?location={location.value}" in links
    assert shown["location.active"] == "5" and shown["location.archived"] == "2"
    filtered = client.get("/ui/runs?location=archived").text
    assert all(run_id in filtered for run_id in yard_data["old"])

    # Disk: the recorded sizes, summed per location; the running run has none yet.
    for location in ("active", "archived"):
        mine = [r for r in runs.values() if r["location"] == location]
        recorded = sum(r["size_bytes"] for r in mine if r["size_bytes"] is not None)
        assert recorded > 0
        assert shown[f"disk.{location}.runs"] == str(len(mine))
        assert f'data-figure="disk.{location}.bytes" data-bytes="{recorded}"' in page.text
    assert runs[yard_data["running"]]["size_bytes"] is None
    assert shown["disk.active.unmeasured"] == "1"
    assert "disk.archived.unmeasured" not in shown  # every archived run has its size
    assert "+ 1 run with no recorded size" in text(page.text)

    # Largest groups, by run count, with their links and bytes.
    groups = re.findall(r'href="/ui/runs\?group=([^"]+)"', page.text)
    assert [g.replace("%2F", "/") for g in groups] == ["CH01/001", "CH02/001", "CH03/001"]
    big = sum(runs[r]["size_bytes"] for r in yard_data["big"])
    assert f'data-bytes="{big}"' in page.text
    group_page = client.get("/ui/runs?group=CH01%2F001").text
    assert all(run_id in group_page for run_id in yard_data["big"])

    # Jobs: by label and scenario name, linking to their pages.
    running = re.search(rf'href="/ui/jobs/{yard_data["running_job"]}"[^>]*>([^<]+)<', page.text)
    failed = re.search(rf'href="/ui/jobs/{yard_data["failed_job"]}"[^>]*>([^<]+)<', page.text)
    assert running and html.unescape(running.group(1)) == "planning · Q3 baseline (base)"
    assert failed and html.unescape(failed.group(1)) == "planning · Q3 baseline (base)"
    assert "locked" in page.text  # the failed job's error
    assert shown["jobs.running"] == "1" and shown["jobs.failed"] == "1"
    assert {"/ui/jobs?status=running", "/ui/jobs?status=failed"} <= links
    assert client.get(f"/ui/jobs/{yard_data['failed_job']}").status_code == 200

    # The backup: minutes old, no warning.
    assert "backup-warning" not in page.text
    assert shown["backup.age"] in ("less than a minute", "1 min", "2 min")

    # Retention: 5 active, cap 2, so at most 3; the real dry run is named and linked.
    assert shown["retention.active"] == "5" and shown["retention.cap"] == "2"
    assert shown["retention.at_most"] == "3"
    assert "runyard retention" in page.text and "/ui/archives" in links

    # Runs per day: today holds every run; the chart is server-side SVG.
    today = datetime.now(UTC).date().isoformat()
    assert shown[f"day.{today}"] == "7"
    assert '<svg xmlns="http://www.w3.org/2000/svg" role="img"' in page.text
    assert page.text.count('class="bar"') == 30  # one bar per day, zeros drawn flat


def test_json_twin_equals_the_page(client_of, yard_data, monkeypatch):
    monkeypatch.setenv("RUNYARD_MAX_RUNS", "3")
    client = client_of()
    page = client.get("/ui")
    doc = client.get(json_twin(page.text)).json()
    shown = figures(page.text)
    assert shown["runs"] == str(doc["runs"])
    for item in doc["by_status"]:
        assert shown[f"status.{item['status']}"] == str(item["runs"])
    for item in doc["by_location"]:
        assert shown[f"location.{item['location']}"] == str(item["runs"])
    for day in doc["per_day"]:
        assert shown[f"day.{day['day']}"] == str(day["runs"])
    assert len(doc["per_day"]) == 30
    for use in doc["disk"]:
        where = use["location"]
        assert shown[f"disk.{where}.runs"] == str(use["runs"])
        assert f'data-figure="disk.{where}.bytes" data-bytes="{use["bytes"]}"' in page.text
        assert shown.get(f"disk.{where}.unmeasured", "0") == str(use["unmeasured_runs"])
    group_rows = re.findall(
        r'href="/ui/runs\?group=([^"]+)">[^<]*</a></td>\s*<td class="num" data-figure="group.runs">'
        r'(\d+)</td>\s*<td class="num"><span data-bytes="(\d+)"',
        page.text,
    )
    assert [(g.replace("%2F", "/"), int(n), int(b)) for g, n, b in group_rows] == [
        (g["group"], g["runs"], g["bytes"]) for g in doc["largest_groups"]
    ]
    assert [j["job_id"] for j in doc["jobs"]["running_jobs"]] == [yard_data["running_job"]]
    assert [j["job_id"] for j in doc["jobs"]["failed_jobs"]] == [yard_data["failed_job"]]
    assert re.findall(r'data-job="([^"]+)"', page.text) == [
        yard_data["running_job"],
        yard_data["failed_job"],
    ]
    assert shown["jobs.running"] == str(doc["jobs"]["running"])
    assert shown["jobs.queued"] == str(doc["jobs"]["queued"])
    assert shown["jobs.failed"] == str(doc["jobs"]["failed_recently"])
    job = doc["jobs"]["failed_jobs"][0]
    assert job["plan_label"] == "Q3 baseline" and job["scenario_name"] == "base"
    assert job["plan_version_id"] == yard_data["labelled"]
    assert doc["retention"] == {"cap": 3, "active": 5, "over_cap": 2, "would_archive_at_most": 2}
    assert shown["retention.at_most"] == "2"
    backup = doc["backup"]
    assert backup["stale"] is False and backup["path"] == yard_data["backup"]["path"]
    assert datetime.fromisoformat(backup["last_good_at"]) == datetime.fromisoformat(
        yard_data["backup"]["created_at"]
    )
    shown_time = re.search(r'<time datetime="([^"]+)">', page.text)
    assert shown_time and datetime.fromisoformat(shown_time.group(1)) == datetime.fromisoformat(
        backup["last_good_at"]
    )
    # The twin is described by the OpenAPI document.
    assert "/api/v1/overview" in client.get("/openapi.json").json()["paths"]


def test_a_page_view_never_walks_the_disk(client_of, yard_data, yard_path, monkeypatch):
    """Measuring a folder is ``fsutil.tree_bytes`` (``os.scandir``); listing one is
    ``os.scandir``/``os.listdir``/``os.walk``. Any of them on the runs root or the
    archive fails the request."""
    client = client_of()
    expected = client.get("/api/v1/overview").json()
    roots = tuple(use["root"] for use in expected["disk"])  # the runs root, the archive
    assert roots == (str(yard_path / "runs"), str(yard_path / "_archive"))
    touched: list[str] = []

    def guard(real: Any) -> Any:
        def guarded(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
            name = os.fspath(path) if not isinstance(path, int) else ""
            if any(name == root or name.startswith(root + os.sep) for root in roots):
                touched.append(name)
                raise AssertionError(f"a page view walked {name}")
            return real(path, *args, **kwargs)

        return guarded

    def no_measuring(path: Any) -> int | None:
        touched.append(os.fspath(path))
        raise AssertionError("a page view measured a folder")

    monkeypatch.setattr(fsutil, "tree_bytes", no_measuring)
    for name in ("scandir", "listdir", "walk"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    page = client.get("/ui")
    twin = client.get("/api/v1/overview")
    assert page.status_code == 200 and twin.status_code == 200
    assert touched == []
    doc = twin.json()
    assert doc["disk"] == expected["disk"] and doc["largest_groups"] == expected["largest_groups"]
    # The guard does fire when something does walk a root.
    with pytest.raises(AssertionError):
        os.listdir(yard_path / "runs")


# --------------------------------------------------------------------------- edge yards


def test_an_empty_yard(client_of):
    client = client_of()
    page = client.get("/ui")
    assert page.status_code == 200
    shown = figures(page.text)
    assert shown["runs"] == "0"
    assert all(shown[f"status.{s.value}"] == "0" for s in RunStatus)
    assert "No backup yet." in page.text and 'id="backup-warning"' in page.text
    assert "No job is running." in page.text and "No job failed." in page.text
    assert "No run belongs to a group yet." in page.text
    assert "No cap on active runs is set" in page.text
    assert page.text.count('class="bar"') == 30
    doc = client.get("/api/v1/overview").json()
    assert doc["runs"] == 0 and doc["largest_groups"] == []
    assert [d["runs"] for d in doc["per_day"]] == [0] * 30
    assert doc["per_day"][-1]["day"] == datetime.now(UTC).date().isoformat()
    assert [(d["location"], d["runs"], d["bytes"], d["unmeasured_runs"]) for d in doc["disk"]] == [
        ("active", 0, 0, 0),
        ("archived", 0, 0, 0),
    ]
    assert doc["backup"] == {
        "last_good_at": None,
        "age_seconds": None,
        "stale": True,
        "stale_after_days": 7,
        "path": None,
    }
    assert doc["jobs"]["running"] == doc["jobs"]["queued"] == doc["jobs"]["failed_recently"] == 0
    assert doc["retention"] == {"cap": None, "active": 0, "over_cap": 0, "would_archive_at_most": 0}


def test_a_yard_with_no_recorded_size(client_of, cli, lineage, yard_path):
    """Runs registered before sizes were recorded (a registry upgraded to migration 0005)
    and runs not finished yet: counted as unmeasured, never measured on a page view."""
    pv = lineage["plan_version_id"]
    for _ in range(3):
        finish(cli, pv, "CH01/001", payload=100)
    cli.ok("run", "start", "--plan", pv, "--group", "CH01/001")
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        conn.execute(update(runs_table).values(size_bytes=None))
    client = client_of()
    page = client.get("/ui")
    shown = figures(page.text)
    assert 'data-figure="disk.active.bytes" data-bytes="0"' in page.text
    assert shown["disk.active.bytes"] == "0 B"
    assert shown["disk.active.unmeasured"] == "4"
    assert "0 B + 4 runs with no recorded size" in text(page.text)
    assert "0 B + 4 unmeasured" in text(page.text)  # the group's row
    doc = client.get("/api/v1/overview").json()
    assert doc["disk"][0] == {
        "location": "active",
        "root": str(yard_path / "runs"),
        "runs": 4,
        "bytes": 0,
        "unmeasured_runs": 4,
    }
    assert doc["largest_groups"] == [
        {"group": "CH01/001", "runs": 4, "bytes": 0, "unmeasured_runs": 4}
    ]


def test_runs_per_day_are_utc_days_zero_filled_with_links(client_of, lineage, yard_path):
    now = datetime.now(UTC)
    today = now.date()
    three_days_ago = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=3)
    records = [
        {"plan_version_id": lineage["plan_version_id"], "started_at": when, "finished_at": when}
        for when in (
            three_days_ago + timedelta(hours=1),
            three_days_ago + timedelta(hours=23, minutes=59),
            three_days_ago - timedelta(seconds=1),  # the day before
            now - timedelta(days=40),  # out of the window
            now - timedelta(days=29, hours=0),  # inside: the window's first days
        )
    ]
    with runyard.open_yard(yard_path) as yard:
        made = yard.record_runs(records)
    client = client_of()
    doc = client.get("/api/v1/overview").json()
    days = {d["day"]: d["runs"] for d in doc["per_day"]}
    assert list(days) == [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
    assert days[three_days_ago.date().isoformat()] == 2
    assert days[(three_days_ago.date() - timedelta(days=1)).isoformat()] == 1
    assert sum(days.values()) == 4  # the 40-day-old run is outside the window
    page = client.get("/ui").text
    day = three_days_ago.date()
    link = (
        f"/ui/runs?started_after={day.isoformat()}T00%3A00%3A00"
        f"&started_before={(day + timedelta(days=1)).isoformat()}T00%3A00%3A00"
    )
    assert link in hrefs(page)
    listed = client.get(link).text
    assert made[0].run_id in listed and made[1].run_id in listed
    assert made[2].run_id not in listed


# --------------------------------------------------------------------------- backups


def test_backup_age_warns_when_old_and_ignores_unverified_copies(yard_data, yard_path):
    with runyard.open_yard(yard_path) as yard:
        taken = datetime.fromisoformat(yard_data["backup"]["created_at"])
        assert last_good_backup(yard.settings) == taken
        # A newer file that never got its record (a killed backup) is not a good backup.
        later = (taken + timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ")
        suffix = Path(yard_data["backup"]["path"]).suffix
        (yard_path / "backups" / f"registry-{later}{suffix}").write_bytes(b"half a copy")
        fresh = overview(yard)
        assert fresh.backup.last_good_at == taken == last_good_backup(yard.settings)
        assert fresh.backup.stale is False and fresh.backup.path == yard_data["backup"]["path"]
        old = overview(yard, now=taken + timedelta(days=8))
        assert old.backup.stale is True and old.backup.age_seconds == pytest.approx(8 * 86400)
        edge = overview(yard, now=taken + timedelta(days=7))
        assert edge.backup.stale is False


def test_page_warns_about_an_old_backup(client_of, cli, yard_path):
    record = cli.ok("backup")
    sidecar = Path(record["sidecar"])
    doc = json.loads(sidecar.read_text())
    doc["created_at"] = (datetime.now(UTC) - timedelta(days=9, hours=2)).isoformat()
    sidecar.write_text(json.dumps(doc))
    page = client_of().get("/ui").text
    assert 'id="backup-warning"' in page
    assert "The last good backup is 9 days 2 h old" in page
    # A record that says it failed verification is no good backup at all.
    doc["verified"] = False
    sidecar.write_text(json.dumps(doc))
    assert "No backup yet." in client_of().get("/ui").text


# --------------------------------------------------------------------------- speed


@pytest.mark.parametrize("backend", ["sqlite"])
def test_per_day_counts_are_an_index_range(yard_path):
    """At a million runs, runs per day must read the last 30 days of ix_runs_started,
    not the table (SQLite's plan; PostgreSQL's is in docs/web.md)."""
    statements: list[tuple[str, Any]] = []
    with runyard.open_yard(yard_path) as yard:
        from sqlalchemy import event

        def listen(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            statements.append((statement, params))

        event.listen(yard.engine, "before_cursor_execute", listen)
        overview(yard)
        event.remove(yard.engine, "before_cursor_execute", listen)
        per_day = [s for s in statements if "date(runs.started_at)" in s[0]]
        assert len(per_day) == 1
        db = sqlite3.connect(yard_path / "registry.db")
        plan = [r[-1] for r in db.execute("EXPLAIN QUERY PLAN " + per_day[0][0], per_day[0][1])]
        db.close()
    assert any(
        "USING COVERING INDEX ix_runs_started (started_at>? AND started_at<?)" in p for p in plan
    ), plan
    assert not any(p.startswith("SCAN") for p in plan), plan


def test_newest_good_backup_reads_one_record(yard_path, cli, monkeypatch):
    """Newest first, stopping at the first verified one: older records are not read."""
    first = cli.ok("backup")
    second = cli.ok("backup")
    read: list[str] = []
    real = overview_core.backups._entry

    def counting(path: Path, match: Any) -> Any:
        read.append(path.name)
        return real(path, match)

    monkeypatch.setattr(overview_core.backups, "_entry", counting)
    with runyard.open_yard(yard_path) as yard:
        entry = overview_core.newest_good_backup(yard.settings)
    assert entry is not None and entry.path == second["backup"]["path"]
    assert read == [Path(second["backup"]["path"]).name]
    assert first["backup"]["path"] != second["backup"]["path"]


def test_names_that_are_not_utf8_never_fail_the_page(client_of, yard_data, monkeypatch):
    """A group or a job error read from the disk may hold a lone surrogate (a name that
    is not UTF-8): shown in display form, never a 500."""
    real_groups, real_jobs = overview_core.largest_groups, overview_core._jobs

    def odd_groups(conn: Any, limit: int = 10) -> Any:
        groups = real_groups(conn, limit)
        return [groups[0].model_copy(update={"group": "CH\udcff/001"}), *groups[1:]]

    def odd_jobs(conn: Any, now: datetime) -> Any:
        figures = real_jobs(conn, now)
        failed = [j.model_copy(update={"error": "died: \udcfe"}) for j in figures.failed_jobs]
        return figures.model_copy(update={"failed_jobs": failed})

    monkeypatch.setattr(overview_core, "largest_groups", odd_groups)
    monkeypatch.setattr(overview_core, "_jobs", odd_jobs)
    client = client_of()
    page = client.get("/ui")
    assert page.status_code == 200
    assert "CH\\xff/001" in page.text and "died: \\xfe" in page.text
    assert "/ui/runs?group=CH%5Cxff%2F001" in page.text
    doc = client.get("/api/v1/overview")
    assert doc.status_code == 200
    assert doc.json()["largest_groups"][0]["group"] == "CH\\xff/001"
