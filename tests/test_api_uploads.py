"""``PUT /api/v1/runs/{id}/files/{path}``: files streamed into a run's folder, and every
hostile path, size or state refused with a 4xx that leaves nothing behind (no temporary
file, nothing outside the run, nothing written through a symlink)."""

from __future__ import annotations

import base64
import hashlib
import os
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runyard.config import load_settings
from runyard.errors import Conflict, Invalid, NotFound
from runyard.uploads import TEMP_PREFIX, TooLarge, upload_stream
from runyard.web.app import create_app
from tests.conftest import Cli

# Uploads touch the registry only to read the run: SQLite is enough.
sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def client(yard_path: Path) -> Iterator[TestClient]:
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def run(client: TestClient, lineage: dict[str, str]) -> dict[str, Any]:
    response = client.post(
        "/api/v1/runs", json={"plan_version_id": lineage["plan_version_id"], "run_id": "up-1"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def _put(client: TestClient, url: str, data: bytes = b"", **kw: Any) -> Any:
    return client.put(url, content=data, **kw)


@sqlite
def test_file_dir_and_link(client, run):
    folder = Path(run["path"])
    data = os.urandom(300_000)
    put = _put(client, "/api/v1/runs/up-1/files/out/deep/data.bin?mode=0600&mtime=1000", data)
    assert put.status_code == 201, put.text
    assert put.json() == {
        "path": "out/deep/data.bin",
        "kind": "file",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    target = folder / "out/deep/data.bin"
    assert target.read_bytes() == data
    assert target.stat().st_mode & 0o777 == 0o600 and target.stat().st_mtime == 1000
    made = _put(client, "/api/v1/runs/up-1/files/empty/dir?kind=dir")
    assert made.status_code == 201 and (folder / "empty/dir").is_dir()
    assert made.json()["sha256"] is None
    link = _put(client, "/api/v1/runs/up-1/files/out/link?kind=symlink", b"deep/data.bin")
    assert link.status_code == 201, link.text
    assert os.readlink(folder / "out/link") == "deep/data.bin"
    assert _temps(folder) == []


@sqlite
def test_existing_target_rules(client, run):
    url = "/api/v1/runs/up-1/files/a.txt"
    assert _put(client, url, b"one").status_code == 201
    again = _put(client, url, b"two")
    assert again.status_code == 409
    assert _put(client, url + "?replace=true", b"two").status_code == 201
    assert Path(run["path"], "a.txt").read_bytes() == b"two"
    # A retried upload (same key, same content) is a success; other content is not.
    key = {"Idempotency-Key": "upload-1"}
    assert _put(client, url, b"two", headers=key).status_code == 201
    assert _put(client, url, b"three", headers=key).status_code == 409
    assert Path(run["path"], "a.txt").read_bytes() == b"two"
    # A folder is never replaced by a file.
    _put(client, "/api/v1/runs/up-1/files/d?kind=dir")
    assert _put(client, "/api/v1/runs/up-1/files/d?replace=true", b"x").status_code == 409
    # A file in the way of a folder.
    assert _put(client, "/api/v1/runs/up-1/files/a.txt/inner", b"x").status_code == 409
    # The manifest is runyard's.
    assert _put(client, "/api/v1/runs/up-1/files/run.json?replace=true", b"{}").status_code == 422
    assert _temps(Path(run["path"])) == []


@pytest.mark.parametrize(
    "path",
    ["..%2F..%2Fescape", "a/..%2F..%2Fescape", "%2Fetc%2Fpasswd", ".", "a/%2E%2E/b"],
)
@sqlite
def test_hostile_paths(client, run, path, tmp_path):
    before = sorted(p.name for p in Path(run["path"]).parent.parent.iterdir())
    response = _put(client, f"/api/v1/runs/up-1/files/{path}", b"x")
    assert 400 <= response.status_code < 500, response.text
    assert sorted(p.name for p in Path(run["path"]).parent.parent.iterdir()) == before
    assert not Path(run["path"]).parent.joinpath("escape").exists()


@sqlite
def test_nul_and_bad_parameters(client, run):
    assert _put(client, "/api/v1/runs/up-1/files/a%00b", b"x").status_code == 422
    assert _put(client, "/api/v1/runs/up-1/files/a?kind=fifo", b"x").status_code == 422
    assert _put(client, "/api/v1/runs/up-1/files/a?mode=9999", b"x").status_code == 422
    nul = base64.urlsafe_b64encode(b"a\x00b").decode()
    assert _put(client, f"/api/v1/runs/up-1/files?path_b64={nul}", b"x").status_code == 422
    assert _put(client, "/api/v1/runs/up-1/files?path_b64=%%%", b"x").status_code == 422
    assert _put(client, "/api/v1/runs/up-1/files/l?kind=symlink", b"").status_code == 422
    assert _put(client, "/api/v1/runs/up-1/files/d?kind=dir", b"body").status_code == 422
    assert _put(client, "/api/v1/runs/up-1/files/l?kind=symlink", b"x" * 5000).status_code == 413
    assert _temps(Path(run["path"])) == []


@sqlite
def test_symlinked_parent_is_never_followed(client, run, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = Path(run["path"])
    (folder / "sub").symlink_to(outside)
    refused = _put(client, "/api/v1/runs/up-1/files/sub/f.txt", b"x")
    assert refused.status_code == 422
    (folder / "direct").symlink_to(outside / "target.txt")
    refused = _put(client, "/api/v1/runs/up-1/files/direct?replace=true", b"x")
    assert refused.status_code == 409
    assert list(outside.iterdir()) == []


@sqlite
def test_non_utf8_name_via_path_b64(client, run):
    raw = b"caf\xe9/r\xe9sum\xe9.txt"
    encoded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    put = _put(client, f"/api/v1/runs/up-1/files?path_b64={encoded}", b"bytes")
    assert put.status_code == 201, put.text
    assert Path(os.fsdecode(os.path.join(os.fsencode(run["path"]), raw))).read_bytes() == b"bytes"


@sqlite
def test_oversize_with_and_without_content_length(yard_path, lineage):
    (yard_path / "runyard.toml").open("a").write("\n[web]\nmax_upload_bytes = 1000\n")
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        run = client.post(
            "/api/v1/runs", json={"plan_version_id": lineage["plan_version_id"]}
        ).json()
        url = f"/api/v1/runs/{run['run_id']}/files/big.bin"
        declared = _put(client, url, b"x" * 1001)
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "too_large"

        def chunks() -> Iterator[bytes]:
            for _ in range(5):
                yield b"y" * 300

        streamed = client.put(url, content=chunks())  # chunked: no Content-Length
        assert streamed.status_code == 413
        assert not Path(run["path"], "big.bin").exists()
        assert _temps(Path(run["path"])) == []
        assert _put(client, url, b"x" * 1000).status_code == 201


@sqlite
def test_unknown_and_finished_runs(client, run, cli: Cli):
    assert _put(client, "/api/v1/runs/nope/files/a", b"x").status_code == 404
    cli.ok("run", "finish", "up-1", "--status", "succeeded")
    late = _put(client, "/api/v1/runs/up-1/files/a", b"x")
    assert late.status_code == 409
    assert not Path(run["path"], "a").exists()


@sqlite
def test_disconnect_mid_body_leaves_no_temp_file(run):
    folder = Path(run["path"])

    def chunks() -> Iterator[bytes]:
        yield b"a" * 1000
        raise ConnectionError("cut")

    with pytest.raises(ConnectionError):
        upload_stream(folder, "cut.bin", chunks(), limit=10**6)
    assert _temps(folder) == [] and not (folder / "cut.bin").exists()


async def _asgi_put(app: Any, path: str, messages: Any, headers: list[tuple[bytes, bytes]]) -> int:
    """Send a PUT straight through ASGI, its body as ``messages`` (a generator would be
    read whole by the test client); the answer's status (0: none)."""
    status = []
    pending = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(pending, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return status[0] if status else 0


@sqlite
def test_disconnect_through_the_app(client, run):
    import anyio

    messages = [
        {"type": "http.request", "body": b"a" * 5000, "more_body": True},
        {"type": "http.disconnect"},
    ]
    path = "/api/v1/runs/up-1/files/half.bin"
    status = anyio.run(_asgi_put, client.app, path, messages, [(b"content-length", b"100000")])
    assert status in (0, 400)
    folder = Path(run["path"])
    assert _temps(folder) == [] and not (folder / "half.bin").exists()


@sqlite
def test_large_upload_is_streamed_not_buffered(yard_path, lineage):
    import anyio

    size = 40 * 1024 * 1024
    (yard_path / "runyard.toml").open("a").write(f"\n[web]\nmax_upload_bytes = {size}\n")
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        run = client.post(
            "/api/v1/runs", json={"plan_version_id": lineage["plan_version_id"]}
        ).json()
        block = b"z" * (1024 * 1024)

        class Body:
            """The body's messages, made one at a time (never all in memory)."""

            def __init__(self) -> None:
                self.left = size // len(block)

            def __iter__(self) -> Any:
                return self

            def __next__(self) -> dict[str, Any]:
                if self.left == 0:
                    raise StopIteration
                self.left -= 1
                return {"type": "http.request", "body": block, "more_body": self.left > 0}

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        path = f"/api/v1/runs/{run['run_id']}/files/big.bin"
        status = anyio.run(_asgi_put, client.app, path, Body(), [])
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert status == 201
        assert Path(run["path"], "big.bin").stat().st_size == size
        assert grown < 20 * 1024, f"peak RSS grew by {grown} KiB"


# --- the core, with generated hostile paths ----------------------------------------------

_PART = st.sampled_from(["..", ".", "", "a", "b", "run.json", "/", "\x00", "é", "x" * 300])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(_PART, min_size=1, max_size=5), absolute=st.booleans())
def test_generated_paths_stay_inside_the_run(tmp_path_factory, parts, absolute):
    root = tmp_path_factory.mktemp("gen")
    run_dir = root / "run"
    run_dir.mkdir()
    (run_dir / "a").mkdir()
    (run_dir / "b").symlink_to(root)
    dest = ("/" if absolute else "") + "/".join(parts)
    try:
        stored = upload_stream(run_dir, dest, [b"data"], limit=100)
    except (Invalid, Conflict, NotFound, TooLarge, OSError):
        pass
    else:
        written = run_dir / stored.path
        assert written.resolve().is_relative_to(run_dir.resolve())
        assert not any(p.is_symlink() for p in [*written.parents, written] if p != root)
    assert sorted(p.name for p in root.iterdir()) == ["run"]
    assert _temps(run_dir) == []
