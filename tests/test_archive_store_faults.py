"""An archive in an object store when things go wrong (issue 16), against a real
SeaweedFS: the store dies in the middle of a batch, trees of every shape go through it,
its objects are tampered with, and credentials must never reach a file."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import runyard
from runyard.config import load_settings
from runyard.lifecycle import fsops, runtar
from runyard.lifecycle.fsops import scan_tree
from tests.conftest import Cli, video_plan
from tests.helpers.seaweed import (
    AWS_VARIABLES,
    S3Server,
    _remove_sockets,
    start_server,
    stop_server,
    weed_binary,
)
from tests.trees import (
    DirSpec,
    SpecialSpec,
    build_into,
    exact_state,
    hostile_trees,
    make_outside,
    remove,
)

OLD = time.time() - 3 * 86400
GUARDS_OFF = ("--keep-recent-minutes", "0", "--keep-last-runs", "0")


def _age(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (OLD, OLD), follow_symlinks=False)
    os.utime(root, (OLD, OLD))


def _yard(tmp_path: Path, endpoint: str, store: str) -> dict[str, Any]:
    """A video yard whose batches go to ``store``, with one plan to start runs from."""
    root = tmp_path / "yard"
    runyard.init_yard(root, preset="video")
    toml = root / "runyard.toml"
    toml.write_text(
        toml.read_text() + f'\n[archive]\nendpoint_url = "{endpoint}"\nstore = "{store}"\n'
    )
    cli = Cli(root)
    plan_id = video_plan(cli, tmp_path)
    settings_ = load_settings(root)
    return {"root": root, "cli": cli, "runs": settings_.runs_root, "plan": plan_id}


def _legacy_runs(yard: dict[str, Any], count: int, size: int) -> dict[str, str]:
    """``count`` old legacy folders (numeric names) of ``size`` bytes; their digests."""
    digests = {}
    for n in range(count):
        folder = yard["runs"] / str(100 + n)
        (folder / "frames").mkdir(parents=True)
        (folder / "frames" / "a.bin").write_bytes(os.urandom(size))
        (folder / "notes.txt").write_text(f"run {n}")
        _age(folder)
        digests[folder.name] = scan_tree(folder).digest
    return digests


def _keys(server: S3Server, bucket: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return found


# --- a store that goes away in the middle of a batch -------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[S3Server]:
    """A SeaweedFS of this test alone: the test kills it."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("S3 STORE TESTS NOT RUN: the `weed` binary is missing")
    folders = iter(range(100))
    server = start_server(weed, lambda: _new_folder(tmp_path / f"weed-{next(folders)}"))
    try:
        yield server
    finally:
        stop_server(server)


def _new_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _restart(server: S3Server) -> S3Server:
    """The same ``weed server`` again: same argv (data folder, ports), same folder; the
    data it had stays. RuntimeError when it does not answer within 30 s."""
    import boto3
    from botocore.config import Config

    argv = [str(a) for a in server.process.args]  # type: ignore[union-attr]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    _remove_sockets(server.ports)
    with (server.folder / "weed.log").open("ab") as out:
        process = subprocess.Popen(
            argv,
            cwd=server.folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    again = S3Server(server.endpoint_url, process, server.ports, server.folder)
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=again.credentials()[0],
        aws_secret_access_key=again.credentials()[1],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_buckets()
            return again
        except Exception as exc:
            if time.monotonic() > deadline or process.poll() is not None:
                stop_server(again)
                raise RuntimeError(f"the restarted SeaweedFS did not answer: {exc}") from exc
            time.sleep(0.5)


def _port_answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _runyard_env(server: S3Server, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARIABLES}
    return {**env, **server.env(), **extra}


@pytest.mark.slow
def test_a_store_that_goes_away_mid_batch_fails_the_rest_in_place(own_server, tmp_path):
    server = own_server
    bucket = server.make_bucket("mid")
    yard = _yard(tmp_path, server.endpoint_url, f"s3://{bucket}/cold")
    digests = _legacy_runs(yard, 12, 2 * 1024 * 1024)
    log = tmp_path / "points.log"
    argv = [sys.executable, "-m", "runyard", "--yard", str(yard["root"])]
    args = ["archive", "--all", "--legacy", "--run", "--yes", "--json"]
    child = subprocess.Popen(
        [*argv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_runyard_env(server, RUNYARD_TEST_CRASH_LOG=str(log)),
    )
    try:
        deadline = time.monotonic() + 60
        while "archive:entry-moved" not in (log.read_text() if log.exists() else ""):
            assert child.poll() is None, "archive ended before its first run was moved"
            assert time.monotonic() < deadline, "no run was moved within 60 s"
            time.sleep(0.01)
        stop_server(server)  # SIGKILL: the store stops answering at once
        out, err = child.communicate(timeout=120)  # its retries, but no hang
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 4, err
    assert "Traceback" not in err
    doc = json.loads(out)
    by_status: dict[str, list[dict[str, Any]]] = {}
    for entry in doc["entries"]:
        by_status.setdefault(entry["status"], []).append(entry)
    assert set(by_status) <= {"moved", "failed"}, set(by_status)
    assert by_status.get("moved") and by_status.get("failed"), set(by_status)
    assert doc["status"] == "failed" and doc["summary"]["failed"] == len(by_status["failed"])
    cli, runs, batch = yard["cli"], yard["runs"], doc["batch_id"]
    for entry in by_status["failed"]:
        run_id = entry["run_id"]
        assert entry["error"] and ("store" in entry["error"] or "127.0.0.1" in entry["error"])
        assert scan_tree(runs / run_id).digest == digests[run_id], run_id  # untouched
        assert not os.path.lexists(fsops.tombstone_path(runs / run_id))
        assert cli.ok("run", "show", run_id)["location"] == "active"
    for entry in by_status["moved"]:
        assert not os.path.lexists(runs / entry["run_id"])
        shown = cli.ok("run", "show", entry["run_id"])
        assert shown["location"] == "archived" and shown["archive_batch_id"] == batch

    try:
        server = _restart(server)
    except RuntimeError as exc:
        pytest.skip(f"SeaweedFS could not be restarted on its data folder: {exc}")
    try:
        env = _runyard_env(server)
        again = subprocess.run(
            [*argv, *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert again.returncode == 0, again.stderr
        rest = {e["run_id"] for e in json.loads(again.stdout)["entries"]}
        assert rest == {e["run_id"] for e in by_status["failed"]}
        assert not any(os.path.lexists(runs / r) for r in digests)
        checked = subprocess.run(
            [*argv, "check", "--json"], capture_output=True, text=True, env=env, check=False
        )
        assert checked.returncode == 0, checked.stdout
        # Every run of both batches comes back exactly.
        for report in (doc["report_path"], json.loads(again.stdout)["report_path"]):
            done = subprocess.run(
                [*argv, "restore", "--report", report, "--run", "--json"],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            assert done.returncode == 0, done.stdout
        assert {r: scan_tree(runs / r).digest for r in digests} == digests
    finally:
        stop_server(server)


# --- trees of every shape through the store ------------------------------------------------------


@pytest.fixture
def store_yard(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> dict[str, Any]:
    yard = _yard(tmp_path, s3_server.endpoint_url, f"s3://{s3_bucket}/t")
    yard["outside"] = tmp_path / "outside"
    make_outside(yard["outside"])
    yard["bucket"] = s3_bucket
    return yard


def _start_run(yard: dict[str, Any], run_id: str) -> Path:
    cli = yard["cli"]
    cli.ok("run", "start", "--plan", yard["plan"], "--run-id", run_id)
    cli.ok("run", "finish", run_id, "--status", "succeeded")
    return yard["runs"] / run_id


_examples = iter(range(10**6))


def _keepable(spec: DirSpec) -> bool:
    """No FIFO or socket anywhere (a tar refuses those: test_runtar covers it), and no
    child named like the manifest the run already has."""
    if "run.json" in spec.children:
        return False
    stack: list[object] = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, SpecialSpec):
            return False
        if isinstance(node, DirSpec):
            stack.extend(node.children.values())
    return True


@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=hostile_trees().filter(_keepable))
def test_hostile_trees_round_trip_through_the_store(store_yard, spec: DirSpec):
    """A run of any shape (names that are not UTF-8, links of every kind, modes, mtimes,
    xattrs, hard links, deep and empty folders) is archived to the store and restored
    exactly."""
    run_id = f"tree-{next(_examples)}"
    folder = _start_run(store_yard, run_id)
    try:
        build_into(spec, folder, store_yard["outside"])
        before, digest = exact_state(folder), scan_tree(folder).digest
        done = store_yard["cli"]("archive", "--run-id", run_id, *GUARDS_OFF, "--run", "--json")
        assert done.exit_code == 0, done.stdout
        assert [e["status"] for e in done.json["entries"]] == ["moved"]
        assert not os.path.lexists(folder)
        store_yard["cli"].ok("restore", "--run-id", run_id, "--run")
        assert exact_state(folder) == before
        assert scan_tree(folder).digest == digest
    finally:
        remove(folder)


# --- a tampered bucket ----------------------------------------------------------------------------


def _archived_three(yard: dict[str, Any]) -> dict[str, Any]:
    digests = _legacy_runs(yard, 3, 4096)
    doc = yard["cli"].ok("archive", "--all", "--legacy", "--run", "--yes")
    assert {e["status"] for e in doc["entries"]} == {"moved"}
    return {"doc": doc, "digests": digests}


def _no_unpacking_left(runs: Path) -> None:
    assert not [p for p in runs.iterdir() if p.name.startswith(runtar.TEMP_PREFIX)]


def _flip_a_content_byte(tar: bytes) -> bytes:
    """The same tar with one byte of its last file's content changed: still a valid tar
    of the same size, whose SHA-256 and tree differ."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as opened:
        members = opened.getmembers()
    last = [m for m in members if m.isfile() and m.size > 0][-1]
    data = bytearray(tar)
    data[last.offset_data] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("how", ["noise", "one_byte"])
def test_an_object_overwritten_with_other_bytes_is_refused(store_yard, s3_server, how):
    archived = _archived_three(store_yard)
    entries = archived["doc"]["entries"]
    bad, good = entries[0], entries[1:]
    client, bucket = s3_server.client(), store_yard["bucket"]
    original = client.get_object(Bucket=bucket, Key=bad["object_key"])["Body"].read()
    other = os.urandom(len(original)) if how == "noise" else _flip_a_content_byte(original)
    assert len(other) == len(original) and other != original
    client.put_object(Bucket=bucket, Key=bad["object_key"], Body=other)
    cli, runs = store_yard["cli"], store_yard["runs"]
    done = cli("restore", "--run-id", bad["run_id"], "--run", "--json")
    assert done.exit_code == 4, done.stdout
    (error,) = [e["error"] for e in done.json["entries"] if e["run_id"] == bad["run_id"]]
    expected = "not a whole tar" if how == "noise" else "sha-256"
    assert expected in error.lower() and "nothing was restored" in error, error
    assert not os.path.lexists(runs / bad["run_id"])
    _no_unpacking_left(runs)
    assert cli.ok("run", "show", bad["run_id"])["location"] == "archived"
    assert bad["object_key"] in _keys(s3_server, bucket)  # kept for a person to look at
    for entry in good:
        cli.ok("restore", "--run-id", entry["run_id"], "--run")
        assert scan_tree(runs / entry["run_id"]).digest == archived["digests"][entry["run_id"]]


def _hostile_tar(kind: str, outside: Path) -> bytes:
    """A tar whose members try to leave the run: ``..``, an absolute name, or a file
    written through a symlink member that points outside."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add_file(name: str) -> None:
            data = b"escaped"
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))

        root = tarfile.TarInfo(".")
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(root)
        if kind == "dotdot":
            add_file("../escape")
        elif kind == "absolute":
            add_file(str(outside / "escape"))
        else:
            link = tarfile.TarInfo("evil")
            link.type, link.linkname = tarfile.SYMTYPE, str(outside)
            tar.addfile(link)
            add_file("evil/escape")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "through_symlink"])
@pytest.mark.parametrize("report_too", [False, True])
def test_a_hostile_tar_in_the_bucket_writes_nothing_outside(
    store_yard, s3_server, kind, report_too
):
    """An object replaced by a tar that tries to escape is refused, and nothing lands
    outside the run, even when the local report was changed to the hostile tar's size
    and SHA-256 (then only the member checks stand in the way)."""
    archived = _archived_three(store_yard)
    doc = archived["doc"]
    victim = doc["entries"][0]
    outside = store_yard["outside"]
    hostile = _hostile_tar(kind, outside)
    s3_server.client().put_object(
        Bucket=store_yard["bucket"], Key=victim["object_key"], Body=hostile
    )
    if report_too:
        path = Path(doc["report_path"])
        report = json.loads(path.read_text())
        for entry in report["entries"]:
            if entry["run_id"] == victim["run_id"]:
                entry["tar_bytes"] = len(hostile)
                entry["tar_sha256"] = hashlib.sha256(hostile).hexdigest()
        path.write_text(json.dumps(report))
    cli, runs = store_yard["cli"], store_yard["runs"]
    before_outside = exact_state(outside)
    done = cli("restore", "--run-id", victim["run_id"], "--run", "--json")
    assert done.exit_code != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert exact_state(outside) == before_outside
    for place in (runs.parent / "escape", runs / "escape", outside / "escape"):
        assert not os.path.lexists(place), place
    assert not os.path.lexists(runs / victim["run_id"])
    _no_unpacking_left(runs)
    # Refused while unpacking, or (the size differs) before: the run stays archived.
    assert cli.ok("run", "show", victim["run_id"])["location"] == "archived"


def test_an_object_of_another_size_leaves_the_run_archived_and_restorable(store_yard, s3_server):
    archived = _archived_three(store_yard)
    victim = archived["doc"]["entries"][0]
    client, bucket = s3_server.client(), store_yard["bucket"]
    original = client.get_object(Bucket=bucket, Key=victim["object_key"])["Body"].read()
    client.put_object(Bucket=bucket, Key=victim["object_key"], Body=original[:-512])
    cli, runs = store_yard["cli"], store_yard["runs"]
    done = cli("restore", "--run-id", victim["run_id"], "--run", "--json")
    assert done.exit_code == 4, done.stdout
    assert not os.path.lexists(runs / victim["run_id"])
    # The object is put back (from a copy, bucket versioning): the run comes back by id.
    client.put_object(Bucket=bucket, Key=victim["object_key"], Body=original)
    cli.ok("restore", "--run-id", victim["run_id"], "--run")
    assert scan_tree(runs / victim["run_id"]).digest == archived["digests"][victim["run_id"]]
    shown = cli.ok("run", "show", victim["run_id"])
    assert shown["location"] == "active"


# --- credentials never reach a file ---------------------------------------------------------------


def _files_holding(root: Path, secrets: list[bytes]) -> list[str]:
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                data = path.read_bytes()
                if any(s in data for s in secrets):
                    found.append(str(path))
    return found


def test_credentials_never_reach_a_report_a_log_or_the_config(store_yard, s3_server):
    access_key, secret_key = s3_server.credentials()
    assert os.environ["AWS_ACCESS_KEY_ID"] == access_key  # the run used them from the env
    archived = _archived_three(store_yard)
    cli = store_yard["cli"]
    out = cli("restore", "--run-id", archived["doc"]["entries"][0]["run_id"], "--run", "--json")
    assert out.exit_code == 0, out.stdout
    secrets = [access_key.encode(), secret_key.encode()]
    assert access_key not in out.stdout and secret_key not in out.stdout
    assert _files_holding(store_yard["root"], secrets) == []
    client, bucket = s3_server.client(), store_yard["bucket"]
    for key in _keys(s3_server, bucket):
        if not key.endswith(".tar"):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert not any(s in body for s in secrets), key
