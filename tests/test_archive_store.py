"""archive → restore → recover with an object store (issue 16), against a real SeaweedFS:
each run goes up as one tar, verified from the store before its folder goes; restore
brings back the exact tree; the report and the log are copied beside the runs; a store
that cannot be used is found before anything moves; a crash is settled by ``recover``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import runyard
from runyard.lifecycle import fsops, storemoves
from runyard.lifecycle.fsops import scan_tree
from runyard.registry import lifecycle as registry
from tests.conftest import tree_snapshot
from tests.helpers.seaweed import S3Server
from tests.test_lifecycle import OLD, ws  # noqa: F401  (the video workspace fixture)
from tests.test_lifecycle_crash import runner  # noqa: F401  (the fork server)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _use_endpoint(ws: dict, s3_server: S3Server, store: str | None = None) -> None:  # noqa: F811
    toml = ws["root"] / "runyard.toml"
    lines = ["", "[archive]", f'endpoint_url = "{s3_server.endpoint_url}"']
    if store is not None:
        lines.append(f'store = "{store}"')
    toml.write_text(toml.read_text() + "\n".join(lines) + "\n")


def _keys(s3_server: S3Server, bucket: str) -> dict[str, int]:
    client = s3_server.client("admin")
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return found


def test_archive_to_a_store_then_restore_is_exact(ws, s3_server, s3_bucket):  # noqa: F811
    _use_endpoint(ws, s3_server)
    runs, cli = ws["runs"], ws["cli"]
    scans = {p.name: scan_tree(p).digest for p in runs.iterdir()}
    store = f"s3://{s3_bucket}/yard-a"
    dry = cli.ok("archive", "--all", "--to", store)
    assert dry["store"] == store and dry["entries"]
    assert _keys(s3_server, s3_bucket) == {}  # a dry run sends nothing

    doc = cli.ok("archive", "--all", "--to", store, "--run", "--yes", "--reason", "cold")
    moved = [e for e in doc["entries"] if e["status"] == "moved"]
    assert moved and doc["status"] == "complete" and doc["store"] == store
    batch = doc["batch_id"]
    keys = _keys(s3_server, s3_bucket)
    for entry in moved:
        key = f"yard-a/{batch}/{entry['run_id']}.tar"
        assert entry["method"] == "store" and entry["object_key"] == key
        assert entry["dst"] == f"s3://{s3_bucket}/{key}"
        assert keys[key] == entry["tar_bytes"] and len(entry["tar_sha256"]) == 64
        assert entry["digest"] == scans[entry["run_id"]]
        assert not (runs / entry["run_id"]).exists()
        shown = cli.ok("run", "show", entry["run_id"])
        assert shown["location"] == "archived" and shown["archive_batch_id"] == batch
    # The bucket alone is enough to restore: the report and the log are beside the runs.
    assert f"yard-a/{batch}/archive_report.json" in keys
    assert f"yard-a/{batch}/CLEANUP_LOG.md" in keys
    copied = s3_server.client("admin").get_object(
        Bucket=s3_bucket, Key=f"yard-a/{batch}/archive_report.json"
    )
    assert json.loads(copied["Body"].read())["status"] == "complete"
    # The batch's local folder keeps the report (and the journal of verified objects).
    local = ws["root"] / "video" / "_archive" / batch
    assert {p.name for p in local.iterdir()} == {"archive_report.json", storemoves.JOURNAL_NAME}

    report = doc["report_path"]
    dry_restore = cli.ok("restore", "--report", report)
    assert {e["status"] for e in dry_restore["entries"]} == {"pending"}
    restored = cli.ok("restore", "--report", report, "--run")
    assert restored["restored"] == len(moved)
    for entry in moved:
        assert scan_tree(runs / entry["run_id"]).digest == scans[entry["run_id"]]
        assert cli.ok("run", "show", entry["run_id"])["location"] == "active"
    left = _keys(s3_server, s3_bucket)
    assert not any(k.endswith(".tar") for k in left)  # restored runs left the bucket
    assert any(k.startswith(f"yard-a/{batch}/restore_report_") for k in left)
    assert ws["project"].is_dir()


def test_the_configured_store_is_used_and_partial_restore_works(
    ws,  # noqa: F811
    s3_server,
    s3_bucket,
):
    _use_endpoint(ws, s3_server, store=f"s3://{s3_bucket}/cfg")
    cli = ws["cli"]
    doc = cli.ok("archive", "--all", "--legacy", "--run", "--yes")
    assert doc["store"] == f"s3://{s3_bucket}/cfg"
    one = doc["entries"][0]["run_id"]
    cli.ok("restore", "--run-id", one, "--run")
    assert (ws["runs"] / one).is_dir()
    others = [e["run_id"] for e in doc["entries"][1:]]
    assert all(not (ws["runs"] / r).exists() for r in others)
    # Never overwritten: a folder in the way is a conflict; the object stays.
    (ws["runs"] / others[0]).mkdir()
    again = cli("restore", "--run-id", others[0], "--run", "--json")
    assert again.exit_code == 4
    assert f"cfg/{doc['batch_id']}/{others[0]}.tar" in _keys(s3_server, s3_bucket)


@pytest.mark.parametrize(
    "problem, code",
    [("unreachable", 6), ("missing_bucket", 4), ("wrong_key", 4), ("read_only", 4)],
)
def test_a_store_that_cannot_be_used_is_found_before_anything_moves(
    ws,  # noqa: F811
    s3_server,
    s3_bucket,
    monkeypatch,
    problem,
    code,
):
    _use_endpoint(ws, s3_server)
    store = f"s3://{s3_bucket}/p"
    if problem == "unreachable":
        toml = ws["root"] / "runyard.toml"
        toml.write_text(toml.read_text().replace(s3_server.endpoint_url, "http://127.0.0.1:9"))
    elif problem == "missing_bucket":
        store = "s3://no-such-bucket-here/p"
        s3_server.use(monkeypatch, "limited")  # an admin's PUT would make the bucket
    elif problem == "wrong_key":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    else:
        s3_server.use(monkeypatch, "reader")
    before = tree_snapshot(ws["root"] / "video")
    done = ws["cli"]("archive", "--all", "--to", store, "--run", "--yes", "--json")
    assert done.exit_code == code, done.stderr
    assert "Traceback" not in done.stderr
    assert tree_snapshot(ws["root"] / "video") == before
    assert not (ws["root"] / "video" / "_archive").exists() or not any(
        (ws["root"] / "video" / "_archive").iterdir()
    )


def test_retention_archives_to_the_configured_store(ws, s3_server, s3_bucket, monkeypatch):  # noqa: F811
    _use_endpoint(ws, s3_server, store=f"s3://{s3_bucket}/ret")
    cli = ws["cli"]
    active = len(cli.ok("run", "list", "--location", "active", "--limit", "1000")["items"])
    monkeypatch.setenv("RUNYARD_MAX_RUNS", str(active - 2))
    done = cli.ok("retention", "--run")
    moved = [e for e in done["entries"] if e["status"] == "moved"]
    assert len(moved) == 2 and done["store"] == f"s3://{s3_bucket}/ret"
    keys = _keys(s3_server, s3_bucket)
    for entry in moved:
        assert keys[entry["object_key"]] == entry["tar_bytes"]
        assert not (ws["runs"] / entry["run_id"]).exists()


def test_restore_from_the_ui_works_for_a_store_batch(ws, s3_server, s3_bucket):  # noqa: F811
    from tests.helpers.ui import post_form, ui_client

    _use_endpoint(ws, s3_server, store=f"s3://{s3_bucket}/ui")
    runs = ws["runs"]
    scans = {p.name: scan_tree(p).digest for p in runs.iterdir()}
    doc = ws["cli"].ok("archive", "--all", "--legacy", "--run", "--yes")
    batch, chosen = doc["batch_id"], doc["entries"][0]["run_id"]
    with ui_client(ws["root"]) as client:
        page = client.get(f"/ui/archives/{batch}").text
        assert f"s3://{s3_bucket}/ui" in page
        preview = post_form(client, f"/ui/archives/{batch}/restore/preview", {"run_ids": chosen})
        assert "1 to restore, 0 conflicts" in preview.text
        done = post_form(client, f"/ui/archives/{batch}/restore", {"run_ids": chosen})
        assert done.status_code in (302, 303), done.text
        assert "restored 1 run" in client.get(done.headers["location"]).text
    assert scan_tree(runs / chosen).digest == scans[chosen]
    assert f"ui/{batch}/{chosen}.tar" not in _keys(s3_server, s3_bucket)


def test_recover_deletes_objects_a_restore_left_behind(ws, s3_server, s3_bucket):  # noqa: F811
    """Restored runs' objects are deleted in batches after the runs are back; a crash in
    between leaves a restore report that says ``restored`` and objects still in the
    bucket: ``recover`` deletes them (and nothing else)."""
    _use_endpoint(ws, s3_server, store=f"s3://{s3_bucket}/left")
    cli, client = ws["cli"], s3_server.client("admin")
    doc = cli.ok("archive", "--all", "--legacy", "--run", "--yes")
    first, second = doc["entries"][0], doc["entries"][1]
    kept = client.get_object(Bucket=s3_bucket, Key=first["object_key"])["Body"].read()
    done = cli.ok("restore", "--run-id", first["run_id"], "--run")
    assert first["object_key"] not in _keys(s3_server, s3_bucket)
    # As if killed after the report said restored, before the objects were deleted:
    client.put_object(Bucket=s3_bucket, Key=first["object_key"], Body=kept)
    report = Path(done["report_path"])
    state = json.loads(report.read_text())
    state["status"] = "in_progress"
    report.write_text(json.dumps(state))
    cli.ok("recover")
    keys = _keys(s3_server, s3_bucket)
    assert first["object_key"] not in keys and second["object_key"] in keys
    assert scan_tree(ws["runs"] / first["run_id"]).digest == first["digest"]
    assert json.loads(report.read_text())["status"] == "recovered"


EXTRA_LEGACY = ("193", "api_upload_2", "jinsei_04")


def _locations(root: Path, run_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    with runyard.open_yard(root) as yard, yard.read() as conn:
        return registry.locations(conn, run_ids)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["archive", "restore"])
def test_a_killed_store_move_is_settled_by_recover(
    ws,  # noqa: F811
    s3_server,
    s3_bucket,
    tmp_path,
    kind,
    runner,  # noqa: F811
):
    """SIGKILL at every crash point (more than 50) of a store archive, or restore, of
    seven runs, then ``recover``: every run exactly once, in the runs root or verified in
    the bucket (never both, never neither), identical, and the registry agreeing; every
    few points, the same command then completes and ``check`` is clean.

    The commands are forked from the crash tests' fork server (real processes, killed
    with SIGKILL, without a ``python -m runyard`` start-up each); the last point is also
    killed in a ``python -m runyard``."""
    _use_endpoint(ws, s3_server, store=f"s3://{s3_bucket}/crash")
    runs = ws["runs"]
    for name in EXTRA_LEGACY:  # seven runs: more than 50 crash points each way
        (runs / name / "sub").mkdir(parents=True)
        (runs / name / "sub" / "data.bin").write_bytes(os.urandom(4096))
        os.symlink("/nowhere/at/all", runs / name / "dangling")
        tree = (runs / name / "sub" / "data.bin", runs / name / "dangling", runs / name / "sub")
        for path in (*tree, runs / name):
            os.utime(path, (OLD, OLD), follow_symlinks=False)
    legacy = ["192", "CH02-special", "api_upload_1", "jinsei_03", *EXTRA_LEGACY]
    scans = {r: scan_tree(runs / r).digest for r in legacy}
    yard = ["--yard", str(ws["root"])]
    archive_args = [*yard, "archive", "--all", "--legacy", "--run", "--yes", "--json"]
    scratch = tmp_path / "out"
    report = None
    if kind == "restore":
        done = runner(archive_args, scratch, "archive")
        assert done.returncode == 0, done.stderr
        report = done.json()["report_path"]
    args = archive_args if kind == "archive" else [*yard, "restore", "--report", report, "--run"]
    pristine = tmp_path / "pristine"
    shutil.copytree(ws["root"], pristine, symlinks=True)
    client = s3_server.client("admin")
    bucket_then = {
        key: client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        for key in _keys(s3_server, s3_bucket)
    }

    def reset_bucket() -> None:  # the bucket as it was, with the yard
        for key in _keys(s3_server, s3_bucket):
            client.delete_object(Bucket=s3_bucket, Key=key)
        for key, body in bucket_then.items():
            client.put_object(Bucket=s3_bucket, Key=key, Body=body)

    counted = runner(args, scratch, "count", log=True)
    assert counted.returncode == 0, counted.stderr
    points = counted.points
    assert len(points) > 50 and any("store-" in p for p in points)
    for n in range(1, len(points) + 1):
        shutil.rmtree(ws["root"])
        shutil.copytree(pristine, ws["root"], symlinks=True)
        reset_bucket()
        real = n == len(points)
        killed = runner(args, scratch, f"kill-{n}", crash_at=n, real=real)
        assert killed.returncode == -9, (n, killed.stderr)
        settled = runner([*yard, "recover", "--json"], scratch, f"recover-{n}", real=real)
        assert settled.returncode == 0, (n, points[n - 1], settled.stderr)
        where = _locations(ws["root"], legacy)
        keys = _keys(s3_server, s3_bucket)
        for run_id in legacy:
            at = (n, points[n - 1], run_id)
            assert not os.path.lexists(fsops.tombstone_path(runs / run_id)), at
            assert not any(p.name.startswith(".restoring-") for p in runs.iterdir()), at
            location, batch = where[run_id]
            in_bucket = f"crash/{batch}/{run_id}.tar" in keys
            if (runs / run_id).is_dir():
                assert scan_tree(runs / run_id).digest == scans[run_id], at
                assert location == "active" and not any(
                    k.endswith(f"/{run_id}.tar") for k in keys
                ), at
            else:
                assert location == "archived" and in_bucket, at
        if n % 6 == 0 or n == len(points):  # the yard ends consistent
            again = runner(args, scratch, f"again-{n}")
            assert again.returncode in (0, 4), (n, again.stderr)
            assert runner([*yard, "check"], scratch, f"check-{n}").returncode == 0, n


def test_recover_aborts_the_multipart_upload_of_a_killed_archive(
    ws,  # noqa: F811
    s3_server,
    s3_bucket,
    tmp_path,
    runner,  # noqa: F811
):
    """A run bigger than a part goes up as a multipart upload; an archive SIGKILLed with
    its parts sent but the upload not completed leaves an incomplete upload (invisible
    in listings, but stored and billed): ``recover`` aborts it, and the run stays whole
    in the runs root, active, with no object."""
    _use_endpoint(ws, s3_server, store=f"s3://{s3_bucket}/multi")
    run_id = "192"  # a legacy run of the workspace
    big = ws["runs"] / run_id / "render.bin"
    big.write_bytes(os.urandom(20 << 20))  # more than one 16 MiB part
    os.utime(big, (OLD, OLD))
    os.utime(big.parent, (OLD, OLD))
    scan = scan_tree(ws["runs"] / run_id).digest
    yard = ["--yard", str(ws["root"])]
    args = [*yard, "archive", "--run-id", run_id, "--run", "--json"]
    dry = runner([*yard, "archive", "--run-id", run_id, "--json"], tmp_path, "dry")
    assert [e["run_id"] for e in dry.json()["entries"]] == [run_id], dry.stdout
    pristine = tmp_path / "pristine"
    shutil.copytree(ws["root"], pristine, symlinks=True)
    counted = runner(args, tmp_path, "count", log=True)
    assert counted.returncode == 0, counted.stderr
    labels = [p.split(" ", 1)[1] for p in counted.points]
    shutil.rmtree(ws["root"])
    shutil.copytree(pristine, ws["root"], symlinks=True)
    client = s3_server.client("admin")
    for key in _keys(s3_server, s3_bucket):
        client.delete_object(Bucket=s3_bucket, Key=key)

    at = labels.index("store-archive:tar-sent") + 1  # parts sent, not completed
    killed = runner(args, tmp_path, "killed", crash_at=at)
    assert killed.returncode == -9, killed.stderr
    pending = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads") or []
    assert [u["Key"].rsplit("/", 1)[1] for u in pending] == [f"{run_id}.tar"]

    settled = runner([*yard, "recover", "--json"], tmp_path, "recover")
    assert settled.returncode == 0, settled.stderr
    assert not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert not any(k.endswith(f"/{run_id}.tar") for k in _keys(s3_server, s3_bucket))
    assert scan_tree(ws["runs"] / run_id).digest == scan
    assert _locations(ws["root"], [run_id])[run_id][0] == "active"
