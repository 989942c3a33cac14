"""``Yard.record_runs``: many finished runs at once, with folders and manifests, all or none."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone

import pytest

import runyard
from runyard.errors import Conflict, Invalid, LegacyPathClosed, Locked, NotFound
from runyard.manifest import MANIFEST_NAME, read_manifest
from runyard.models import RunStatus
from runyard.registry import bulk, runs
from runyard.registry.bulk import RunRecord
from runyard.registry.runs import RunFilter


def _folders(yard):
    return sorted(os.listdir(yard.settings.runs_root))


def test_records_become_runs_with_matching_manifests(yard, lineage):
    pv = lineage["plan_version_id"]
    started = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    cet = timezone(timedelta(hours=1))
    made = yard.record_runs(
        [
            {
                "plan_version_id": pv,
                "run_id": "CH01-001",
                "group": "CH01/001",
                "summary": {"fill_rate": 0.97, "rows": [1, 2]},
                "tags": {"owner": "ops", "try": 2},
                "started_at": started,
                "finished_at": started + timedelta(minutes=5),
            },
            RunRecord(
                plan_version_id=pv,
                run_id="CH01-002",
                status=RunStatus.failed,
                error="ValueError: no demand",
                started_at=datetime(2026, 3, 1, 10, 0, tzinfo=cet),
                finished_at=datetime(2026, 3, 1, 10, 1, tzinfo=cet),
            ),
            {"plan_version_id": pv, "status": "cancelled"},
        ]
    )
    assert [r.run_id for r in made[:2]] == ["CH01-001", "CH01-002"]
    assert [r.status for r in made] == ["succeeded", "failed", "cancelled"]
    assert made[0].tags == {"owner": "ops", "try": "2"}
    assert made[1].started_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    for run in made:
        stored = runs.get_run(yard, run.run_id)
        assert stored == run
        assert stored.plan_version_id == lineage["plan_version_id"]
        assert stored.scenario_id == lineage["scenario_id"]
        assert stored.config_version_id == lineage["config_version_id"]
        folder = yard.settings.runs_root / run.run_id
        assert str(folder) == run.path
        assert os.listdir(folder) == [MANIFEST_NAME]  # no temporary file left behind
        manifest = read_manifest(folder)
        assert manifest is not None
        assert manifest.yard_id == yard.settings.yard_id
        for key in (
            "run_id",
            "plan_version_id",
            "config_version_id",
            "scenario_id",
            "group",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "summary",
            "tags",
            "error",
        ):
            assert getattr(manifest, key) == getattr(stored, key), key


def test_defaults(yard, lineage):
    before = datetime.now(UTC)
    (run,) = yard.record_runs([{"plan_version_id": lineage["plan_version_id"]}])
    after = datetime.now(UTC)
    assert run.status == RunStatus.succeeded
    assert run.group is None and run.summary == {} and run.tags == {} and run.error is None
    assert before - timedelta(seconds=1) <= run.started_at <= after + timedelta(seconds=1)
    assert run.started_at == run.finished_at == run.created_at
    assert not run.legacy and not run.pinned and run.location == "active"
    assert runs.get_run(yard, run.run_id) == run


def test_group_derived_from_the_pattern(yard_path, lineage):
    toml = yard_path / "runyard.toml"
    toml.write_text(
        toml.read_text().replace(
            "# group_pattern = '^(?P<channel>CH\\d+)-(?P<episode>\\d+)'",
            "group_pattern = '^(?P<channel>CH\\d+)-(?P<episode>\\d+)'",
        )
    )
    pv = lineage["plan_version_id"]
    with runyard.open_yard(yard_path) as opened:
        made = opened.record_runs(
            [
                {"plan_version_id": pv, "run_id": "CH02-007-x"},
                {"plan_version_id": pv, "run_id": "misc-1"},
                {"plan_version_id": pv, "run_id": "CH03-001", "group": "special"},
            ]
        )
    assert [r.group for r in made] == ["CH02/007", None, "special"]


def test_generated_ids_are_unique_and_ordered(yard, lineage):
    made = yard.record_runs([{"plan_version_id": lineage["plan_version_id"]}] * 50)
    ids = [r.run_id for r in made]
    assert len(set(ids)) == 50
    assert ids == sorted(ids)
    assert len(_folders(yard)) == 50


def test_empty_batch(yard, lineage, snapshot):
    before = snapshot()
    assert yard.record_runs([]) == []
    assert snapshot() == before


def test_list_runs_sees_them(yard, lineage, cli):
    pv = lineage["plan_version_id"]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    records = [
        {
            "plan_version_id": pv,
            "run_id": f"r{i:03d}",
            "status": "failed" if i % 3 == 0 else "succeeded",
            "started_at": base + timedelta(minutes=i),
            "finished_at": base + timedelta(minutes=i),
        }
        for i in range(120)
    ]
    yard.record_runs(records[:60])
    yard.record_runs(records[60:])
    seen: list[str] = []
    cursor = None
    while True:
        page = runs.list_runs(yard, RunFilter(plan_version_id=pv), limit=50, after=cursor)
        seen += [r.run_id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"r{i:03d}" for i in reversed(range(120))]
    failed = runs.list_runs(yard, RunFilter(status=RunStatus.failed), limit=1000)
    assert [r.run_id for r in failed.items] == [f"r{i:03d}" for i in reversed(range(0, 120, 3))]
    listed = cli.ok("run", "list", "--limit", "5")
    assert [r["run_id"] for r in listed["items"]] == ["r119", "r118", "r117", "r116", "r115"]


# --- bad input refuses the whole batch and changes nothing ---------------------------


def _good(pv, n=3, prefix="ok"):
    return [{"plan_version_id": pv, "run_id": f"{prefix}-{i}"} for i in range(n)]


BAD_BATCHES = {
    "unknown plan": (
        NotFound,
        "no plan version 'pv-nope'",
        lambda pv: [*_good(pv), {"plan_version_id": "pv-nope"}],
    ),
    "empty plan": (
        LegacyPathClosed,
        "needs a plan version",
        lambda pv: [*_good(pv), {"plan_version_id": ""}],
    ),
    "no plan at all": (Invalid, "plan_version_id", lambda pv: [*_good(pv), {"run_id": "x"}]),
    "invalid run id": (
        Invalid,
        "invalid run id '../escape'",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "run_id": "../escape"}],
    ),
    "hidden run id": (
        Invalid,
        "cannot start with '.'",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "run_id": ".hidden"}],
    ),
    "duplicate id in the batch": (
        Invalid,
        "already used by record 1",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "run_id": "ok-1"}],
    ),
    "running status": (
        Invalid,
        "cannot record a run as 'running'",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "status": "running"}],
    ),
    "queued status": (
        Invalid,
        "cannot record a run as 'queued'",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "status": "queued"}],
    ),
    "unknown status": (
        Invalid,
        "status",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "status": "done"}],
    ),
    "unknown key": (
        Invalid,
        "colour",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "colour": "red"}],
    ),
    "bad tag key": (
        Invalid,
        "tag key",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "tags": {" padded": "x"}}],
    ),
    "summary not JSON": (
        Invalid,
        "summary: NaN and Infinity are not valid JSON numbers",
        lambda pv: [*_good(pv), {"plan_version_id": pv, "summary": {"x": float("nan")}}],
    ),
    "finished before started": (
        Invalid,
        "is before started_at",
        lambda pv: [
            *_good(pv),
            {
                "plan_version_id": pv,
                "started_at": datetime(2026, 1, 2, tzinfo=UTC),
                "finished_at": datetime(2026, 1, 1, tzinfo=UTC),
            },
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_input_changes_nothing(yard, lineage, snapshot, case):
    error, message, make = BAD_BATCHES[case]
    yard.record_runs(_good(lineage["plan_version_id"], 2, prefix="earlier"))
    before = snapshot()
    with pytest.raises(error) as caught:
        yard.record_runs(make(lineage["plan_version_id"]))
    assert message in caught.value.message
    assert "record 3" in caught.value.message
    assert snapshot() == before


def test_unknown_plan_hints_at_plan_create(yard, lineage):
    with pytest.raises(NotFound) as caught:
        yard.record_runs([{"plan_version_id": "pv-nope"}])
    assert "runyard plan create" in (caught.value.hint or "")


def test_existing_id_is_a_conflict(yard, lineage, snapshot):
    pv = lineage["plan_version_id"]
    with yard.start_run(plan_version_id=pv, run_id="taken"):
        pass
    before = snapshot()
    with pytest.raises(Conflict, match="'taken' already exists"):
        yard.record_runs([*_good(pv), {"plan_version_id": pv, "run_id": "taken"}])
    assert snapshot() == before


def test_locked_scenario_is_refused(yard, lineage, cli, snapshot):
    cli.ok("scenario", "lock", lineage["scenario_id"], "--reason", "frozen for audit")
    before = snapshot()
    with pytest.raises(Locked, match="frozen for audit") as caught:
        yard.record_runs(_good(lineage["plan_version_id"]))
    assert "recording runs refused" in caught.value.message
    assert snapshot() == before


def test_unregistered_folder_in_the_way(yard, lineage, snapshot):
    pv = lineage["plan_version_id"]
    stray = yard.settings.runs_root / "ok-2"
    stray.mkdir()
    (stray / "out.csv").write_text("a,b\n")
    before = snapshot()
    with pytest.raises(Conflict, match="already exists") as caught:
        yard.record_runs(_good(pv, 5))
    assert "runyard run import" in (caught.value.hint or "")
    assert snapshot() == before  # ok-0 and ok-1 were made, then removed; ok-2 untouched


def test_id_taken_meanwhile_removes_the_folders(yard, lineage, snapshot, monkeypatch):
    """A run registered between the check and the insert: the insert fails, cleanly."""
    pv = lineage["plan_version_id"]
    yard.record_runs([{"plan_version_id": pv, "run_id": "ok-1"}])
    (yard.settings.runs_root / "ok-1").rename(yard.settings.runs_root / "moved-away")
    before = snapshot()
    real = bulk._refuse_existing
    calls = []

    def blind_first_time(conn, run_ids):
        calls.append(run_ids)
        if len(calls) > 1:
            real(conn, run_ids)

    monkeypatch.setattr(bulk, "_refuse_existing", blind_first_time)
    with pytest.raises(Conflict, match="'ok-1' already exists"):
        yard.record_runs(_good(pv, 3))
    assert snapshot() == before


def test_a_failed_write_removes_every_folder(yard, lineage, snapshot, monkeypatch):
    pv = lineage["plan_version_id"]
    before = snapshot()
    real = bulk._write_file
    calls = []

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 7:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(bulk, "_write_file", flaky)
    with pytest.raises(OSError, match="No space left"):
        yard.record_runs(_good(pv, 20))
    assert snapshot() == before


def test_a_small_batch_is_written_inline(yard, lineage):
    made = yard.record_runs(_good(lineage["plan_version_id"], bulk._MIN_PARALLEL - 1))
    for run in made:
        assert read_manifest(yard.settings.runs_root / run.run_id) is not None


def test_scenario_locked_meanwhile_removes_the_folders(yard, lineage, snapshot, monkeypatch):
    """Locked after the plans were read but before the insert: refused, folders removed."""
    from runyard.registry.scenarios import set_locked

    before = snapshot()
    real = bulk._write_folders

    def then_lock(root, prepared, created):
        real(root, prepared, created)
        assert len(os.listdir(root)) == 4
        with yard.write() as conn:
            set_locked(conn, lineage["scenario_id"], True, "closed meanwhile")

    monkeypatch.setattr(bulk, "_write_folders", then_lock)
    with pytest.raises(Locked, match="closed meanwhile"):
        yard.record_runs(_good(lineage["plan_version_id"], 4))
    after = snapshot()
    assert after.files == before.files
    assert after.rows["runs"] == before.rows["runs"]
