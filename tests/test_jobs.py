"""runyard's jobs: planning and aggregate jobs, runners, cancelling, and the worker.

Jobs run in-process (``plan run --wait``, ``worker --exit-when-idle``) or, when the test
must act while a job runs (cancel, signals), in a ``python -m runyard`` child process.
Runner children are ``tests/helpers/jobs_child.py`` (command runners) and
``tests/helpers/jobs_runner.py`` (python runners).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard.examples.psi import example_path
from runyard.jobs.execute import SKIPPED_NOTE
from runyard.jobs.runners import KILL_GRACE_SECONDS, PASSED_ENV
from tests.conftest import Cli
from tests.helpers.jobs_util import (
    REPO_ROOT,
    add_config,
    child_argv,
    command_runner,
    kill_quietly,
    make_plan,
    pid_alive,
    read_pid,
    set_jobs,
    start_runyard,
    start_worker,
    stop_process,
    wait_until,
)

RUN_INPUTS = {"config.json", "plan.json", "scenario.json", "params.json"}


# --- helpers -------------------------------------------------------------------------------


def run_wait(cli: Cli, plan_version_id: str) -> tuple[int, dict[str, Any]]:
    """``plan run ID --wait --json``: its exit code and the job it printed."""
    result = cli("plan", "run", plan_version_id, "--wait", "--json")
    return result.exit_code, result.json


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # re-raised by the test through `errors`
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, errors


def running_child(cli: Cli, job_id: str) -> tuple[dict[str, Any], int, int]:
    """Wait until the job's runner (jobs_child sleep) and its grandchild are up."""

    def ready() -> tuple[dict[str, Any], int, int] | None:
        job = cli.ok("job", "show", job_id)
        if job["status"] != "running" or not job["run_id"]:
            return None
        folder = Path(cli.ok("run", "show", job["run_id"])["path"])
        child, grandchild = read_pid(folder / "child.pid"), read_pid(folder / "grandchild.pid")
        return (job, child, grandchild) if child and grandchild else None

    return wait_until(ready, 30, f"the runner of {job_id} to start")


def assert_gone(*pids: int) -> None:
    wait_until(lambda: not any(pid_alive(p) for p in pids), 10, f"processes {pids} to end")


# --- planning jobs: the PSI example --------------------------------------------------------


def test_planning_job_runs_the_psi_example_end_to_end(cli, tmp_path):
    ids = make_plan(cli, tmp_path, params=("horizon=6",))
    pv = ids["plan_version_id"]
    code, job = run_wait(cli, pv)
    assert code == 0, job
    assert job["type"] == "planning" and job["status"] == "succeeded"
    assert job["plan_version_id"] == pv and job["run_id"] and job["error"] is None
    assert job["attempts"] == 1 and job["finished_at"] and job["duration_seconds"] >= 0

    run = cli.ok("run", "show", job["run_id"])
    assert run["status"] == "succeeded" and run["plan_version_id"] == pv
    assert run["tags"]["job_id"] == job["job_id"]
    assert 0 <= run["summary"]["fill_rate"] <= 1
    assert run["summary"]["periods"] == 6  # the plan's horizon reached the runner
    folder = Path(run["path"])
    names = {p.name for p in folder.iterdir()}
    assert {*RUN_INPUTS, "psi.csv", "runner.log", "summary.json"} <= names
    assert json.loads((folder / "summary.json").read_text()) == run["summary"]
    config = cli.ok("config", "show", ids["config_version_id"])
    assert json.loads((folder / "config.json").read_text()) == config["content"]
    assert json.loads((folder / "params.json").read_text()) == {"horizon": 6}
    assert json.loads((folder / "plan.json").read_text())["plan_version_id"] == pv
    scenario = json.loads((folder / "scenario.json").read_text())
    assert scenario["scenario_id"] == ids["scenario_id"]
    assert json.loads(Path(scenario["data_file"]).read_text()) == json.loads(
        example_path("small.json").read_text()
    )
    rows = list(csv.DictReader((folder / "psi.csv").open()))
    assert rows and len(rows) == 6 * run["summary"]["skus"]

    listed = cli.ok("job", "list", "--plan", pv)["items"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    other = make_plan(cli, tmp_path, params=("horizon=3",))["plan_version_id"]
    assert cli.ok("job", "list", "--plan", other)["items"] == []
    assert [j["job_id"] for j in cli.ok("job", "list", "--status", "succeeded")["items"]] == [
        job["job_id"]
    ]
    assert cli.ok("job", "list", "--status", "failed")["items"] == []

    log = cli("job", "log", job["job_id"])
    assert log.exit_code == 0
    assert f"claimed by {job['worker_id']} (attempt 1 of 1)" in log.stdout
    assert f"run {job['run_id']} started in {folder}" in log.stdout
    assert "runner ended after" in log.stdout and "exit code 0" in log.stdout
    assert f"--- runner.log of run {job['run_id']} ---" in log.stdout
    assert cli.ok("job", "log", job["job_id"])["log"] == log.stdout


def test_skip_simulation_records_a_skipped_run(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    pv = make_plan(cli, tmp_path)["plan_version_id"]
    code, job = run_wait(cli, pv)
    assert code == 0 and job["status"] == "succeeded" and job["error"] is None
    run = cli.ok("run", "show", job["run_id"])
    assert run["status"] == "skipped" and run["error"] is None
    assert run["summary"]["note"] == SKIPPED_NOTE
    folder = Path(run["path"])
    names = {p.name for p in folder.iterdir()}
    assert names >= RUN_INPUTS
    assert not names & {"psi.csv", "runner.log", "summary.json"}
    assert SKIPPED_NOTE in cli("job", "log", job["job_id"]).stdout


def test_missing_scenario_data_fails_the_psi_runner_clearly(cli, tmp_path):
    pv = make_plan(cli, tmp_path, data=False)["plan_version_id"]
    code, job = run_wait(cli, pv)
    assert code == 7 and job["status"] == "failed"
    assert "exited with code 1" in job["error"]
    assert "has no data" in job["error"] and "--data" in job["error"]
    run = cli.ok("run", "show", job["run_id"])
    assert run["status"] == "failed" and run["error"] == job["error"]


def test_locked_scenario_refuses_plan_run_and_queues_nothing(cli, tmp_path):
    pv = make_plan(cli, tmp_path)["plan_version_id"]
    cli.ok("scenario", "lock", "base")
    for extra in ([], ["--wait"]):
        result = cli("plan", "run", pv, *extra, "--json")
        assert result.exit_code == 4
        assert result.json["error"]["code"] == "locked"
    assert cli.ok("job", "list")["items"] == []
    assert cli.ok("run", "list")["items"] == []


def test_scenario_locked_after_enqueue_fails_the_job_without_a_run(cli, tmp_path):
    pv = make_plan(cli, tmp_path)["plan_version_id"]
    job = cli.ok("plan", "run", pv)
    assert job["status"] == "queued"
    cli.ok("scenario", "lock", "base")
    assert cli.ok("worker", "--exit-when-idle")["finished"] == {"failed": 1}
    done = cli.ok("job", "show", job["job_id"])
    assert done["status"] == "failed" and "locked" in done["error"]
    assert done["run_id"] is None and cli.ok("run", "list")["items"] == []


# --- python runners ------------------------------------------------------------------------


@pytest.fixture
def importable_tests(monkeypatch):
    """Runner children import ``tests.helpers.jobs_runner`` via the passed-on PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))


def python_runner(name: str, entry: str) -> str:
    return f'[runners.{name}]\nkind = "python"\nentry = "{entry}"'


def test_python_runner_gets_the_context_and_its_dict_becomes_the_summary(
    cli, tmp_path, yard_path, importable_tests
):
    add_config(yard_path, python_runner("py", "tests.helpers.jobs_runner:summarize"))
    ids = make_plan(cli, tmp_path, "py", params=("horizon=4", "note=hello"))
    code, job = run_wait(cli, ids["plan_version_id"])
    assert code == 0, job
    run = cli.ok("run", "show", job["run_id"])
    config = cli.ok("config", "show", ids["config_version_id"])["content"]
    assert run["status"] == "succeeded"
    assert run["summary"] == {
        "run_id": run["run_id"],
        "plan_version_id": ids["plan_version_id"],
        "params": {"horizon": 4, "note": "hello"},
        "config": config,
        "has_data": True,
        "run_dir": run["path"],
        "score": 41.5,
    }
    folder = Path(run["path"])
    assert json.loads((folder / "summary.json").read_text()) == run["summary"]
    assert (folder / "touched.txt").read_text() == "yes"
    assert "summarize ran" in (folder / "runner.log").read_text()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("explode", ["exited with code 1", "ValueError: boom from the runner"]),
        ("not_a_dict", ["exited with code 2", "returned a list, not a dict"]),
        ("missing", ["exited with code 2", "cannot load the runner entry"]),
    ],
)
def test_python_runner_failures_fail_job_and_run(
    cli, tmp_path, yard_path, importable_tests, entry, expected
):
    add_config(yard_path, python_runner("py", f"tests.helpers.jobs_runner:{entry}"))
    pv = make_plan(cli, tmp_path, "py")["plan_version_id"]
    code, job = run_wait(cli, pv)
    assert code == 7 and job["status"] == "failed"
    for text in expected:
        assert text in job["error"]
    run = cli.ok("run", "show", job["run_id"])
    assert run["status"] == "failed" and run["error"] == job["error"]
    assert not (Path(run["path"]) / "summary.json").exists()


def test_python_runner_returning_none_succeeds_without_summary(
    cli, tmp_path, yard_path, importable_tests
):
    add_config(yard_path, python_runner("py", "tests.helpers.jobs_runner:nothing"))
    code, job = run_wait(cli, make_plan(cli, tmp_path, "py")["plan_version_id"])
    assert code == 0
    run = cli.ok("run", "show", job["run_id"])
    assert run["status"] == "succeeded" and run["summary"] == {}
    assert not (Path(run["path"]) / "summary.json").exists()


# --- command runners -----------------------------------------------------------------------


def test_command_runner_fills_placeholders_and_builds_the_environment(
    cli, tmp_path, yard_path, monkeypatch
):
    argv = [
        *child_argv("record"),
        "{run_dir}",
        "{run_id}",
        "{config}",
        "{params}",
        "{plan}",
        "{scenario_data}",
        "--out={run_dir}/x",
        "{{literal}}",
    ]
    env = {"FROM_TOML": "toml value", "RUNYARD_RUN_ID": "spoofed", "TZ": "Europe/Paris"}
    add_config(yard_path, command_runner("rec", argv, env=env))
    monkeypatch.setenv("JOBS_TEST_LEAK", "must not reach the child")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("LANG", "C.UTF-8")
    with_data = make_plan(cli, tmp_path, "rec")
    without_data = make_plan(cli, tmp_path, "rec", data=False, scenario="empty")

    records = {}
    for name, ids in (("with", with_data), ("without", without_data)):
        code, job = run_wait(cli, ids["plan_version_id"])
        assert code == 0, job
        run = cli.ok("run", "show", job["run_id"])
        assert run["status"] == "succeeded" and run["summary"] == {"ok": 1}
        folder = Path(run["path"])
        records[name] = (run, json.loads((folder / "record.json").read_text()))

    run, record = records["with"]
    folder = Path(run["path"])
    digest = cli.ok("scenario", "show", "base")["data_digest"]
    data_file = str(yard_path.resolve() / "scenario_data" / f"{digest}.json")
    assert record["argv"] == [
        "record",
        str(folder),
        run["run_id"],
        str(folder / "config.json"),
        str(folder / "params.json"),
        str(folder / "plan.json"),
        data_file,
        f"--out={folder}/x",
        "{literal}",
    ]
    assert record["executable"] == sys.executable and record["cwd"] == str(folder)
    env_seen = record["env"]
    assert "JOBS_TEST_LEAK" not in env_seen
    assert "RUNYARD_DB" not in env_seen  # the registry URL (maybe a password) stays home
    assert env_seen["FROM_TOML"] == "toml value"
    assert env_seen["TZ"] == "Europe/Paris"  # the runner's table wins over the passed TZ
    assert env_seen["LANG"] == "C.UTF-8"
    assert env_seen["PATH"] == os.environ["PATH"]
    assert env_seen["RUNYARD_RUN_ID"] == run["run_id"]  # runyard's own win over the table
    job_id = run["tags"]["job_id"]
    assert env_seen["RUNYARD_JOB_ID"] == job_id
    assert env_seen["RUNYARD_RUN_DIR"] == str(folder)
    assert env_seen["RUNYARD_PLAN_VERSION_ID"] == with_data["plan_version_id"]
    assert env_seen["RUNYARD_CONFIG_FILE"] == str(folder / "config.json")
    assert env_seen["RUNYARD_PARAMS_FILE"] == str(folder / "params.json")
    assert env_seen["RUNYARD_SCENARIO_DATA_FILE"] == data_file
    allowed = {*PASSED_ENV, *env, "LC_CTYPE"} | {k for k in env_seen if k.startswith("RUNYARD_")}
    assert set(env_seen) <= allowed
    assert {k for k in env_seen if k.startswith("RUNYARD_")} == {
        "RUNYARD_RUN_DIR",
        "RUNYARD_RUN_ID",
        "RUNYARD_JOB_ID",
        "RUNYARD_PLAN_VERSION_ID",
        "RUNYARD_CONFIG_FILE",
        "RUNYARD_PARAMS_FILE",
        "RUNYARD_SCENARIO_DATA_FILE",
    }

    run, record = records["without"]
    assert record["argv"][6] == ""  # {scenario_data} of a scenario without data
    assert record["env"]["RUNYARD_SCENARIO_DATA_FILE"] == ""


def test_runner_exit_code_fails_job_and_run_with_the_log_tail(cli, tmp_path, yard_path):
    add_config(yard_path, command_runner("bad", child_argv("fail")))
    pv = make_plan(cli, tmp_path, "bad", data=False)["plan_version_id"]
    code, job = run_wait(cli, pv)
    assert code == 7 and job["status"] == "failed"
    error = job["error"]
    assert "the runner exited with code 3" in error
    assert "last lines of runner.log" in error
    assert all(f"line {i}" in error for i in range(4, 9))
    assert "line 3" not in error  # only the tail
    run = cli.ok("run", "show", job["run_id"])
    assert run["status"] == "failed" and run["error"] == error

    log = cli("job", "log", job["job_id"]).stdout
    assert "exit code 3" in log and "line 1\n" in log  # the whole runner.log

    human = cli("plan", "run", pv, "--wait")
    assert human.exit_code == 7
    assert "failed" in human.stderr and "exited with code 3" in human.stderr
    assert "runyard job log" in human.stderr


def test_timeout_stops_the_runner_and_its_process_group(cli, tmp_path, yard_path):
    add_config(yard_path, command_runner("slow", child_argv("sleep", "30"), timeout_seconds=1))
    pv = make_plan(cli, tmp_path, "slow", data=False)["plan_version_id"]
    began = time.monotonic()
    code, job = run_wait(cli, pv)
    assert time.monotonic() - began < 15
    assert code == 7 and job["status"] == "failed"
    assert job["error"].startswith("timed out after 1 s")
    run = cli.ok("run", "show", job["run_id"])
    assert run["status"] == "failed" and run["error"] == job["error"]
    folder = Path(run["path"])
    child, grandchild = read_pid(folder / "child.pid"), read_pid(folder / "grandchild.pid")
    try:
        assert child and grandchild
        assert_gone(child, grandchild)
    finally:
        kill_quietly(child)
        kill_quietly(grandchild)


@pytest.mark.parametrize("backend", ["sqlite"])  # signals only: one backend is enough
def test_timeout_kills_a_runner_that_ignores_sigterm(cli, tmp_path, yard_path):
    argv = child_argv("sleep", "30", "both")
    add_config(yard_path, command_runner("stubborn", argv, timeout_seconds=2))
    pv = make_plan(cli, tmp_path, "stubborn", data=False)["plan_version_id"]
    began = time.monotonic()
    code, job = run_wait(cli, pv)
    took = time.monotonic() - began
    assert code == 7 and job["error"].startswith("timed out after 2 s")
    assert 2 + KILL_GRACE_SECONDS - 0.5 < took < 2 + KILL_GRACE_SECONDS + 8  # SIGKILL after grace
    folder = Path(cli.ok("run", "show", job["run_id"])["path"])
    child, grandchild = read_pid(folder / "child.pid"), read_pid(folder / "grandchild.pid")
    try:
        assert child and grandchild
        assert_gone(child, grandchild)
    finally:
        kill_quietly(child)
        kill_quietly(grandchild)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_timeout_stops_a_grandchild_that_ignores_sigterm(cli, tmp_path, yard_path):
    argv = child_argv("sleep", "30", "grandchild")
    add_config(yard_path, command_runner("leaky", argv, timeout_seconds=2))
    pv = make_plan(cli, tmp_path, "leaky", data=False)["plan_version_id"]
    code, job = run_wait(cli, pv)
    assert code == 7 and job["error"].startswith("timed out after 2 s")
    folder = Path(cli.ok("run", "show", job["run_id"])["path"])
    child, grandchild = read_pid(folder / "child.pid"), read_pid(folder / "grandchild.pid")
    try:
        assert child and grandchild
        assert not pid_alive(child)
        wait_until(
            lambda: not pid_alive(grandchild),
            KILL_GRACE_SECONDS + 3,
            f"the grandchild {grandchild}, which ignores SIGTERM, to be killed",
        )
    finally:
        kill_quietly(child)
        kill_quietly(grandchild)


def test_missing_program_fails_the_job_cannot_start(cli, tmp_path, yard_path):
    program = str(tmp_path / "no-such-program")
    add_config(yard_path, command_runner("ghost", [program, "{run_dir}"]))
    pv = make_plan(cli, tmp_path, "ghost", data=False)["plan_version_id"]
    code, job = run_wait(cli, pv)
    assert code == 7 and job["status"] == "failed"
    assert "cannot start the runner 'ghost'" in job["error"] and program in job["error"]
    run = cli.ok("run", "show", job["run_id"])
    assert run["status"] == "failed" and "cannot start the runner" in run["error"]


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        (command_runner("x", ["{python}", "{nope}"]), "unknown placeholder {nope}"),
        (command_runner("x", ["{run_dir!r}"]), "unknown placeholder {run_dir}"),
        (command_runner("x", ["{run_dir:>9}"]), "unknown placeholder {run_dir}"),
        (command_runner("x", ["echo", "{}"]), "unknown placeholder {}"),
        ('[runners.x]\nkind = "command"\nargv = []', "needs argv"),
        ('[runners.x]\nkind = "python"\nentry = "no-colon"', "module:function"),
        ('[runners.x]\nkind = "python"\nentry = "a:b"\nargv = ["x"]', "no argv"),
        ('[runners."bad name"]\nkind = "python"\nentry = "a:b"', "invalid runner name"),
    ],
)
def test_bad_runner_config_is_refused_by_every_command(cli, yard_path, table, reason):
    add_config(yard_path, table)
    for args in (("job", "list"), ("plan", "list"), ("worker", "--exit-when-idle")):
        result = cli(*args, "--json")
        assert result.exit_code == 5, (args, result.stdout)
        error = result.json["error"]
        assert error["code"] == "bad_config_file" and reason in error["message"]
        assert "runners" in error["message"]


def test_runner_removed_after_enqueue_fails_the_job(cli, tmp_path, yard_path):
    toml = yard_path / "runyard.toml"
    before = toml.read_text()
    add_config(yard_path, command_runner("gone", child_argv("record")))
    pv = make_plan(cli, tmp_path, "gone", data=False)["plan_version_id"]
    job = cli.ok("plan", "run", pv)
    toml.write_text(before)

    assert cli.ok("worker", "--exit-when-idle")["finished"] == {"failed": 1}
    done = cli.ok("job", "show", job["job_id"])
    assert done["status"] == "failed"
    assert "no runner 'gone'" in done["error"] and "[runners.gone]" in done["error"]
    assert done["run_id"] is None and cli.ok("run", "list")["items"] == []
    again = cli("plan", "run", pv, "--json")
    assert again.exit_code == 5 and "no runner 'gone'" in again.json["error"]["message"]
    assert len(cli.ok("job", "list")["items"]) == 1


# --- cancelling ----------------------------------------------------------------------------


def only_job_id(cli: Cli) -> str:
    """The id of the one job in the yard, once it is there."""
    items = wait_until(lambda: cli.ok("job", "list")["items"], 30, "the job to be queued")
    assert len(items) == 1
    return str(items[0]["job_id"])


def test_cancel_from_another_process_stops_a_running_job(cli, tmp_path, yard_path):
    set_jobs(yard_path, heartbeat_seconds=1)
    add_config(yard_path, command_runner("slow", child_argv("sleep", "30")))
    pv = make_plan(cli, tmp_path, "slow", data=False)["plan_version_id"]
    out = tmp_path / "out"
    proc = start_runyard(yard_path, out, "plan", "run", pv, "--wait", "--json")
    pids: list[int] = []
    try:
        job, child, grandchild = running_child(cli, only_job_id(cli))
        pids = [child, grandchild]
        asked = cli.ok("job", "cancel", job["job_id"])
        assert asked["status"] == "running" and asked["cancel_requested"] is True
        began = time.monotonic()
        assert proc.wait(timeout=20) == 7  # --wait: the job was cancelled
        assert time.monotonic() - began < 10  # within a heartbeat or so, not the sleep
        printed = json.loads((out / "0.out").read_text())
        assert printed["job_id"] == job["job_id"] and printed["status"] == "cancelled"
        assert "cancelled" in (out / "0.err").read_text()
        done = cli.ok("job", "show", job["job_id"])
        assert done["status"] == "cancelled"
        assert "cancelled while the runner ran" in done["error"]
        run = cli.ok("run", "show", job["run_id"])
        assert run["status"] == "cancelled" and run["error"] == done["error"]
        assert_gone(*pids)
        assert "runner ended after" in cli("job", "log", job["job_id"]).stdout
    finally:
        stop_process(proc)
        for pid in pids:
            kill_quietly(pid)


def test_ctrl_c_on_plan_run_wait_records_the_job_cancelled(cli, tmp_path, yard_path):
    add_config(yard_path, command_runner("slow", child_argv("sleep", "30")))
    pv = make_plan(cli, tmp_path, "slow", data=False)["plan_version_id"]
    proc = start_runyard(yard_path, tmp_path / "out", "plan", "run", pv, "--wait", ctrl_c=True)
    pids: list[int] = []
    try:
        job, child, grandchild = running_child(cli, only_job_id(cli))
        pids = [child, grandchild]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) != 0
        done = cli.ok("job", "show", job["job_id"])
        assert done["status"] == "cancelled", done
        assert cli.ok("run", "show", job["run_id"])["status"] == "cancelled"
        assert_gone(*pids)
    finally:
        stop_process(proc)
        for pid in pids:
            kill_quietly(pid)


def test_cancel_a_queued_job_at_once_and_a_finished_one_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    pv = make_plan(cli, tmp_path)["plan_version_id"]
    queued = cli.ok("plan", "run", pv)
    cancelled = cli.ok("job", "cancel", queued["job_id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] == "cancelled before it started"
    assert cancelled["finished_at"] is not None
    assert cli.ok("worker", "--exit-when-idle")["finished"] == {}
    assert cli.ok("job", "show", queued["job_id"])["status"] == "cancelled"
    assert cli.ok("run", "list")["items"] == []

    other = cli.ok("plan", "run", pv)["job_id"]
    assert "it had not started" in cli("job", "cancel", other).stdout
    again = cli("job", "cancel", queued["job_id"], "--json")
    assert again.exit_code == 4 and again.json["error"]["code"] == "conflict"
    code, finished = run_wait(cli, pv)
    assert code == 0 and finished["status"] == "succeeded"
    refused = cli("job", "cancel", finished["job_id"], "--json")
    assert refused.exit_code == 4 and refused.json["error"]["code"] == "conflict"
    assert "succeeded" in refused.json["error"]["message"]
    assert cli.ok("job", "show", finished["job_id"])["status"] == "succeeded"
    unknown = cli("job", "cancel", "job-nope", "--json")
    assert unknown.exit_code == 3


# --- aggregate jobs ------------------------------------------------------------------------


def test_aggregate_tabulates_the_succeeded_runs_of_a_plan(cli, tmp_path, yard_path):
    add_config(yard_path, command_runner("count", child_argv("count")))
    pv = make_plan(cli, tmp_path, "count", data=False)["plan_version_id"]
    run_ids = []
    for _ in range(3):
        code, job = run_wait(cli, pv)
        assert code == 0, job
        run_ids.append(job["run_id"])
    failed = cli.ok("run", "start", "--plan", pv)["run_id"]
    cli.ok("run", "finish", failed, "--status", "failed", "--summary", '{"cost": 100}')

    result = cli("job", "aggregate", "--plan", pv, "--wait", "--json")
    assert result.exit_code == 0, result.stdout
    job = result.json
    assert job["type"] == "aggregate" and job["status"] == "succeeded"
    assert job["plan_version_id"] == pv and job["run_id"] is None
    folder = yard_path / "aggregates" / pv / job["job_id"]
    result_doc = job["result"]
    assert result_doc["runs"] == 3 and result_doc["aggregate_id"].startswith("agg")
    assert (yard_path / result_doc["path"]).resolve() == folder.resolve()

    rows = list(csv.reader((folder / "aggregate.csv").open()))
    assert rows[0] == ["run_id", "cost"]  # strings and bools are not metrics
    assert [r[0] for r in rows[1:4]] == run_ids  # oldest first; the failed run is left out
    assert [float(r[1]) for r in rows[1:4]] == [1.0, 2.0, 3.0]
    stats = {r[0]: float(r[1]) for r in rows[4:]}
    assert stats == {"mean": 2.0, "min": 1.0, "max": 3.0, "std": 1.0, "count": 3.0}
    document = json.loads((folder / "aggregate.json").read_text())
    assert document["schema_version"] == 1
    assert document["plan_version_id"] == pv and document["job_id"] == job["job_id"]
    assert document["run_count"] == 3 and document["metrics"] == ["cost"]
    assert [r["run_id"] for r in document["runs"]] == run_ids
    assert document["stats"]["cost"]["mean"] == 2.0

    shown = cli.ok("plan", "show", pv)
    assert [a["aggregate_id"] for a in shown["aggregates"]] == [result_doc["aggregate_id"]]
    listed = shown["aggregates"][0]
    assert listed["job_id"] == job["job_id"] and listed["run_count"] == 3
    assert listed["path"] == result_doc["path"]
    assert job["job_id"] in [j["job_id"] for j in shown["jobs"]]
    assert f"aggregated 3 runs into {result_doc['path']}" in cli("job", "log", job["job_id"]).stdout
    assert [j["job_id"] for j in cli.ok("job", "list", "--type", "aggregate")["items"]] == [
        job["job_id"]
    ]


def test_aggregate_without_succeeded_runs_fails_and_writes_nothing(cli, tmp_path, yard_path):
    add_config(yard_path, command_runner("bad", child_argv("fail")))
    pv = make_plan(cli, tmp_path, "bad", data=False)["plan_version_id"]
    assert run_wait(cli, pv)[0] == 7  # a failed run does not count
    queued = cli.ok("job", "aggregate", "--plan", pv)
    assert queued["status"] == "queued" and queued["type"] == "aggregate"
    assert cli.ok("worker", "--exit-when-idle")["finished"] == {"failed": 1}
    done = cli.ok("job", "show", queued["job_id"])
    assert done["status"] == "failed" and "no succeeded runs" in done["error"]

    result = cli("job", "aggregate", "--plan", pv, "--wait", "--json")
    assert result.exit_code == 7 and result.json["status"] == "failed"
    assert "no succeeded runs" in result.json["error"]
    assert f"runyard plan run {pv} --wait" in result.json["error"]  # the hint
    assert not (yard_path / "aggregates").exists()
    assert cli.ok("plan", "show", pv)["aggregates"] == []
    assert cli("job", "aggregate", "--plan", "pv-nope", "--json").exit_code == 3


# --- listing -------------------------------------------------------------------------------


def test_job_list_refuses_unknown_status_and_type(cli):
    for flag in ("--status", "--type"):
        result = cli("job", "list", flag, "nope", "--json")
        assert result.exit_code == 5
        assert result.json["error"]["code"] == "invalid"
        assert flag in result.json["error"]["message"]
    assert cli("job", "show", "job-nope", "--json").exit_code == 3
    assert cli("job", "log", "job-nope", "--json").exit_code == 3
    assert cli("plan", "run", "pv-nope", "--json").exit_code == 3
    for bad in (("--concurrency", "0"), ("--grace", "-1")):
        result = cli("worker", "--exit-when-idle", *bad, "--json")
        assert result.exit_code == 5 and bad[0] in result.json["error"]["message"]
    assert cli.ok("job", "list")["items"] == []


# --- the worker process --------------------------------------------------------------------


def test_worker_sigterm_cancels_running_jobs_after_grace(cli, tmp_path, yard_path):
    set_jobs(yard_path, heartbeat_seconds=1)
    add_config(yard_path, command_runner("slow", child_argv("sleep", "60")))
    pv = make_plan(cli, tmp_path, "slow", data=False)["plan_version_id"]
    job_ids = [cli.ok("plan", "run", pv)["job_id"] for _ in range(2)]
    proc = start_worker(yard_path, tmp_path / "out", "--concurrency", "2", "--grace", "0.5")
    pids: list[int] = []
    try:
        for job_id in job_ids:
            _, child, grandchild = running_child(cli, job_id)
            pids += [child, grandchild]
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - began < 10
        for job_id in job_ids:
            job = cli.ok("job", "show", job_id)
            assert job["status"] == "cancelled", job
            assert cli.ok("run", "show", job["run_id"])["status"] == "cancelled"
        assert_gone(*pids)
        out = (tmp_path / "out" / "0.out").read_text()
        assert "2 cancelled" in out
        assert "SIGTERM" in (tmp_path / "out" / "0.err").read_text()
    finally:
        stop_process(proc)
        for pid in pids:
            kill_quietly(pid)


def test_worker_sigterm_lets_a_short_job_finish_within_grace(cli, tmp_path, yard_path):
    add_config(yard_path, command_runner("short", child_argv("sleep", "1.5")))
    pv = make_plan(cli, tmp_path, "short", data=False)["plan_version_id"]
    job_id = cli.ok("plan", "run", pv)["job_id"]
    proc = start_worker(yard_path, tmp_path / "out", "--grace", "20")
    pids: list[int] = []
    try:
        _, child, grandchild = running_child(cli, job_id)
        pids = [child, grandchild]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        job = cli.ok("job", "show", job_id)
        assert job["status"] == "succeeded", job
        assert cli.ok("run", "show", job["run_id"])["summary"] == {"slept": 1}
    finally:
        stop_process(proc)
        for pid in pids:
            kill_quietly(pid)


# --- races ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite serialises the two writers
def test_cancel_racing_a_claim_is_not_lost(cli, tmp_path, yard):
    """``job cancel`` reads the job as queued while a worker claims it: the cancel must
    still reach the worker (or be refused), never be dropped while saying it was asked.

    The claim is made to commit between cancel's read and its update by holding the job's
    row locked in another transaction until cancel waits on it."""
    from sqlalchemy import select

    from runyard.db.tables import jobs
    from runyard.jobs import service
    from runyard.registry import jobs as job_registry

    pv = make_plan(cli, tmp_path, data=False)["plan_version_id"]
    job_id = cli.ok("plan", "run", pv)["job_id"]
    outcome: list[Any] = []
    with yard.engine.connect() as holder:
        locking = holder.begin()
        holder.execute(select(jobs.c.job_id).where(jobs.c.job_id == job_id).with_for_update())
        thread, errors = in_thread(lambda: outcome.append(service.cancel_job(yard, job_id)))
        # cancel has read the job (queued) and now waits on the row lock in its UPDATE
        wait_until(lambda: _waiting_on_a_lock(yard), 10, "cancel to wait on the row lock")
        claimed = job_registry.claim(holder, "racing-worker", True, job_id)
        assert claimed is not None and claimed.status.value == "running"
        locking.commit()
    thread.join(timeout=10)
    assert not thread.is_alive() and not errors, errors
    told = outcome[0]
    final = cli.ok("job", "show", job_id)
    # Either the cancel is refused/settled, or the running job carries the request.
    assert told.status.value != "running" or final["cancel_requested"] is True, final


def _waiting_on_a_lock(yard: runyard.Yard) -> bool:
    from sqlalchemy import text

    with yard.engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar()
    return bool(waiting)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_heartbeat_too_slow_for_lost_after_is_refused(cli, yard_path):
    """A worker that is alive must never look lost: lost_after_seconds needs at least two
    heartbeats."""
    set_jobs(yard_path, heartbeat_seconds=10, lost_after_seconds=15)
    result = cli("job", "list", "--json")
    assert result.exit_code == 5
    assert result.json["error"]["code"] == "bad_config_file"
    assert "twice heartbeat_seconds" in result.json["error"]["message"]


def test_job_log_never_waits_on_a_fifo_nor_follows_a_swapped_run_folder(cli, tmp_path, yard_path):
    """Issue 13: a runner.log that is a fifo made `job log` (and the job page) hang for
    ever; a run folder swapped for a symlink had its target read."""
    add_config(yard_path, command_runner("bad", child_argv("fail")))
    pv = make_plan(cli, tmp_path, "bad", data=False)["plan_version_id"]
    _code, job = run_wait(cli, pv)
    folder = Path(cli.ok("run", "show", job["run_id"])["path"])
    (folder / "runner.log").unlink()
    os.mkfifo(folder / "runner.log")
    done = subprocess.run(
        [sys.executable, "-m", "runyard", "--yard", str(yard_path), "job", "log", job["job_id"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "FIFO" in done.stdout and "not a regular file" in done.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "runner.log").write_text("not this run's\n")
    (folder / "runner.log").unlink()
    real = tmp_path / "moved"
    folder.rename(real)
    os.symlink(elsewhere, folder)
    log = cli("job", "log", job["job_id"]).stdout
    assert "not this run's" not in log and "replaced by a symlink" in log


def test_job_log_shows_the_tail_of_a_long_runner_log(cli, tmp_path, yard_path):
    from runyard.jobs import service

    add_config(yard_path, command_runner("bad", child_argv("fail")))
    pv = make_plan(cli, tmp_path, "bad", data=False)["plan_version_id"]
    _code, job = run_wait(cli, pv)
    folder = Path(cli.ok("run", "show", job["run_id"])["path"])
    end = b"\xff the end\n"  # not UTF-8: replaced in what is shown, never an error
    (folder / "runner.log").write_bytes(b"x" * service.LOG_TAIL_BYTES + end)
    log = cli("job", "log", job["job_id"]).stdout
    assert f"the first {len(end)} bytes left out" in log and log.rstrip().endswith("the end")
