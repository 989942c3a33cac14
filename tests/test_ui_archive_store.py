"""The archives pages and a run's page for a batch that lives in an object store
(issue 16): where each batch is, each run's object, its tar size and checksum, and no
page that reads a folder such a run does not have.

The store batch is written by hand (its report, the registry's locations), as an
archive to a store leaves them: rendering needs no S3 server.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import runyard
from runyard.config import CONFIG_FILENAME
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    ArchiveEntry,
    ArchiveReport,
    ArchiveSummary,
    write_report,
)
from runyard.registry.lifecycle import set_locations
from runyard.statuses import RunLocation
from runyard.web.ui.archive_places import short_sha
from tests.conftest import Cli
from tests.helpers.ui import json_twin, ui_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

STORE = "s3://cold-runs/yard"
BATCH = "20260301T120000Z"
MIB = 1024 * 1024


@pytest.fixture
def client(made: dict[str, Any], yard_path: Path) -> Iterator[TestClient]:
    # After ``made``: the app reads runyard.toml (with its store) when it starts.
    with ui_client(yard_path) as test_client:
        yield test_client


def _object_key(run_id: str) -> str:
    return f"yard/{BATCH}/{run_id}.tar"


@pytest.fixture
def made(cli: Cli, lineage: dict[str, str], yard_path: Path) -> dict[str, Any]:
    """Three finished runs: ``local`` archived into the archive root (a real archive),
    ``a`` and ``b`` archived by hand into the store batch BATCH; then the yard's
    ``[archive] store`` is set, as a yard that moved to object storage has it."""
    ids: dict[str, str] = {}
    for name in ("local", "a", "b"):
        run = cli.ok("run", "start", "--plan", lineage["plan_version_id"], "--run-id", f"r-{name}")
        cli.ok("run", "finish", run["run_id"], "--status", "succeeded")
        ids[name] = run["run_id"]
    (yard_path / "runs" / ids["a"] / "out.csv").write_text("period,demand\n1,10\n")
    archived = cli.ok(
        "archive",
        "--run-id",
        ids["local"],
        "--keep-recent-minutes",
        "0",
        "--keep-last-runs",
        "0",
        "--run",
        "--yes",
    )
    local_batch = archived["batch_id"]
    with open(yard_path / CONFIG_FILENAME, "a") as toml:
        toml.write(f'\n[archive]\nstore = "{STORE}"\nendpoint_url = "http://127.0.0.1:9"\n')
    now = datetime.now(UTC)
    entries = []
    for name, size in (("a", MIB), ("b", 3 * MIB // 2)):
        run_id = ids[name]
        shutil.rmtree(yard_path / "runs" / run_id)  # a store run has no folder left
        entries.append(
            ArchiveEntry(
                run_id=run_id,
                src=f"runs/{run_id}",
                dst=f"s3://cold-runs/{_object_key(run_id)}",
                status="moved",
                method="store",
                bytes=size - 10_240,
                files=2,
                object_key=_object_key(run_id),
                tar_bytes=size,
                tar_sha256=hashlib.sha256(run_id.encode()).hexdigest(),
            )
        )
    with runyard.open_yard(yard_path) as yard:
        report = ArchiveReport(
            yard_id=yard.settings.yard_id,
            batch_id=BATCH,
            status="complete",
            command=["runyard", "archive", "--all", "--run"],
            created_at=now,
            updated_at=now,
            finished_at=now,
            entries=entries,
            summary=ArchiveSummary(
                candidates=2, to_archive=2, moved=2, bytes_moved=sum(e.bytes for e in entries)
            ),
            store=STORE,
        )
        write_report(yard.settings.archive_root / BATCH / ARCHIVE_REPORT_NAME, report)
        with yard.write() as conn:
            set_locations(conn, [(e.run_id, RunLocation.archived, BATCH) for e in entries])
    return {**ids, "local_batch": local_batch, "entries": {e.run_id: e for e in entries}}


def _row(page: str, batch_id: str) -> str:
    found = re.search(
        rf'<tr>\s*<td><a class="id" href="/ui/archives/{batch_id}">.*?</tr>', page, re.S
    )
    assert found, f"no row for batch {batch_id}"
    return found.group(0)


def _cells(row: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


def test_archives_list_says_where_each_batch_lives(client, made):
    page = client.get("/ui/archives")
    assert page.status_code == 200, page.text
    intro = page.text.split('id="archive-place"', 1)[1].split("</p>", 1)[0]
    assert f"object store <code>{STORE}</code>" in intro
    assert "<th>Where</th>" in page.text
    store_row = _cells(_row(page.text, BATCH))
    assert store_row[2] == STORE
    assert store_row[-1] == "2"  # both of its runs are still in the store
    local_row = _cells(_row(page.text, made["local_batch"]))
    assert local_row[2] == "archive root"
    assert local_row[-1] == "1"


def test_a_store_batch_page_shows_objects_and_offers_restore(client, made):
    page = client.get(f"/ui/archives/{BATCH}")
    assert page.status_code == 200, page.text
    where = page.text.split('id="batch-place">', 1)[1].split("</dd>", 1)[0]
    assert f"object store <code>{STORE}</code>" in where
    assert '<th>Object</th><th class="num">Tar size</th><th>SHA-256</th>' in page.text
    entry = made["entries"][made["a"]]
    assert f"<code>{entry.object_key}</code>" in page.text
    assert "1.0 MiB" in page.text and "1.5 MiB" in page.text
    assert f'<code title="{entry.tar_sha256}">{short_sha(entry.tar_sha256)}</code>' in page.text
    # Its runs have no folder, and are still restorable: the registry has them here.
    assert "nothing to restore" not in page.text
    assert 'action="/ui/archives/' + BATCH + '/restore/preview"' in page.text
    for run_id in (made["a"], made["b"]):
        assert f'name="run_ids" value="{run_id}"' in page.text
    assert "SHA-256 checked" in page.text
    twin = json_twin(page.text)
    assert twin == f"/api/v1/archives/{BATCH}"
    assert client.get(twin).json()["report"]["store"] == STORE


def test_a_local_batch_page_still_says_archive_root(client, made):
    page = client.get(f"/ui/archives/{made['local_batch']}")
    assert page.status_code == 200, page.text
    where = page.text.split('id="batch-place">', 1)[1].split("</dd>", 1)[0]
    assert where.startswith("archive root <code>_archive/")
    assert "<th>Object</th>" not in page.text
    assert f'name="run_ids" value="{made["local"]}"' in page.text


def test_a_run_restored_from_the_store_is_no_longer_offered(client, made, yard_path):
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        set_locations(conn, [(made["a"], RunLocation.active, None)])
    page = client.get(f"/ui/archives/{BATCH}")
    assert f'name="run_ids" value="{made["a"]}"' not in page.text
    assert f'name="run_ids" value="{made["b"]}"' in page.text
    assert _cells(_row(client.get("/ui/archives").text, BATCH))[-1] == "1"


def test_a_run_in_the_store_shows_its_object_not_a_folder(client, made):
    run_id = made["a"]
    entry = made["entries"][run_id]
    page = client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200, page.text
    location = page.text.split('id="run-location">', 1)[1].split("</dd>", 1)[0]
    assert f'href="/ui/archives/{BATCH}"' in location
    assert f"in the object store <code>{STORE}</code>" in location
    assert f'id="run-object"><code>{entry.dst}</code>' in page.text
    assert "<dt>Tar size</dt><dd>1.0 MiB</dd>" in page.text
    assert f'<code title="{entry.tar_sha256}">{entry.tar_sha256[:12]}</code>' in page.text
    assert "<dt>Folder</dt>" not in page.text  # no folder to name
    assert 'id="artifacts-in-store"' in page.text
    assert "restore the run to read it" in page.text
    # Restore is offered, and says how it goes.
    assert f'action="/ui/runs/{run_id}/restore/preview"' in page.text
    assert "checks its SHA-256" in page.text


def test_a_run_in_the_archive_root_and_an_active_run_are_unchanged(client, made, yard_path):
    local = client.get(f"/ui/runs/{made['local']}").text
    location = local.split('id="run-location">', 1)[1].split("</dd>", 1)[0]
    assert location.endswith(", in the archive root")
    assert "<dt>Folder</dt>" in local and 'id="run-object"' not in local
    # An active run of this yard would go to the store: its archive form says so.
    run_id = "r-fresh"
    (yard_path / "runs").mkdir(exist_ok=True)
    cli = Cli(yard_path)
    plan = cli.ok("plan", "list")["items"][0]["plan_version_id"]
    cli.ok("run", "start", "--plan", plan, "--run-id", run_id)
    active = client.get(f"/ui/runs/{run_id}").text
    assert f"Uploads the folder to the object store <code>{STORE}</code>" in active
    assert "<dt>Folder</dt>" in active
