"""``purge`` and ``check`` of archive batches that live in an object store, against a real
S3 server (SeaweedFS, tests/helpers/seaweed.py).

The batches are built by hand, as the archive leaves them: each run a PAX tar object
``PREFIX/<batch>/<run_id>.tar`` (``runtar``), its folder gone, the report in
``<archive_root>/<batch>/`` with ``store`` set and a copy (and a log object) in the
bucket, the registry saying ``archived``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard.lifecycle import purge as purge_module
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    ArchiveEntry,
    ArchiveReport,
    write_report,
)
from runyard.lifecycle.runtar import write_run_tar
from runyard.lifecycle.stores import (
    EXECUTION_LOG_OBJECT,
    batch_object_key,
    open_batch_store,
    run_object_key,
)
from runyard.models import RunLocation
from runyard.registry.lifecycle import set_locations
from runyard.store import StoreUnreachable
from runyard.store.s3 import ObjectStore
from tests.conftest import Cli, registry_snapshot, tree_snapshot
from tests.helpers.seaweed import S3Server, pick_ports

LONG_AGO = datetime.now(UTC) - timedelta(days=40)


@dataclass
class StoreYard:
    path: Path
    cli: Cli
    server: S3Server
    bucket: str
    url: str
    plan: str

    def open(self) -> Any:
        return runyard.open_yard(self.path)

    def objects(self) -> dict[str, int]:
        """Every object in the bucket (this yard's prefix and others) with its size."""
        answer = self.server.client().list_objects_v2(Bucket=self.bucket)
        return {o["Key"]: o["Size"] for o in answer.get("Contents") or []}

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def location(self, batch: str, run_id: str) -> str:
        return f"{self.url}/{batch}/{run_id}.tar"

    def batch(self, batch_id: str, runs: dict[str, bytes], finished: datetime = LONG_AGO) -> None:
        """Archive ``runs`` (id → a file's content) into a store batch, by hand."""
        entries = []
        with self.open() as yard, open_batch_store(yard.settings, self.url) as store:
            for run_id, content in runs.items():
                self.cli.ok("run", "start", "--plan", self.plan, "--run-id", run_id)
                self.cli.ok("run", "finish", run_id, "--status", "succeeded")
                folder = yard.settings.runs_root / run_id
                (folder / "out.bin").write_bytes(content)
                key = run_object_key(store, batch_id, run_id)
                with store.put_stream(key) as upload:
                    written = write_run_tar(folder, upload.write)
                    upload.commit()
                entries.append(
                    ArchiveEntry(
                        run_id=run_id,
                        src=f"runs/{run_id}",
                        dst=store.location(key),
                        status="moved",
                        method="store",
                        bytes=written.content_bytes,
                        files=written.members,
                        object_key=key,
                        tar_bytes=written.size,
                        tar_sha256=written.sha256,
                    )
                )
                shutil.rmtree(folder)
            report = ArchiveReport(
                yard_id=yard.settings.yard_id,
                batch_id=batch_id,
                status="complete",
                created_at=finished,
                updated_at=finished,
                finished_at=finished,
                entries=entries,
                store=self.url,
            )
            write_report(yard.settings.archive_root / batch_id / ARCHIVE_REPORT_NAME, report)
            data = report.model_dump_json(indent=2).encode()
            store.put_bytes(batch_object_key(store, batch_id, ARCHIVE_REPORT_NAME), data)
            store.put_bytes(batch_object_key(store, batch_id, EXECUTION_LOG_OBJECT), b"{}\n")
            with yard.write() as conn:
                set_locations(conn, [(r, RunLocation.archived, batch_id) for r in runs])

    def location_of(self, run_id: str) -> str:
        return self.cli.ok("run", "show", run_id)["location"]


def _configure(path: Path, store: str, endpoint: str) -> None:
    toml = path / "runyard.toml"
    toml.write_text(
        toml.read_text()
        + f'\n[archive]\nstore = "{store}"\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
    )


@pytest.fixture
def sy(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> StoreYard:
    """A yard whose [archive] store is a fresh bucket (prefix ``yard``), with a plan."""
    path = tmp_path / "yard"
    runyard.init_yard(path)
    url = f"s3://{s3_bucket}/yard"
    _configure(path, url, s3_server.endpoint_url)
    cli = Cli(path)
    cli.ok("scenario", "add", "base")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"lot_size": 10}))
    config_id = cli.ok("config", "add", str(config))["config_version_id"]
    plan = cli.ok("plan", "create", "--scenario", "base", "--config", config_id)
    return StoreYard(path, cli, s3_server, s3_bucket, url, plan["plan_version_id"])


def _point_at(sy: StoreYard, endpoint: str) -> None:
    """The yard's store settings, now at ``endpoint`` (the reports keep the store URL)."""
    toml = sy.path / "runyard.toml"
    text = toml.read_text().replace(sy.server.endpoint_url, endpoint)
    toml.write_text(text)


# --- purge ------------------------------------------------------------------------------


def test_purge_dry_run_lists_the_objects_and_changes_nothing(sy):
    sy.batch("b1", {"r1": b"a" * 3000, "r2": b"b" * 10})
    sy.put("elsewhere/b1/r1.tar", b"another yard's")
    keys = sy.objects()
    files, rows = tree_snapshot(sy.path), registry_snapshot(sy.path)
    doc = sy.cli.ok("purge", "--older-than", "30")
    assert [(e["run_id"], e["status"], e["path"], e["bytes"]) for e in doc["entries"]] == [
        ("r1", "pending", sy.location("b1", "r1"), keys["yard/b1/r1.tar"]),
        ("r2", "pending", sy.location("b1", "r2"), keys["yard/b1/r2.tar"]),
    ]
    assert doc["entries"][0]["object_key"] == "yard/b1/r1.tar"
    copies = sorted(["yard/b1/archive_report.json", f"yard/b1/{EXECUTION_LOG_OBJECT}"])
    assert doc["batch_files"] == [
        {
            "batch_id": "b1",
            "store": sy.url,
            "keys": copies,
            "bytes": sum(keys[k] for k in copies),
            "status": "pending",
            "reason": None,
        }
    ]
    text = sy.cli("purge", "--older-than", "30")
    assert text.exit_code == 0, text.stderr
    assert sy.location("b1", "r1") in text.stdout.replace("\n", "").replace("│", "")
    assert "batch b1, wholly purged: its 2 report and log copies in" in text.stdout
    assert "2 to delete (" in text.stdout
    assert sy.objects() == keys
    assert registry_snapshot(sy.path) == rows
    after = tree_snapshot(sy.path)
    assert {k for k in after if k not in files} == {
        k for k in after if "purge_dryrun_" in k
    }  # only the dry-run reports were added


def test_purge_deletes_exactly_the_batch_objects_and_marks_the_runs_purged(sy):
    sy.batch("b1", {"r1": b"one", "r2": b"two"})
    sy.batch("b2", {"r3": b"three"})
    sy.batch("young", {"r4": b"four"}, finished=datetime.now(UTC))
    sy.cli.ok("run", "pin", "r2")
    sy.put("elsewhere/b2/r3.tar", b"another yard's")
    sy.put("yard/b2-other/r3.tar", b"a sibling prefix")
    before = sy.objects()
    done = sy.cli.ok("purge", "--older-than", "30", "--run", "--yes")
    assert done["status"] == "complete"
    assert {e["run_id"]: e["status"] for e in done["entries"]} == {
        "r1": "deleted",
        "r2": "skipped",
        "r3": "deleted",
    }
    # b1 keeps a pinned run, so its report copy stays; b2 is wholly purged.
    assert [(f["batch_id"], f["status"]) for f in done["batch_files"]] == [("b2", "deleted")]
    gone = {
        "yard/b1/r1.tar",
        "yard/b2/r3.tar",
        "yard/b2/archive_report.json",
        f"yard/b2/{EXECUTION_LOG_OBJECT}",
    }
    assert set(sy.objects()) == set(before) - gone
    assert [sy.location_of(r) for r in ("r1", "r2", "r3", "r4")] == [
        "purged",
        "archived",
        "purged",
        "archived",
    ]
    with sy.open() as yard:  # the local reports stay, as the record
        assert (yard.settings.archive_root / "b2" / ARCHIVE_REPORT_NAME).is_file()
    assert sy.cli.ok("check")["ok"] is True
    again = sy.cli.ok("purge", "--older-than", "30", "--run", "--yes")
    assert again["deleted"] == 0 and again["batch_files"] == []


class _Crash(BaseException):
    """Stands for SIGKILL: nothing catches it."""


def test_a_crash_between_deleting_objects_and_the_registry_is_finished_by_recover(sy, monkeypatch):
    sy.batch("b1", {"r1": b"one", "r2": b"two"})

    def crash_at(label: str) -> None:
        if label == "purge:objects-deleted":
            raise _Crash(label)

    with monkeypatch.context() as patched, sy.open() as yard, pytest.raises(_Crash):
        patched.setattr(purge_module, "crashpoint", crash_at)
        purge_module.run_purge(yard, 30, ["runyard", "purge"])
    assert not any(k.endswith(".tar") for k in sy.objects())  # the objects went
    assert sy.location_of("r1") == "archived"  # the registry had not been told
    [path] = (sy.path / "logs").glob("purge_report_*.json")
    assert json.loads(path.read_text())["status"] == "in_progress"
    assert sy.cli("check").exit_code == 6  # the report is incomplete

    sy.cli.ok("recover")
    assert sy.location_of("r1") == sy.location_of("r2") == "purged"
    report = json.loads(path.read_text())
    assert report["status"] == "recovered" and report["deleted"] == 2
    assert [f["status"] for f in report["batch_files"]] == ["deleted"]
    assert sy.objects() == {}
    assert sy.cli.ok("check")["ok"] is True


def test_a_store_failing_midway_leaves_the_purge_for_the_next_one(sy, monkeypatch):
    sy.batch("b1", {"r1": b"one"})

    def down(self: ObjectStore, keys: Any) -> int:
        raise StoreUnreachable(f"cannot reach the archive store at {self.endpoint}")

    with monkeypatch.context() as patched:
        patched.setattr(ObjectStore, "delete", down)
        failed = sy.cli("purge", "--older-than", "30", "--run", "--yes", "--json")
    assert failed.exit_code == 6, failed.stdout + failed.stderr
    error = json.loads(failed.stdout)["error"]
    assert error["code"] == "store_unreachable"
    assert "recover" in error["hint"]
    assert sy.location_of("r1") == "archived"
    done = sy.cli.ok("purge", "--older-than", "30", "--run", "--yes")
    assert any("purge b1/r1: deleted" in line for line in done["recovered"])
    assert sy.location_of("r1") == "purged" and sy.objects() == {}


@pytest.mark.parametrize("setup", ["closed-port", "wrong-secret"])
def test_purge_with_a_store_it_cannot_use_changes_nothing(sy, monkeypatch, setup):
    sy.batch("b1", {"r1": b"one"})
    if setup == "closed-port":
        _point_at(sy, f"http://127.0.0.1:{pick_ports(1)[0]}")
        exit_code, code, says = 6, "store_unreachable", "cannot reach the archive store"
    else:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        exit_code, code, says = 4, "store_refused", "credentials were refused"
    keys, rows = sy.objects(), registry_snapshot(sy.path)
    for args in (("purge", "--older-than", "30"), ("purge", "--older-than", "30", "--run")):
        result = sy.cli(*args, "--yes", "--json") if "--run" in args else sy.cli(*args, "--json")
        assert result.exit_code == exit_code, result.stdout + result.stderr
        error = json.loads(result.stdout)["error"]
        assert error["code"] == code and says in error["message"]
        assert "Traceback" not in result.stdout + result.stderr
    text = sy.cli("purge", "--older-than", "30")
    assert text.stderr.startswith("error: ") and "Traceback" not in text.stderr
    assert sy.objects() == keys and registry_snapshot(sy.path) == rows
    assert not list((sy.path / "logs").glob("purge_report_*.json"))


# --- check ------------------------------------------------------------------------------


def _failing(sy: StoreYard, *args: str) -> dict[str, Any]:
    result = sy.cli("check", *args, "--json")
    assert result.exit_code == 6, result.stdout + result.stderr
    assert "error: the registry and the disk disagree" in result.stderr
    return result.json


def _found(doc: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return [(m["kind"], m["run_id"], m["path"]) for m in doc["mismatches"]]


def test_check_is_clean_on_a_good_store_batch(sy):
    sy.batch("b1", {"r1": b"one" * 1000, "r2": b"two"})
    doc = sy.cli.ok("check")
    assert doc["ok"] is True and doc["objects_seen"] == 2 and doc["folders_seen"] == 0
    assert sy.cli.ok("check", "--deep")["ok"] is True
    text = sy.cli("check")
    assert "Registry and disk agree: 2 runs, 0 folders, 2 objects in archive stores." in (
        text.stdout
    )


def test_check_finds_a_deleted_and_a_resized_object(sy):
    sy.batch("b1", {"r1": b"one", "r2": b"two", "r3": b"three"})
    client = sy.server.client()
    client.delete_object(Bucket=sy.bucket, Key="yard/b1/r1.tar")
    client.put_object(Bucket=sy.bucket, Key="yard/b1/r2.tar", Body=b"truncated")
    doc = _failing(sy)
    assert _found(doc) == [
        ("missing_object", "r1", sy.location("b1", "r1")),
        ("object_size", "r2", sy.location("b1", "r2")),
    ]
    assert doc["counts"]["missing_object"] == doc["counts"]["object_size"] == 1
    assert "its object is missing" in doc["mismatches"][0]["detail"]
    assert "holds 9 bytes" in doc["mismatches"][1]["detail"]
    text = sy.cli("check")
    assert "missing_object" in text.stdout and "object_size" in text.stdout


def test_check_deep_finds_a_same_size_corruption(sy):
    sy.batch("b1", {"r1": b"one" * 100, "r2": b"two"})
    client = sy.server.client()
    body = client.get_object(Bucket=sy.bucket, Key="yard/b1/r1.tar")["Body"].read()
    flipped = body[:600] + bytes([body[600] ^ 0xFF]) + body[601:]
    client.put_object(Bucket=sy.bucket, Key="yard/b1/r1.tar", Body=flipped)
    assert sy.cli.ok("check")["ok"] is True  # the size alone cannot tell
    doc = _failing(sy, "--deep")
    assert _found(doc) == [("object_sha256", "r1", sy.location("b1", "r1"))]
    assert "SHA-256" in doc["mismatches"][0]["detail"]


def test_check_with_an_unreachable_store_says_so_once(sy):
    sy.batch("b1", {"r1": b"one", "r2": b"two"})
    sy.batch("b2", {"r3": b"three"})
    _point_at(sy, f"http://127.0.0.1:{pick_ports(1)[0]}")
    doc = _failing(sy)
    assert _found(doc) == [("store_unavailable", None, sy.url)]
    detail = doc["mismatches"][0]["detail"]
    assert "cannot reach the archive store" in detail and "the 3 runs" in detail
    text = sy.cli("check")
    assert text.exit_code == 6 and "Traceback" not in text.stdout + text.stderr
    assert "an archive store could not be read" in text.stderr


def test_check_with_refused_credentials_says_so_once(sy, monkeypatch):
    sy.batch("b1", {"r1": b"one"})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    doc = _failing(sy)
    assert _found(doc) == [("store_unavailable", None, sy.url)]
    assert "credentials were refused" in doc["mismatches"][0]["detail"]
    assert "not-the-secret" not in json.dumps(doc)
