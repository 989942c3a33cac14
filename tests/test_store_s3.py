"""runyard.store against a real S3-compatible server (SeaweedFS, tests/helpers/seaweed.py):
the URL, the [archive] settings, ObjectStore's uploads, checks and clean-ups, the errors
of a store that is down or says no, and ``runyard init --archive-store``."""

from __future__ import annotations

import hashlib
import http.server
import json
import random
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runyard.config import CONFIG_FILENAME, load_settings, parse_yard_file
from runyard.errors import ConfigFileError, Invalid
from runyard.store import (
    StoreClientMissing,
    StoreError,
    StoreMismatch,
    StoreObjectMissing,
    StoreRefused,
    StoreUnreachable,
    StoreUrl,
    counters,
    open_store,
    parse_store_url,
)
from tests.conftest import Cli
from tests.helpers.seaweed import S3Server, pick_ports

MiB = 1024 * 1024


def store_for(server: S3Server, bucket: str, prefix: str = "p", **options):
    url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    return open_store(url, endpoint_url=server.endpoint_url, **options)


def pending_uploads(server: S3Server, bucket: str) -> list[str]:
    answer = server.client().list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in answer.get("Uploads") or []]


def keys_in(server: S3Server, bucket: str) -> list[str]:
    answer = server.client().list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in answer.get("Contents") or []]


# --- s3://BUCKET/PREFIX ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bucket", "prefix"),
    [
        ("s3://abc", "abc", ""),
        ("s3://abc/", "abc", ""),
        ("s3://my.bucket-1/runs", "my.bucket-1", "runs"),
        ("s3://my-bucket/a/b/c/", "my-bucket", "a/b/c"),
        ("s3://my-bucket//a/b//", "my-bucket", "a/b"),
        ("S3://abc/Runs Ü", "abc", "Runs Ü"),
        ("s3://" + "a" * 63 + "/x", "a" * 63, "x"),
    ],
)
def test_store_urls_that_parse(text, bucket, prefix):
    url = parse_store_url(text)
    assert (url.bucket, url.prefix) == (bucket, prefix)
    assert parse_store_url(str(url)) == url  # the normal form reads back as itself


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not an s3:// URL"),
        ("abc", "not an s3:// URL"),
        ("https://abc/p", "not an s3:// URL"),
        ("s3:/abc", "not an s3:// URL"),
        ("s3://", "3 to 63 characters"),
        ("s3://ab", "3 to 63 characters"),
        ("s3://" + "a" * 64, "3 to 63 characters"),
        ("s3://ABC", "lowercase"),
        ("s3://-abc", "begins and ends"),
        ("s3://abc-", "begins and ends"),
        ("s3://ab_c", "lowercase"),
        ("s3://a..b", "'..'"),
        ("s3://192.168.1.10", "IP address"),
        ("s3://xn--abc", "reserves"),
        ("s3://user:pw@abc/p", "lowercase"),
        ("s3://abc/p//q", "empty"),
        ("s3://abc/p/../q", "'..'"),
        ("s3://abc/./q", "'.'"),
        ("s3://abc/p?x=1", "'?'"),
        ("s3://abc/p#frag", "'#'"),
        ("s3://abc/p\\q", "'\\\\'"),
        ("s3://abc/p\x00q", "'\\x00'"),
        ("s3://abc/" + "é" * 300, "512 bytes"),
        ("s3://abc/caf\udce9", "UTF-8"),
    ],
)
def test_store_urls_refused_with_a_reason(text, says):
    with pytest.raises(Invalid) as caught:
        parse_store_url(text)
    assert says in caught.value.message


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text().map(lambda t: "s3://" + t)))
def test_any_text_parses_or_is_refused_never_a_traceback(text):
    try:
        url = parse_store_url(text)
    except Invalid as exc:
        assert exc.message
        return
    assert parse_store_url(str(url)) == url


def test_keys_join_the_prefix_and_refuse_bad_parts():
    url = StoreUrl("abc", "yard-a")
    assert url.key("b1", "runs/r1.tar") == "yard-a/b1/runs/r1.tar"
    assert StoreUrl("abc").key("b1") == "b1"
    assert url.location("yard-a/b1") == "s3://abc/yard-a/b1"
    for bad in ("", "/x", "x/", "a//b", "..", "a/../b", "a\nb"):
        with pytest.raises(Invalid):
            url.key(bad)
    with pytest.raises(Invalid):
        url.key("x" * 1100)


# --- [archive] in runyard.toml ---------------------------------------------------------


def write_yard_file(tmp_path: Path, archive: str) -> Path:
    path = tmp_path / CONFIG_FILENAME
    path.write_text(f'yard_id = "yd-test"\n\n[archive]\n{archive}\n')
    return path


def test_archive_table_is_read_and_normalised(tmp_path):
    path = write_yard_file(
        tmp_path,
        'store = "s3://cold-runs/yard-a/"\nendpoint_url = "http://127.0.0.1:8333/"\n'
        'region = "eu-west-1"',
    )
    archive = parse_yard_file(path).archive
    assert archive.store == "s3://cold-runs/yard-a"
    assert archive.endpoint_url == "http://127.0.0.1:8333"
    assert archive.region == "eu-west-1"


@pytest.mark.parametrize(
    ("archive", "says"),
    [
        ('store = "s3://cold/p"\naws_access_key_id = "AKIA"', "archive.aws_access_key_id"),
        ('store = "s3://cold/p"\nsecret_access_key = "x"', "unknown key"),
        ('store = "/srv/archive"', "not an s3:// URL"),
        ('store = "s3://Cold"', "invalid bucket"),
        ("store = 3", "archive.store"),
        ('store = "s3://cold"\nendpoint_url = "ftp://host"', "http:// or https://"),
        ('store = "s3://cold"\nendpoint_url = "http://key:secret@host"', "credentials"),
        ('store = "s3://cold"\nendpoint_url = "http://host/path"', "scheme, a host"),
        ('store = "s3://cold"\nendpoint_url = "http://host:port"', "not a URL"),
        ('store = "s3://cold"\nregion = "eu west"', "region"),
    ],
)
def test_bad_archive_tables_name_the_file_and_the_key(tmp_path, archive, says):
    path = write_yard_file(tmp_path, archive)
    with pytest.raises(ConfigFileError) as caught:
        parse_yard_file(path)
    assert str(path) in caught.value.message
    assert says in caught.value.message


def test_settings_give_no_store_without_an_archive_table(tmp_path):
    import runyard

    runyard.init_yard(tmp_path / "y")
    assert load_settings(tmp_path / "y").object_store() is None


def test_settings_give_the_configured_store(tmp_path, s3_server, s3_bucket):
    import runyard

    runyard.init_yard(tmp_path / "y")
    toml = tmp_path / "y" / CONFIG_FILENAME
    toml.write_text(
        toml.read_text()
        + f'\n[archive]\nstore = "s3://{s3_bucket}/yard"\n'
        + f'endpoint_url = "{s3_server.endpoint_url}"\nregion = "us-east-1"\n'
    )
    with load_settings(tmp_path / "y").object_store() as store:
        assert store.location() == f"s3://{s3_bucket}/yard"
        assert store.region == "us-east-1"
        assert store.probe().checked == ("write", "read", "delete")


def test_loading_settings_and_init_help_load_no_boto3(tmp_path):
    toml = write_yard_file(tmp_path, 'store = "s3://cold/p"')
    body = (
        "import sys\n"
        "from pathlib import Path\n"
        "from runyard.config import load_settings\n"
        f"load_settings(Path({str(tmp_path)!r}))\n"
        "from runyard.cli.main import app\n"
        "try:\n    app(['init', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('boto', 's3transfer'))))"
    )
    assert toml.exists()
    done = subprocess.run(
        [sys.executable, "-c", body], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_store_without_boto3_says_how_to_install_it(monkeypatch):
    monkeypatch.delitem(sys.modules, "runyard.store.s3", raising=False)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(StoreClientMissing) as caught:
        open_store("s3://cold/p")
    assert caught.value.exit_code == 4
    assert "runyard[s3]" in (caught.value.hint or "")


# --- ObjectStore against SeaweedFS -----------------------------------------------------


def test_probe_writes_reads_and_deletes_and_leaves_nothing(s3_server, s3_bucket):
    with store_for(s3_server, s3_bucket) as store:
        result = store.probe()
    assert result.location == f"s3://{s3_bucket}/p"
    assert result.checked == ("write", "read", "delete")
    assert keys_in(s3_server, s3_bucket) == []


@pytest.mark.parametrize("size", [0, 1, 1000, 5 * MiB - 1])
def test_small_streams_go_up_whole_with_their_sha256(s3_server, s3_bucket, size):
    data = random.Random(size).randbytes(size)
    with store_for(s3_server, s3_bucket) as store:
        key = store.key("small.bin")
        with store.put_stream(key, part_size=5 * MiB) as upload:
            for start in range(0, size, 333):
                upload.write(data[start : start + 333])
            result = upload.commit()
        assert not upload.multipart
        sha = hashlib.sha256(data).hexdigest()
        assert (result.size, result.sha256) == (size, sha)
        assert store.get_bytes(key) == data
        info = store.head(key)
        assert info is not None and info.size == size and info.etag == result.etag
        assert info.metadata["sha256"] == sha  # x-amz-meta-sha256, for people
        store.verify(key, size, sha)
    assert pending_uploads(s3_server, s3_bucket) == []


def test_a_large_stream_goes_up_in_parts_and_reads_back_byte_exact(s3_server, s3_bucket):
    data = random.Random(40).randbytes(40 * MiB + 123)
    with store_for(s3_server, s3_bucket) as store:
        key = store.key("batch", "run.tar")
        sent_before = counters.bytes_sent.value
        with store.put_stream(key, part_size=5 * MiB) as upload:
            view = memoryview(data)
            for start in range(0, len(data), 1 * MiB):
                upload.write(view[start : start + 1 * MiB])
            result = upload.commit()
        assert upload.multipart
        sha = hashlib.sha256(data).hexdigest()
        assert result == (len(data), sha, result.etag)
        assert result.etag.endswith("-9")  # 8 full parts of 5 MiB and the rest
        assert counters.bytes_sent.value - sent_before >= len(data)
        fetched_before = counters.bytes_fetched.value
        with store.open_read(key) as reader:
            back = b"".join(iter(lambda: reader.read(3 * MiB), b""))
        assert back == data
        assert counters.bytes_fetched.value - fetched_before >= len(data)
        store.verify(key, len(data), sha)
        info = store.head(key)  # no copy of the object onto itself to add its SHA-256
        assert info is not None and "sha256" not in info.metadata
    assert pending_uploads(s3_server, s3_bucket) == []


def test_a_streamed_upload_holds_about_one_part_in_memory(s3_server, s3_bucket):
    size, part = 48 * MiB, 5 * MiB
    chunk = random.Random(1).randbytes(256 * 1024)
    expected = hashlib.sha256()
    with store_for(s3_server, s3_bucket) as store:
        upload = store.put_stream(store.key("big"), part_size=part)
        tracemalloc.start()
        try:
            with upload:
                for _ in range(size // len(chunk)):
                    upload.write(chunk)
                    expected.update(chunk)
                result = upload.commit()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.size == size and result.sha256 == expected.hexdigest()
        store.verify(store.key("big"), size, expected.hexdigest())
    assert peak < 2 * part, f"peak {peak / MiB:.1f} MiB for a {size / MiB:.0f} MiB object"


class Boom(Exception):
    pass


def test_an_exception_mid_upload_leaves_no_object_and_no_parts(s3_server, s3_bucket):
    with store_for(s3_server, s3_bucket) as store:
        key = store.key("half.tar")
        with pytest.raises(Boom), store.put_stream(key, part_size=5 * MiB) as upload:
            upload.write(b"x" * (12 * MiB))  # two parts are up by now
            assert upload.multipart
            assert pending_uploads(s3_server, s3_bucket) == [key]
            raise Boom
        assert upload.state == "aborted"
        assert store.head(key) is None
    assert pending_uploads(s3_server, s3_bucket) == []
    assert keys_in(s3_server, s3_bucket) == []


def test_abort_or_leaving_without_commit_leaves_nothing(s3_server, s3_bucket):
    with store_for(s3_server, s3_bucket) as store:
        upload = store.put_stream(store.key("a"), part_size=5 * MiB)
        upload.write(b"y" * (6 * MiB))
        upload.abort()
        with pytest.raises(ValueError, match="aborted"):
            upload.write(b"more")
        with store.put_stream(store.key("b"), part_size=5 * MiB) as upload:
            upload.write(b"z" * (6 * MiB))  # no commit()
        assert upload.state == "aborted"
    assert pending_uploads(s3_server, s3_bucket) == []
    assert keys_in(s3_server, s3_bucket) == []


def test_a_refused_part_aborts_the_upload(s3_server, s3_bucket, monkeypatch):
    with store_for(s3_server, s3_bucket) as store:
        key = store.key("refused")
        upload = store.put_stream(key, part_size=5 * MiB)
        upload.write(b"a" * (5 * MiB))  # the upload has begun
        # The upload is aborted behind its back: the next part is refused.
        s3_server.client().abort_multipart_upload(
            Bucket=s3_bucket, Key=key, UploadId=upload._upload_id
        )
        with pytest.raises(StoreError):
            upload.write(b"b" * (5 * MiB))
        assert upload.state == "aborted"
    assert pending_uploads(s3_server, s3_bucket) == []


def test_verify_reads_back_and_trusts_neither_the_upload_nor_the_metadata(s3_server, s3_bucket):
    data = b"the run's tar" * 1000
    sha = hashlib.sha256(data).hexdigest()
    admin = s3_server.client()
    with store_for(s3_server, s3_bucket) as store:
        key = store.key("r1.tar")
        store.put_bytes(key, data)
        store.verify(key, len(data), sha)

        # Same size, other bytes, and the original's sha256 in its metadata.
        tampered = bytearray(data)
        tampered[500] ^= 0xFF
        admin.put_object(Bucket=s3_bucket, Key=key, Body=bytes(tampered), Metadata={"sha256": sha})
        with pytest.raises(StoreMismatch, match="SHA-256") as caught:
            store.verify(key, len(data), sha)
        assert caught.value.code == "store_mismatch" and caught.value.exit_code == 4

        admin.put_object(Bucket=s3_bucket, Key=key, Body=data + b"!", Metadata={"sha256": sha})
        with pytest.raises(StoreMismatch, match=f"{len(data) + 1} bytes, not the {len(data)}"):
            store.verify(key, len(data), sha)

        admin.delete_object(Bucket=s3_bucket, Key=key)
        with pytest.raises(StoreObjectMissing) as missing:
            store.verify(key, len(data), sha)
        assert missing.value.exit_code == 3
        with pytest.raises(StoreObjectMissing):
            store.open_read(key)
        assert store.head(key) is None


def test_list_and_delete_go_past_a_thousand_keys_and_stay_in_the_prefix(s3_server, s3_bucket):
    admin = s3_server.client()
    admin.put_object(Bucket=s3_bucket, Key="p2/sibling", Body=b"not ours")
    admin.put_object(Bucket=s3_bucket, Key="outside", Body=b"not ours")
    with store_for(s3_server, s3_bucket) as store:
        keys = [store.key("b1", f"r{i:04d}.tar") for i in range(1001)]
        for key in keys:
            store.put_bytes(key, key.encode())
        listed = list(store.list_objects())
        assert [o.key for o in listed] == keys  # in key order, two pages
        assert listed[0].size == len(keys[0])
        assert [o.key for o in store.list_objects(store.key("b1", "r100"))] == [keys[1000]]
        assert store.delete(keys) == 1001
        assert store.delete([store.key("never-there")]) == 1  # missing keys are no error
        assert list(store.list_objects()) == []
    assert sorted(keys_in(s3_server, s3_bucket)) == ["outside", "p2/sibling"]


def test_abort_incomplete_uploads_aborts_only_under_the_prefix(s3_server, s3_bucket):
    admin = s3_server.client()
    for key in ("p/b1/r1.tar", "p/b2/r2.tar", "other/r3.tar"):
        admin.create_multipart_upload(Bucket=s3_bucket, Key=key)
    with store_for(s3_server, s3_bucket) as store:
        assert store.abort_incomplete_uploads() == 2
        assert store.abort_incomplete_uploads() == 0
    assert pending_uploads(s3_server, s3_bucket) == ["other/r3.tar"]


def test_small_objects_round_trip_and_too_large_ones_are_refused(s3_server, s3_bucket):
    with store_for(s3_server, s3_bucket) as store:
        key = store.key("b1", "archive_report.json")
        result = store.put_bytes(key, b'{"schema_version": 1}')
        assert result.sha256 == hashlib.sha256(b'{"schema_version": 1}').hexdigest()
        assert store.get_bytes(key) == b'{"schema_version": 1}'
        with pytest.raises(StoreRefused, match="larger than 5 bytes"):
            store.get_bytes(key, max_bytes=5)
        with pytest.raises(StoreObjectMissing):
            store.get_bytes(store.key("nope"))


# --- a store that is down or says no ---------------------------------------------------


def test_an_unreachable_endpoint_is_reported_in_seconds(s3_bucket):
    closed = pick_ports(1)[0]  # free: nothing listens there
    started = time.monotonic()
    with (
        pytest.raises(StoreUnreachable) as caught,
        open_store("s3://cold/p", endpoint_url=f"http://127.0.0.1:{closed}") as store,
    ):
        store.probe()
    assert time.monotonic() - started < 20
    assert caught.value.code == "store_unreachable" and caught.value.exit_code == 6
    assert f"http://127.0.0.1:{closed}" in caught.value.message


def test_a_wrong_secret_is_refused_as_credentials(s3_server, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreRefused) as caught, store_for(s3_server, s3_bucket) as store:
        store.probe()
    assert caught.value.exit_code == 4 and caught.value.code == "store_refused"
    assert "credentials were refused (SignatureDoesNotMatch)" in caught.value.message
    assert "not-the-secret" not in caught.value.message + (caught.value.hint or "")


def test_an_unknown_key_is_refused_as_credentials(s3_server, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOBODY")
    with pytest.raises(StoreRefused) as caught, store_for(s3_server, s3_bucket) as store:
        store.put_bytes(store.key("x"), b"x")
    assert "credentials were refused (InvalidAccessKeyId)" in caught.value.message
    assert "AKIANOBODY" not in caught.value.message


def test_no_credentials_at_all_say_where_they_come_from(s3_server, s3_bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StoreRefused) as caught, store_for(s3_server, s3_bucket) as store:
        store.probe()
    assert "no AWS credentials" in caught.value.message
    assert "AWS_ACCESS_KEY_ID" in (caught.value.hint or "")


def test_a_read_only_key_has_no_write_permission(s3_server, s3_bucket, monkeypatch):
    s3_server.use(monkeypatch, "reader")
    with pytest.raises(StoreRefused) as caught, store_for(s3_server, s3_bucket) as store:
        store.probe()
    assert caught.value.message == f"no write permission on s3://{s3_bucket}/p (AccessDenied)"
    assert keys_in(s3_server, s3_bucket) == []


def test_a_missing_bucket_is_named(s3_server, s3_bucket):
    with pytest.raises(StoreRefused) as caught, store_for(s3_server, "no-such-bucket-here") as s:
        s.probe()
    assert caught.value.message.startswith("bucket 'no-such-bucket-here' does not exist")
    with pytest.raises(StoreRefused, match="does not exist"):
        s.check_bucket()
    # Checked before writing: the admin's PUT would have made the bucket.
    assert "no-such-bucket-here" not in [
        b["Name"] for b in s3_server.client().list_buckets()["Buckets"]
    ]


def test_a_key_limited_to_one_bucket_is_refused_elsewhere(s3_server, s3_bucket, monkeypatch):
    s3_server.use(monkeypatch, "limited")
    with store_for(s3_server, s3_server.limited_bucket, prefix="t") as store:
        store.probe()  # its own bucket works
    for bucket in (s3_bucket, "no-such-bucket-either"):
        with pytest.raises(StoreRefused) as caught, store_for(s3_server, bucket) as store:
            store.probe()
        assert caught.value.message == f"no list permission on s3://{bucket}/p (AccessDenied)"
        assert "does not exist" in (caught.value.hint or "")


# --- runyard init --archive-store -------------------------------------------------------


def init_cli(*args: str):
    return Cli(None)(*args, yard=False)


def test_init_with_an_archive_store_writes_the_table_after_the_probe(
    s3_server, s3_bucket, tmp_path
):
    path = tmp_path / "cold-yard"
    url = f"s3://{s3_bucket}/yard-a/"
    result = init_cli(
        "init", str(path), "--archive-store", url,
        "--endpoint-url", s3_server.endpoint_url, "--region", "us-east-1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.json["archive_store"] == {
        "store": f"s3://{s3_bucket}/yard-a",
        "endpoint_url": s3_server.endpoint_url,
        "region": "us-east-1",
        "checked": ["write", "read", "delete"],
    }
    archive = load_settings(path).file.archive
    assert archive.store == f"s3://{s3_bucket}/yard-a"
    assert archive.endpoint_url == s3_server.endpoint_url
    assert s3_server.credentials()[1] not in (path / CONFIG_FILENAME).read_text()
    assert keys_in(s3_server, s3_bucket) == []  # the probe cleaned up

    text = init_cli(
        "init", str(tmp_path / "second"), "--archive-store", f"s3://{s3_bucket}",
        "--endpoint-url", s3_server.endpoint_url,
    )  # fmt: skip
    assert text.exit_code == 0, text.stderr
    assert f"archive store s3://{s3_bucket}: write, read and delete checked" in text.stdout
    assert load_settings(tmp_path / "second").file.archive.region is None


def test_init_without_an_archive_store_writes_a_commented_example(tmp_path):
    result = init_cli("init", str(tmp_path / "y"), "--json")
    assert result.exit_code == 0
    assert result.json["archive_store"] is None
    assert "# [archive]" in (tmp_path / "y" / CONFIG_FILENAME).read_text()
    assert load_settings(tmp_path / "y").file.archive.store is None


def _assert_refused_cleanly(tmp_path, result, exit_code, code, message):
    assert result.exit_code == exit_code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == code
    assert message in error["message"]
    assert not (tmp_path / "new-yard").exists()  # nothing made


@pytest.mark.parametrize(
    ("setup", "exit_code", "code", "message"),
    [
        ("wrong-secret", 4, "store_refused", "credentials were refused (SignatureDoesNotMatch)"),
        ("reader", 4, "store_refused", "no write permission on s3://"),
        ("missing-bucket", 4, "store_refused", "bucket 'no-such-bucket-here' does not exist"),
        ("closed-port", 6, "store_unreachable", "cannot reach the archive store at"),
        ("bad-url", 5, "invalid", "invalid bucket 'Bad_Bucket'"),
        ("bad-endpoint", 5, "invalid", "http:// or https://"),
    ],
)
def test_init_with_a_store_that_fails_leaves_no_yard(
    s3_server, s3_bucket, tmp_path, monkeypatch, setup, exit_code, code, message
):
    store, endpoint = f"s3://{s3_bucket}/yard", s3_server.endpoint_url
    if setup == "wrong-secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    elif setup == "reader":
        s3_server.use(monkeypatch, "reader")
    elif setup == "missing-bucket":
        store = "s3://no-such-bucket-here/yard"
    elif setup == "closed-port":
        endpoint = f"http://127.0.0.1:{pick_ports(1)[0]}"
    elif setup == "bad-url":
        store = "s3://Bad_Bucket/yard"
    elif setup == "bad-endpoint":
        endpoint = "ftp://127.0.0.1:21"
    args = ["init", str(tmp_path / "new-yard"), "--endpoint-url", endpoint, "--json"]
    args += ["--archive-store", store]
    result = init_cli(*args)
    _assert_refused_cleanly(tmp_path, result, exit_code, code, message)
    assert "not-the-secret" not in result.stdout + result.stderr


def test_init_refusal_in_text_mode_is_a_message_and_a_hint(s3_server, s3_bucket, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    result = init_cli(
        "init", str(existing), "--archive-store", "s3://no-such-bucket-here",
        "--endpoint-url", s3_server.endpoint_url,
    )  # fmt: skip
    assert result.exit_code == 4
    assert result.stderr.startswith("error: bucket 'no-such-bucket-here' does not exist")
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    assert list(existing.iterdir()) == []  # the folder was there before; left as it was


class _AlwaysUnavailable(http.server.BaseHTTPRequestHandler):
    """An endpoint that answers every request 503 SlowDown, as an overloaded store does."""

    requests = 0

    def _answer(self) -> None:
        type(self).requests += 1
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your rate</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_a_store_that_keeps_failing_is_unreachable_after_its_retries(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysUnavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with open_store("s3://busy/p", endpoint_url=endpoint, max_attempts=3) as store:
            with pytest.raises(StoreUnreachable) as caught:
                store.put_bytes(store.key("x"), b"x")
            assert "kept failing to write s3://busy/p/x through every retry" in (
                caught.value.message
            )
            assert "SlowDown" in caught.value.message
            assert _AlwaysUnavailable.requests == 3  # every attempt was made
    finally:
        server.shutdown()
        server.server_close()


def _client_error(code: str, status: int, message: str = "m"):
    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "says"),
    [
        ("PermanentRedirect", 301, StoreRefused, "in another region"),
        ("NoSuchUpload", 404, StoreRefused, "no longer exists"),
        ("InternalError", 500, StoreUnreachable, "through every retry"),
        ("503", 503, StoreUnreachable, "through every retry"),
        ("QuotaExceeded", 400, StoreRefused, "refused to write s3://b/k (QuotaExceeded: m)"),
        ("ExpiredToken", 400, StoreRefused, "credentials were refused (ExpiredToken)"),
        ("404", 404, StoreObjectMissing, "no object s3://b/k"),
    ],
)
def test_every_store_answer_becomes_a_store_error(code, status, kind, says):
    from runyard.store.failures import store_error

    error = store_error(
        _client_error(code, status), action="write", location="s3://b/k", bucket="b", endpoint="e"
    )
    assert type(error) is kind and says in error.message
