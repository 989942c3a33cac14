"""``runyard demo``: the yard it builds, its --json output, and its refusal to touch a folder.

The full demo (twelve PSI runs) is built once for the module, by ``build_demo``, and
only read afterwards; the tests that write build their own yard, with the simulation
skipped (fast) unless the simulation is what they check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import runyard
from runyard.cli import demo_cmd
from runyard.cli.main import app as main_app
from runyard.demo import DemoResult, build_demo
from runyard.errors import JobFailed
from runyard.jobs.execute import JobEnd
from runyard.models import JobStatus, RunStatus
from runyard.registry import configs, plans, scenarios
from runyard.registry import jobs as job_registry
from runyard.registry.runs import RunFilter, list_runs


def _clean_environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """The full demo, simulation included, on SQLite; read-only for the tests below."""
    path = tmp_path_factory.mktemp("demo") / "demo-yard"
    return build_demo(path, environ=_clean_environ())


@pytest.fixture(scope="module")
def demo_yard(demo: DemoResult) -> Iterator[runyard.Yard]:
    with runyard.open_yard(demo.yard_path, environ=_clean_environ()) as yard:
        yield yard


def _cli_app() -> typer.Typer:
    """The runyard app if it has `demo` already; else a bare app with only `demo` in it."""
    if any(command.name == "demo" for command in main_app.registered_commands):
        return main_app
    local = typer.Typer(pretty_exceptions_enable=False)
    local.callback()(lambda: None)  # keep `demo` a subcommand, as in the real app
    demo_cmd.register(local)
    return local


def _demo_cli(*args: str) -> Any:
    return CliRunner().invoke(_cli_app(), ["demo", *args], catch_exceptions=False)


def _tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root``: kind, size, mtime and content digest (registry included)."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(root))] = (path.is_dir(), info.st_size, info.st_mtime_ns, digest)
    return out


# --- the yard the demo builds -----------------------------------------------------------


def test_demo_adds_two_scenarios_three_configs_four_plans(
    demo: DemoResult, demo_yard: runyard.Yard
) -> None:
    with demo_yard.read() as conn:
        found_scenarios = scenarios.list_scenarios(conn).items
        found_configs = configs.list_configs(conn).items
        found_plans = plans.list_plans(conn).items
    assert sorted(s.name for s in found_scenarios) == ["large", "small"]
    assert all(s.data_digest for s in found_scenarios)
    assert sorted(c.name or "" for c in found_configs) == [
        "config-base",
        "config-lean",
        "config-safe",
    ]
    assert sorted(p.label or "" for p in found_plans) == [
        "large-base",
        "small-base",
        "small-lean",
        "small-safe",
    ]
    large = next(s for s in demo.scenarios if s.name == "large")
    assert (large.skus, large.periods) == (1000, 104)


def test_demo_runs_succeed_with_their_outputs(demo: DemoResult, demo_yard: runyard.Yard) -> None:
    runs = list_runs(demo_yard, RunFilter(), limit=1000).items
    succeeded = [r for r in runs if r.status == RunStatus.succeeded]
    assert len(succeeded) >= 12 and len(succeeded) == len(runs)
    for run in succeeded:
        assert (Path(run.path) / "psi.csv").is_file(), run.run_id
        summary = json.loads((Path(run.path) / "summary.json").read_text())
        assert 0 <= summary["fill_rate"] <= 1
    assert demo.runs_by_status == {"succeeded": len(runs)}
    for plan in demo.plans:
        assert plan.runs == 3 and plan.runs_by_status == {"succeeded": 3}
        assert plan.mean_fill_rate is not None and plan.mean_total_cost is not None
    assert not demo.simulation_skipped and demo.notes == []


def test_demo_leaves_no_job_queued_or_running(demo: DemoResult, demo_yard: runyard.Yard) -> None:
    with demo_yard.read() as conn:
        counts = job_registry.counts_by_status(conn)
    assert counts == {"succeeded": 13}  # 12 planning jobs and the aggregate
    assert demo.jobs_by_status == counts


def test_demo_aggregates_one_plan(demo: DemoResult, demo_yard: runyard.Yard) -> None:
    assert demo.aggregate is not None
    with demo_yard.read() as conn:
        stored = job_registry.aggregates_of_plan(conn, demo.aggregate.plan_version_id)
    assert [a.aggregate_id for a in stored] == [demo.aggregate.aggregate_id]
    folder = Path(demo.aggregate.path)
    assert folder.is_relative_to(demo.yard_path)
    assert (folder / "aggregate.csv").is_file()
    document = json.loads((folder / "aggregate.json").read_text())
    assert document["run_count"] == demo.aggregate.runs == 3
    assert "fill_rate" in document["metrics"]


def test_demo_writes_an_archive_dry_run_and_moves_nothing(
    demo: DemoResult, demo_yard: runyard.Yard
) -> None:
    report_path = Path(demo.archive_dry_run.report_path)
    assert report_path.parent == demo_yard.settings.logs_dir
    report = json.loads(report_path.read_text())
    assert report["kind"] == "archive" and report["batch_id"] is None
    assert report["summary"]["candidates"] == demo.archive_dry_run.candidates == 12
    assert list(demo_yard.settings.archive_root.iterdir()) == []
    runs = list_runs(demo_yard, RunFilter(), limit=1000).items
    assert all(Path(r.path).parent == demo_yard.settings.runs_root for r in runs)


def test_demo_browse_commands_exist(demo: DemoResult) -> None:
    root = typer.main.get_command(main_app)
    assert demo.browse[0] == f"cd {shlex.quote(demo.yard_path)}"
    for line in demo.browse[1:]:
        words = shlex.split(line)
        assert words[0] == "runyard", line
        command: Any = root
        rest = words[1:]
        while hasattr(command, "commands"):  # a group
            assert rest and rest[0] in command.commands, f"{line}: no command {rest[:1]}"
            command, rest = command.commands[rest[0]], rest[1:]
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        for word in rest:
            assert not word.startswith("-") or word in options, f"{line}: no option {word}"


# --- the command ------------------------------------------------------------------------


def test_demo_json_output_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    target = tmp_path / "empty"
    target.mkdir()  # an empty folder is fine
    result = _demo_cli(str(target), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["yard_path"] == str(target)
    assert len(document["plans"]) == 4 and len(document["configs"]) == 3
    assert document["runs_by_status"] == {"skipped": 12}
    assert document["simulation_skipped"] is True
    assert document["aggregate"] is None
    assert any("no aggregate" in note for note in document["notes"])
    assert all(p["mean_fill_rate"] is None for p in document["plans"])
    assert Path(document["archive_dry_run"]["report_path"]).is_file()
    assert document["seconds"]["total"] > 0


def test_demo_prints_the_summary_and_how_to_browse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    result = _demo_cli(str(tmp_path / "yard"))
    assert result.exit_code == 0, result.output
    for text in ("small-base", "large-base", "config-safe", "How to browse", "runyard job list"):
        assert text in result.stdout
    assert "archive_dryrun_" in result.stdout


def test_demo_refuses_a_folder_that_is_not_empty(demo: DemoResult) -> None:
    root = Path(demo.yard_path)
    before = _tree(root)
    result = _demo_cli(str(root))
    assert result.exit_code == 4
    assert "not empty" in result.stderr
    as_json = _demo_cli(str(root), "--json")
    assert as_json.exit_code == 4
    assert json.loads(as_json.stdout)["error"]["code"] == "refused"
    assert _tree(root) == before


def test_demo_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("mine")
    result = _demo_cli(str(target))
    assert result.exit_code == 4
    assert target.read_text() == "mine"


def test_demo_names_a_failed_job_and_its_log_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> JobEnd:
        return JobEnd(JobStatus.failed, "the runner exited with code 1")

    monkeypatch.setattr("runyard.jobs.worker.execute", fail)
    with pytest.raises(JobFailed) as raised:
        build_demo(tmp_path / "yard", environ=_clean_environ())
    job_id = raised.value.message.split(" job ", 1)[1].split()[0]
    assert job_id.startswith("job-")
    assert "the runner exited with code 1" in raised.value.message
    assert raised.value.hint is not None and f"job log {job_id}" in raised.value.hint
    assert (tmp_path / "yard" / "runyard.toml").is_file()  # left for inspection


def test_the_cli_default_path_is_the_demos() -> None:
    # demo_cmd keeps its own copy so that `runyard` does not import the demo (and NumPy)
    # on every call.
    from runyard import demo
    from runyard.cli import demo_cmd

    assert demo_cmd.DEFAULT_PATH == demo.DEFAULT_PATH
