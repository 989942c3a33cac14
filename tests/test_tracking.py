"""The Python API: ``with yard.start_run(...) as run`` finishes the run whatever happens."""

from __future__ import annotations

import pytest

import runyard
from runyard.errors import LegacyPathClosed, NotFound
from runyard.manifest import read_manifest
from runyard.registry import runs


def test_normal_exit_succeeds(yard, lineage):
    with yard.start_run(
        plan_version_id=lineage["plan_version_id"], group="CH01/003", tags={"owner": "ops"}
    ) as run:
        assert run.path.is_dir() and run.path.name == run.run_id
        (run.path / "out.csv").write_text("a,b\n")
        run.log_summary({"fill_rate": 0.97})
        run.log_summary({"cost": 10})
        run.set_tags({"stage": "nightly"})
        assert runs.get_run(yard, run.run_id).status == "running"
    stored = runs.get_run(yard, run.run_id)
    assert stored.status == "succeeded"
    assert stored.summary == {"fill_rate": 0.97, "cost": 10}
    assert stored.tags == {"owner": "ops", "stage": "nightly"}
    assert stored.plan_version_id == lineage["plan_version_id"]
    assert stored.scenario_id == lineage["scenario_id"]
    assert stored.config_version_id == lineage["config_version_id"]
    manifest = read_manifest(run.path)
    assert manifest.status == "succeeded" and manifest.summary == stored.summary
    assert run.result == stored


def test_exception_fails_the_run_and_reraises(yard, lineage):
    with (
        pytest.raises(ZeroDivisionError),
        yard.start_run(plan_version_id=lineage["plan_version_id"]) as run,
    ):
        run.log_summary({"step": 1})
        _ = 1 / 0
    stored = runs.get_run(yard, run.run_id)
    assert stored.status == "failed"
    assert "ZeroDivisionError" in stored.error
    assert stored.summary == {"step": 1}
    assert read_manifest(run.path).status == "failed"


def test_keyboard_interrupt_cancels(yard, lineage):
    with (
        pytest.raises(KeyboardInterrupt),
        yard.start_run(plan_version_id=lineage["plan_version_id"]),
    ):
        raise KeyboardInterrupt
    run = runs.list_runs(yard).items[0]
    assert runs.get_run(yard, run.run_id).status == "cancelled"


def test_no_plan_no_run(yard, lineage):
    before = sorted(p.name for p in yard.settings.runs_root.iterdir())
    with pytest.raises(LegacyPathClosed), yard.start_run(plan_version_id=""):
        pass
    with pytest.raises(NotFound), yard.start_run(plan_version_id="pv-nope"):
        pass
    assert sorted(p.name for p in yard.settings.runs_root.iterdir()) == before


def test_bad_tags_refused_before_anything_is_made(yard, lineage):
    before = sorted(p.name for p in yard.settings.runs_root.iterdir())
    with (
        pytest.raises(runyard.RunyardError),
        yard.start_run(plan_version_id=lineage["plan_version_id"], tags={"": "x"}),
    ):
        pass
    assert sorted(p.name for p in yard.settings.runs_root.iterdir()) == before


def test_open_yard_by_path_and_repr(yard_path, lineage):
    with runyard.open_yard(yard_path) as yard:
        assert "Yard(" in repr(yard)
        with yard.start_run(plan_version_id=lineage["plan_version_id"]) as run:
            pass
        assert run.result.status == "succeeded"


def test_unstorable_summary_refused_where_it_is_logged(yard, lineage):
    import datetime

    with yard.start_run(plan_version_id=lineage["plan_version_id"]) as run:
        with pytest.raises(runyard.RunyardError, match="summary"):
            run.log_summary({"when": datetime.date.today()})
        run.log_summary({"ok": 1})
    assert runs.get_run(yard, run.run_id).summary == {"ok": 1}


def test_sys_exit_zero_is_success(yard, lineage):
    with (
        pytest.raises(SystemExit),
        yard.start_run(plan_version_id=lineage["plan_version_id"]) as run,
    ):
        raise SystemExit(0)
    assert runs.get_run(yard, run.run_id).status == "succeeded"
    with (
        pytest.raises(SystemExit),
        yard.start_run(plan_version_id=lineage["plan_version_id"]) as failing,
    ):
        raise SystemExit(3)
    assert runs.get_run(yard, failing.run_id).status == "failed"
