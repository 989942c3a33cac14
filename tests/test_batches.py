"""runyard.lifecycle.batches: the archive root's batches and each run's lifecycle history."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runyard.config import load_settings
from runyard.errors import Invalid, NotFound
from runyard.lifecycle.batches import (
    get_batch,
    list_batches,
    run_history,
    validate_batch_id,
)
from tests.conftest import Cli

ARCHIVE_ALL = (
    "archive",
    "--all",
    "--run",
    "--yes",
    "--keep-recent-minutes",
    "0",
    "--keep-last-runs",
    "0",
)


def _finished(cli: Cli, plan: str, run_id: str) -> None:
    cli.ok("run", "start", "--plan", plan, "--run-id", run_id)
    cli.ok("run", "finish", run_id, "--status", "succeeded")


@pytest.fixture
def story(cli: Cli, lineage: dict[str, str], yard_path: Path) -> dict[str, str]:
    """Batch 1 archives r1-r3, r1 is restored; batch 2 archives r1 again and r4; purge."""
    plan = lineage["plan_version_id"]
    for run_id in ("r1", "r2", "r3"):
        _finished(cli, plan, run_id)
    first = cli.ok(*ARCHIVE_ALL, "--reason", "monthly")
    cli.ok("restore", "--report", first["report_path"], "--only-run-id", "r1", "--run")
    _finished(cli, plan, "r4")
    second = cli.ok(*ARCHIVE_ALL)
    return {"first": first["batch_id"], "second": second["batch_id"]}


def test_list_detail_and_history(yard_path, cli, story):
    settings = load_settings(yard_path)
    batches = list_batches(settings)
    assert [b.batch_id for b in batches] == [story["second"], story["first"]]
    second, first = batches
    assert first.status == "complete" and first.reason == "monthly"
    assert (first.moved, first.failed, first.restores, first.runs_present) == (3, 0, 1, 2)
    assert first.bytes_moved > 0 and first.created_at is not None
    assert first.report_path == f"_archive/{story['first']}/archive_report.json"
    assert (second.moved, second.restores, second.runs_present) == (2, 0, 2)

    detail = get_batch(settings, story["first"])
    assert detail.summary == first
    assert sorted(e.run_id for e in detail.report.entries) == ["r1", "r2", "r3"]
    assert [r.restored for r in detail.restores] == [1] and detail.problems == []

    history = run_history(settings, "r1")
    assert [(e.kind, e.batch_id, e.status) for e in history] == [
        ("archived", story["first"], "moved"),
        ("restored", story["first"], "restored"),
        ("archived", story["second"], "moved"),
    ]
    assert history[1].report_path.startswith(f"_archive/{story['first']}/restore_report_")
    assert run_history(settings, "r4")[0].batch_id == story["second"]
    assert run_history(settings, "never") == []

    cli.ok("purge", "--older-than", "0", "--run", "--yes")
    purged = run_history(settings, "r1")
    assert [(e.kind, e.batch_id, e.status) for e in purged][-1] == (
        "purged",
        story["second"],
        "deleted",
    )
    assert purged[-1].report_path.startswith("logs/purge_report_")
    assert [e.kind for e in run_history(settings, "r2")] == ["archived", "purged"]
    assert [b.runs_present for b in list_batches(settings)] == [0, 0]


def test_restores_listed_newest_first(yard_path, cli, story):
    settings = load_settings(yard_path)
    first = settings.archive_root / story["first"]
    report = first / "archive_report.json"
    cli.ok("restore", "--report", str(report), "--only-run-id", "r2", "--run")
    detail = get_batch(settings, story["first"])
    assert [r.entries[0].run_id for r in detail.restores] == ["r2", "r1"]
    (first / "restore_report_99999999T999999999999Z.json").write_text("{nope")
    detail = get_batch(settings, story["first"])
    assert len(detail.restores) == 2 and len(detail.problems) == 1
    assert detail.summary.restores == 3


def test_unreadable_reports_are_listed_not_raised(yard_path, cli, story):
    settings = load_settings(yard_path)
    root = settings.archive_root
    broken = root / "20000101T000000Z"
    broken.mkdir()
    (broken / "archive_report.json").write_text("{broken")
    elsewhere = root / "20000101T000000Z-2"
    elsewhere.mkdir()
    good = json.loads((root / story["first"] / "archive_report.json").read_text())
    (elsewhere / "archive_report.json").write_text(json.dumps(good))  # says another batch
    (root / "20000101T000001Z").mkdir()  # no report: not a batch
    (root / "not-a-batch").mkdir()
    (root / "not-a-batch" / "archive_report.json").write_text("{}")
    os.symlink(root / story["first"], root / "20000101T000002Z")  # a link is not a batch
    listed = {b.batch_id: b for b in list_batches(settings)}
    assert set(listed) == {story["first"], story["second"], broken.name, elsewhere.name}
    assert list(listed)[-2:] == [elsewhere.name, broken.name]  # -2 after its base: newer
    assert listed[broken.name].status == "unreadable" and listed[broken.name].error
    assert "lies in" in (listed[elsewhere.name].error or "")
    with pytest.raises(Invalid):
        get_batch(settings, broken.name)
    with pytest.raises(NotFound):
        get_batch(settings, "20000101T000002Z")
    history = run_history(settings, "r1")  # the copied report is not counted twice
    assert [e.batch_id for e in history if e.kind == "archived"] == [
        story["first"],
        story["second"],
    ]


def test_no_archive_root_no_batches(yard_path):
    settings = load_settings(yard_path)
    assert list_batches(settings) == []  # made by init, empty
    settings.archive_root.rmdir()
    assert list_batches(settings) == []
    assert run_history(settings, "r1") == []


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../x",
        "٢٠٢٦٠١٠١T000000Z",
        "20260101T000000",
        "20260101T000000Z-0",
        "20260101T000000Z/..",
        "latest",
    ],
)
def test_bad_batch_ids(yard_path, bad):
    with pytest.raises(Invalid, match="invalid batch id"):
        validate_batch_id(bad)
    with pytest.raises(Invalid):
        get_batch(load_settings(yard_path), bad)


def test_good_batch_ids_and_unknown_batch(yard_path):
    assert validate_batch_id("20260101T000000Z") == "20260101T000000Z"
    assert validate_batch_id("20260101T000000Z-12") == "20260101T000000Z-12"
    with pytest.raises(NotFound):
        get_batch(load_settings(yard_path), "20990101T000000Z")
    with pytest.raises(Invalid):
        run_history(load_settings(yard_path), "../r1")
