"""``runyard rebuild`` with batches in an object store (issue 16): their runs have no
folder on disk, so the registry takes them from the batches' reports (and, with
``--from-store``, from the reports copied into the bucket), against a real SeaweedFS."""

from __future__ import annotations

import shutil

import pytest

from runyard.lifecycle.fsops import scan_tree
from tests.helpers.seaweed import S3Server
from tests.test_lifecycle import ws  # noqa: F401  (the video workspace fixture)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

SHOWN = ("location", "archive_batch_id", "plan_version_id", "legacy", "group", "status")


def _use_store(ws: dict, s3_server: S3Server, store: str) -> None:  # noqa: F811
    toml = ws["root"] / "runyard.toml"
    toml.write_text(
        toml.read_text()
        + f'\n[archive]\nendpoint_url = "{s3_server.endpoint_url}"\nstore = "{store}"\n'
    )


def _lose_registry(ws: dict) -> None:  # noqa: F811
    found = list(ws["root"].glob("registry.db*"))
    assert found, "the yard's SQLite registry was expected beside runyard.toml"
    for path in found:
        path.unlink()


def _archive_then_restore_one(ws: dict, s3_server: S3Server, s3_bucket: str) -> tuple[dict, str]:  # noqa: F811
    _use_store(ws, s3_server, f"s3://{s3_bucket}/yard")
    doc = ws["cli"].ok("archive", "--all", "--run", "--yes")
    moved = {e["run_id"] for e in doc["entries"] if e["status"] == "moved"}
    assert "misc-old" in moved and "192" in moved  # a run with a plan, and a legacy one
    restored = "api_upload_1"
    ws["cli"].ok("restore", "--run-id", restored, "--run")
    return doc, restored


def _shown(ws: dict, run_ids: list[str]) -> dict[str, dict]:  # noqa: F811
    return {r: {k: ws["cli"].ok("run", "show", r).get(k) for k in SHOWN} for r in run_ids}


def _check_rebuilt(ws: dict, doc: dict, restored: str, before: dict, digests: dict) -> None:  # noqa: F811
    batch = doc["batch_id"]
    after = _shown(ws, sorted(before))
    for run_id, fields in after.items():
        if run_id == restored:
            assert fields["location"] == "active"
            continue
        assert fields["location"] == "archived" and fields["archive_batch_id"] == batch
        # The lineage of a run with a plan comes back from the run.json in its tar.
        assert fields["plan_version_id"] == before[run_id]["plan_version_id"], run_id
        assert fields["legacy"] == before[run_id]["legacy"], run_id
        assert fields["group"] == before[run_id]["group"], run_id
    ws["cli"].ok("restore", "--run-id", "misc-old", "--run")
    assert scan_tree(ws["runs"] / "misc-old").digest == digests["misc-old"]
    assert ws["cli"].ok("run", "show", "misc-old")["location"] == "active"
    assert ws["cli"]("check", "--json").exit_code == 0


def _archived_then_registry_lost(ws, s3_server, s3_bucket):  # noqa: F811
    """The runs' digests, a store batch (one run restored since), what the registry
    showed of its runs, and then the registry lost."""
    digests = {p.name: scan_tree(p).digest for p in ws["runs"].iterdir()}
    doc, restored = _archive_then_restore_one(ws, s3_server, s3_bucket)
    before = _shown(ws, [e["run_id"] for e in doc["entries"]])
    _lose_registry(ws)
    return digests, doc, restored, before


def test_rebuild_takes_the_runs_of_a_store_batch_from_its_report(ws, s3_server, s3_bucket):  # noqa: F811
    digests, doc, restored, before = _archived_then_registry_lost(ws, s3_server, s3_bucket)
    rebuilt = ws["cli"].ok("rebuild")
    assert rebuilt["inserted"]["runs"] > 0 and rebuilt["reports_fetched"] == []
    _check_rebuilt(ws, doc, restored, before, digests)
    # Twice changes nothing the second time.
    assert ws["cli"].ok("rebuild")["changed"] is False


def test_rebuild_from_store_brings_the_reports_back(ws, s3_server, s3_bucket):  # noqa: F811
    digests, doc, restored, before = _archived_then_registry_lost(ws, s3_server, s3_bucket)
    shutil.rmtree(ws["root"] / "video" / "_archive")
    # Without the reports the store's runs are unknown: nothing says they exist.
    bare = ws["cli"].ok("rebuild", "--dry-run")
    assert all(run_id not in str(bare) for run_id in ("192", "misc-old"))
    assert ws["cli"]("rebuild", "--dry-run", "--from-store", "s3://x/y", "--json").exit_code == 5
    rebuilt = ws["cli"].ok("rebuild", "--from-store", f"s3://{s3_bucket}/yard")
    assert rebuilt["reports_fetched"] == [doc["batch_id"]]
    local = ws["root"] / "video" / "_archive" / doc["batch_id"]
    assert (local / "archive_report.json").is_file()
    assert list(local.glob("restore_report_*.json"))  # the restore's report came back too
    _check_rebuilt(ws, doc, restored, before, digests)
    # Reports that are there are never overwritten; nothing new is copied.
    again = ws["cli"].ok("rebuild", "--from-store", f"s3://{s3_bucket}/yard")
    assert again["reports_fetched"] == [] and again["changed"] is False


def test_a_report_of_another_yard_is_not_fetched(ws, s3_server, s3_bucket):  # noqa: F811
    _use_store(ws, s3_server, f"s3://{s3_bucket}/yard")
    client = s3_server.client("admin")
    client.put_object(
        Bucket=s3_bucket,
        Key="yard/20200101-000000-abcd/archive_report.json",
        Body=b'{"yard_id": "someone-else", "batch_id": "20200101-000000-abcd",'
        b' "status": "complete", "created_at": "2020-01-01T00:00:00Z",'
        b' "updated_at": "2020-01-01T00:00:00Z"}',
    )
    done = ws["cli"]("rebuild", "--from-store", f"s3://{s3_bucket}/yard", "--json")
    assert done.exit_code == 4, (done.stdout, done.stderr)
    assert "someone-else" in done.json["error"]["message"]
    assert not (ws["root"] / "video" / "_archive" / "20200101-000000-abcd").exists()
