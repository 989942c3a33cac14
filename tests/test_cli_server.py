"""The CLI with ``--server``: the same output and exit codes as the local command on the
same yard, run as a fresh process on "another machine" (no RUNYARD_YARD, its own cwd and
HOME) against a real ``runyard serve`` (the session's, from test_remote_client)."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.test_remote_client import (  # noqa: F401  (served: the fixture)
    Served,
    clean_env,
    digests,
    hostile_tree,
    runyard_argv,
    served,
)


@pytest.fixture
def cli(served: Served, tmp_path: Path):  # noqa: F811
    """``cli(*args, remote=True)``: a runyard process, remote (--server) or local (--yard)."""
    home = tmp_path / "elsewhere"
    home.mkdir()
    env = clean_env(home)

    def run(*args: str, remote: bool = True, stdin: str | None = None):
        where = ["--server", served.url] if remote else ["--yard", str(served.yard)]
        return subprocess.run(
            [*runyard_argv(), *where, *args],
            env=env,
            cwd=home,
            capture_output=True,
            input=stdin.encode() if stdin is not None else None,
            timeout=60,
            check=False,
        )

    return run


def as_json(done: subprocess.CompletedProcess[bytes]) -> dict:
    return json.loads(done.stdout)


def make_plan(cli, tmp_path: Path) -> str:
    name = f"s-{secrets.token_hex(4)}"
    assert cli("scenario", "add", name, "--json").returncode == 0
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": name}))
    added = as_json(cli("config", "add", str(config), "--name", "c", "--json"))
    assert added["created"] is True
    again = as_json(cli("config", "add", str(config), "--json"))
    assert again["created"] is False
    plan = cli(
        "plan", "create", "--scenario", name, "--config", added["config_version_id"],
        "--param", "k=3", "--label", name, "--json",
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    return str(as_json(plan)["plan_version_id"])


def test_runs_started_and_finished_remotely_read_the_same_both_ways(cli, tmp_path):
    plan = make_plan(cli, tmp_path)
    started = cli("run", "start", "--plan", plan, "--group", "G/1", "--tag", "a=b", "--json")
    assert started.returncode == 0, started.stderr
    run_id = as_json(started)["run_id"]
    finished = cli(
        "run", "finish", run_id, "--status", "succeeded", "--summary", '{"fill_rate": 0.5}'
    )
    assert finished.returncode == 0, finished.stderr
    assert b"fill_rate" in finished.stdout
    for args in (
        ["run", "show", run_id, "--json"],
        ["run", "show", run_id],
        ["run", "list", "--plan", plan, "--json"],
        ["run", "list", "--plan", plan],
        ["plan", "show", plan, "--json"],
        ["plan", "list", "--json"],
        ["job", "list", "--json"],
        ["check", "--json"],
    ):
        remote, local = cli(*args), cli(*args, remote=False)
        assert (remote.returncode, remote.stdout) == (local.returncode, local.stdout), args


def test_pin_unpin_and_archive_dry_run_through_the_api(cli, tmp_path):
    plan = make_plan(cli, tmp_path)
    run_id = as_json(cli("run", "start", "--plan", plan, "--json"))["run_id"]
    assert as_json(cli("run", "pin", run_id, "--json"))["pinned"] is True
    assert as_json(cli("run", "unpin", run_id, "--json"))["pinned"] is False
    dry = cli("archive", "--run-id", run_id, "--json")
    assert dry.returncode == 0, dry.stderr
    report = as_json(dry)
    assert report["kind"] == "archive" and report["batch_id"] is None
    assert [s["run_id"] for s in report["skips"]] == [run_id]  # running: never archived


@pytest.mark.parametrize(
    "args",
    [
        ["run", "show", "20260101T000000.000000Z-abcdef"],
        ["run", "pin", "20260101T000000.000000Z-abcdef"],
        ["plan", "show", "pv-nope"],
        ["job", "show", "job-nope"],
        ["run", "start", "--plan", "pv-nope"],
    ],
)
def test_unknown_ids_exit_3_with_the_same_error(cli, args):
    remote, local = cli(*args, "--json"), cli(*args, "--json", remote=False)
    assert remote.returncode == local.returncode == 3
    assert as_json(remote)["error"]["code"] == as_json(local)["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "args",
    [
        ["init", "/tmp/x"],
        ["db", "upgrade"],
        ["backup"],
        ["serve"],
        ["worker"],
        ["run", "import", "--all"],
    ],
)
def test_yard_local_commands_say_so_given_a_server(cli, args):
    done = cli(*args)
    assert done.returncode == 5
    err = done.stderr.decode()
    assert "yard's own machine" in err and args[0] in err
    assert "Traceback" not in err


def test_run_upload_sends_a_folder_as_it_is(cli, served, tmp_path):  # noqa: F811
    src = hostile_tree(tmp_path)
    plan = make_plan(cli, tmp_path)
    run_id = as_json(cli("run", "start", "--plan", plan, "--json"))["run_id"]
    done = cli("run", "upload", run_id, str(src), str(src / "a.txt"), "--dest", "out", "--json")
    assert done.returncode == 0, done.stderr
    assert [u["dest"] for u in as_json(done)["uploaded"]] == ["out/results", "out/a.txt"]
    folder = served.yard / "runs" / run_id
    assert digests(folder / "out" / "results") == digests(src)
    same = cli("run", "upload", run_id, str(src / "a.txt"), "--dest", "out/a.txt")
    assert same.returncode == 4  # exists, even with the same bytes: a conflict, as locally
    (src / "a.txt").write_text("changed\n")
    again = cli("run", "upload", run_id, str(src / "a.txt"), "--dest", "out/a.txt")
    assert again.returncode == 4
    local = cli("run", "upload", run_id, str(src / "a.txt"), "--dest", "out/a.txt", remote=False)
    assert local.returncode == 4
    replaced = cli("run", "upload", run_id, str(src / "a.txt"), "--dest", "out/a.txt", "--replace")
    assert replaced.returncode == 0, replaced.stderr


def test_an_unreachable_server_is_exit_6_and_no_traceback(cli, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [*runyard_argv(), "--server", f"http://127.0.0.1:{port}", "run", "list"],
        env=clean_env(tmp_path),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 6
    assert b"cannot reach" in done.stderr and b"Traceback" not in done.stderr
