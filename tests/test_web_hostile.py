"""The web server against hostile input (issue 13): writes from a page of another
origin, names that are not UTF-8, JSON bodies past the limits, a port already taken.
Every answer is the right 4xx (or works exactly), never a 500, and changes nothing."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

import runyard
from runyard import fsnames
from runyard.canonical import MAX_JSON_BYTES, MAX_JSON_DEPTH
from runyard.config import load_settings
from runyard.db.tables import runs as runs_table
from runyard.errors import Invalid, NotFound
from runyard.registry import runs as runs_registry
from runyard.web.app import create_app
from tests.conftest import Cli, registry_snapshot, tree_snapshot
from tests.helpers.server import free_port, running_server
from tests.helpers.ui import csrf_token

# The origin checks and the names are the web layer's own; the registry's engines are
# covered by the API tests. SQLite keeps this file quick.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

SERVER = "http://127.0.0.1:8765"
BAD_FILE = os.fsdecode(b"bad\xff.txt")
BAD_DIR = os.fsdecode(b"dir\xfe")
BAD_LINK = os.fsdecode(b"ln\xfd")
BAD_TARGET = os.fsdecode(b"/nowhere/\xfc\xfb")


@pytest.fixture
def client(yard_path: Path) -> Iterator[TestClient]:
    """A client of a server at http://127.0.0.1:8765 (its Host and its origin)."""
    app = create_app(load_settings(yard_path))
    with TestClient(
        app, base_url=SERVER, follow_redirects=False, raise_server_exceptions=False
    ) as test_client:
        yield test_client


@pytest.fixture
def made(cli: Cli, lineage: dict[str, str]) -> dict[str, Any]:
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"], "--group", "CH01/001")
    Path(run["path"], "out.txt").write_text("output\n")
    cli.ok("run", "finish", run["run_id"], "--status", "succeeded")
    return {**lineage, "run_id": run["run_id"], "path": Path(run["path"])}


def _state(yard_path: Path) -> dict[str, Any]:
    """Everything a write could change: the registry's rows and the yard's files."""
    files = {
        k: v for k, v in tree_snapshot(yard_path).items() if not k.startswith(("logs", "_archive"))
    }
    return {"rows": registry_snapshot(yard_path), "files": files}


# ---------------------------------------------------------------- 1. whole-origin checks

FOREIGN_ORIGINS = [
    "http://127.0.0.1:9999",  # another local server: same host, another port
    "https://127.0.0.1:8765",  # another scheme
    "http://localhost:8765",  # another host name for the same address
    "http://127.0.0.1",  # the default port, 80: not 8765
    "null",  # a sandboxed page or a file
    "http://127.0.0.1:8765/ui",  # not an origin at all
    "http://evil.example:8765",
]


def _api_writes(made: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    pid, sid = made["plan_version_id"], made["scenario_id"]
    return [
        ("POST", f"/api/v1/runs/{made['run_id']}/pin", None),
        ("POST", f"/api/v1/scenarios/{sid}/lock", {"reason": "freeze"}),
        ("POST", f"/api/v1/plans/{pid}/run", None),
        (
            "POST",
            "/api/v1/plans",
            {"scenario": sid, "config_version_id": made["config_version_id"], "label": "x"},
        ),
    ]


def _ui_writes(made: dict[str, Any]) -> list[str]:
    pid, sid = made["plan_version_id"], made["scenario_id"]
    return [
        f"/ui/runs/{made['run_id']}/pin",
        f"/ui/scenarios/{sid}/lock",
        f"/ui/plans/{pid}/run",
    ]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_api_writes_from_another_origin_are_refused(client, made, yard_path, origin):
    before = _state(yard_path)
    for method, url, body in _api_writes(made):
        answer = client.request(method, url, json=body, headers={"Origin": origin})
        assert answer.status_code == 403, (url, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"
        assert "origin" in answer.json()["error"]["message"]
    assert _state(yard_path) == before


@pytest.mark.parametrize("origin", ["http://127.0.0.1:9999", "https://127.0.0.1:8765", "null"])
def test_ui_writes_from_another_origin_are_refused_even_with_a_csrf_token(
    client, made, yard_path, origin
):
    before = _state(yard_path)
    token = csrf_token(client)
    for url in _ui_writes(made):
        answer = client.post(url, data={"csrf_token": token}, headers={"Origin": origin})
        assert answer.status_code == 403, (url, answer.text[:300])
        assert "refused" in answer.text
    assert _state(yard_path) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
def test_every_write_method_on_any_path_refuses_another_origin(client, made, method):
    for url in (f"/api/v1/runs/{made['run_id']}/pin", "/api/v1/runs", "/ui/runs", "/nowhere"):
        answer = client.request(method, url, headers={"Origin": "http://127.0.0.1:9999"})
        assert answer.status_code == 403, (method, url)


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_fetch_metadata_of_another_origin_is_refused(client, made, site):
    url = f"/api/v1/runs/{made['run_id']}/pin"
    for headers in ({"Sec-Fetch-Site": site}, {"Sec-Fetch-Site": site, "Origin": SERVER}):
        assert client.post(url, headers=headers).status_code == 403
    assert client.get(f"/api/v1/runs/{made['run_id']}").json()["pinned"] is False


def test_the_same_origin_and_scripts_without_origin_still_write(client, made):
    run_id = made["run_id"]
    same = {"Origin": SERVER, "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"/api/v1/runs/{run_id}/pin", headers=same).status_code == 200
    assert client.post(f"/api/v1/runs/{run_id}/unpin").status_code == 200  # curl: no Origin
    upper = client.post(f"/api/v1/runs/{run_id}/pin", headers={"Origin": "HTTP://127.0.0.1:8765"})
    assert upper.status_code == 200  # scheme and host compare without case
    token = csrf_token(client)
    lock = client.post(
        f"/ui/scenarios/{made['scenario_id']}/lock",
        data={"csrf_token": token, "reason": "audit"},
        headers={"Origin": SERVER},
    )
    assert lock.status_code == 303
    assert client.get(f"/api/v1/scenarios/{made['scenario_id']}").json()["locked"] is True


def test_default_ports_are_the_same_origin(yard_path, made):
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1") as plain:
        url = f"/api/v1/runs/{made['run_id']}/pin"
        assert plain.post(url, headers={"Origin": "http://127.0.0.1:80"}).status_code == 200
        assert plain.post(url, headers={"Origin": "http://127.0.0.1:8080"}).status_code == 403


def _post(url: str, origin: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method="POST", data=b"")
    if origin:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_real_server_refuses_a_page_of_another_local_port(yard_path, made):
    sid, pid, run_id = made["scenario_id"], made["plan_version_id"], made["run_id"]
    with running_server(yard_path, "--no-worker") as base:
        port = int(base.rsplit(":", 1)[1])
        other = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}"
        writes = (
            f"/api/v1/runs/{run_id}/pin",
            f"/api/v1/scenarios/{sid}/lock",
            f"/api/v1/plans/{pid}/run",
        )
        for path in writes:
            status, body = _post(base + path, other)
            assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
        with urllib.request.urlopen(f"{base}/api/v1/runs/{run_id}") as answer:
            assert json.loads(answer.read())["pinned"] is False
        with urllib.request.urlopen(f"{base}/api/v1/jobs") as answer:
            assert json.loads(answer.read())["items"] == []
        assert _post(f"{base}/api/v1/plans/{pid}/run", base)[0] == 202  # its own pages
        assert _post(f"{base}/api/v1/runs/{run_id}/pin", base)[0] == 200
        assert _post(f"{base}/api/v1/scenarios/{sid}/lock", None)[0] == 200  # a script


# ---------------------------------------------------------------- 2. names that are not UTF-8


@pytest.fixture
def odd(made: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The run's folder holds a file, a folder and a symlink whose names are not UTF-8,
    a link whose target is not UTF-8, a FIFO and a socket."""
    folder = made["path"]
    monkeypatch.chdir(folder)  # a socket's path is short: bound relative to its folder
    (folder / BAD_FILE).write_bytes(b"exact bytes\n")
    (folder / BAD_DIR).mkdir()
    (folder / BAD_DIR / "inner.txt").write_text("inside\n")
    os.symlink(BAD_TARGET, folder / BAD_LINK)
    os.mkfifo(folder / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock")
    sock.close()
    return made


def _listing(client: TestClient, run_id: str) -> dict[str, dict[str, Any]]:
    answer = client.get(f"/api/v1/runs/{run_id}/artifacts")
    assert answer.status_code == 200, answer.text
    return {item["path"]: item for item in answer.json()["items"]}


def test_artifact_listing_shows_names_losslessly(client, odd):
    items = _listing(client, odd["run_id"])
    shown_file = fsnames.shown(BAD_FILE)
    assert shown_file == "bad\\xff.txt"
    item = items[shown_file]
    assert base64.b64decode(item["path_b64"]) == b"bad\xff.txt"
    inner = items[fsnames.shown(BAD_DIR) + "/inner.txt"]
    assert base64.b64decode(inner["path_b64"]) == b"dir\xfe/inner.txt"
    link = items[fsnames.shown(BAD_LINK)]
    assert link["kind"] == "symlink" and link["link_target"] == "/nowhere/\\xfc\\xfb"
    assert base64.b64decode(link["link_target_b64"]) == b"/nowhere/\xfc\xfb"
    assert base64.b64decode(link["path_b64"]) == b"ln\xfd"
    plain = items["out.txt"]
    assert plain["path_b64"] is None and plain["link_target_b64"] is None
    assert {"fifo", "sock"} <= set(items)


def test_artifact_download_by_its_exact_bytes(client, odd):
    run_id = odd["run_id"]
    item = _listing(client, run_id)["bad\\xff.txt"]
    url = f"/api/v1/runs/{run_id}/artifacts/{item['path']}"
    exact = client.get(url, params={"path_b64": item["path_b64"]})
    assert exact.status_code == 200 and exact.content == b"exact bytes\n"
    assert "bad%5Cxff.txt" in exact.headers["content-disposition"]
    inner = _listing(client, run_id)["dir\\xfe/inner.txt"]
    nested = client.get(
        f"/api/v1/runs/{run_id}/artifacts/{inner['path']}", params={"path_b64": inner["path_b64"]}
    )
    assert nested.status_code == 200 and nested.content == b"inside\n"
    # The display form alone names no file: a clean 422 saying what to send.
    alone = client.get(url)
    assert alone.status_code == 422 and "path_b64" in alone.json()["error"]["hint"]
    # Bytes that do not match the path in the URL, or are not base64: 422.
    other = base64.b64encode(b"out.txt").decode()
    assert client.get(url, params={"path_b64": other}).status_code == 422
    assert client.get(url, params={"path_b64": "%%%"}).status_code == 422
    # The raw byte percent-encoded is not a UTF-8 path: no such file, cleanly.
    assert client.get(f"/api/v1/runs/{run_id}/artifacts/bad%FF.txt").status_code == 404
    for path in ("fifo", "sock"):  # never opened, never a hang
        refused = client.get(f"/api/v1/runs/{run_id}/artifacts/{path}")
        assert refused.status_code == 422 and "regular file" in refused.json()["error"]["message"]
    dangling = client.get(
        f"/api/v1/runs/{run_id}/artifacts/ln\\xfd",
        params={"path_b64": base64.b64encode(b"ln\xfd").decode()},
    )
    assert dangling.status_code == 404


def test_run_page_lists_odd_names_and_its_links_serve_them(client, odd):
    run_id = odd["run_id"]
    page = client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200, page.text[:500]
    for shown in ("bad\\xff.txt", "dir\\xfe/inner.txt", "ln\\xfd", "/nowhere/\\xfc\\xfb"):
        assert shown in page.text
    hrefs = {
        h.replace("&amp;", "&")
        for h in re.findall(r'href="(/ui/runs/[^"]+/artifacts/[^"]+)"', page.text)
    }
    view = next(h for h in hrefs if "bad%5Cxff.txt" in h and "download" not in h)
    viewed = client.get(view)
    assert viewed.status_code == 200 and viewed.content == b"exact bytes\n"
    download = next(h for h in hrefs if "bad%5Cxff.txt" in h and "download=1" in h)
    got = client.get(download)
    assert got.status_code == 200 and got.headers["content-disposition"].startswith("attachment")
    for href in hrefs:  # every link answers, none with a 500
        assert client.get(href).status_code in (200, 404, 422), href


def test_archived_odd_run_shows_on_the_archive_pages(client, cli, odd):
    cli.ok(
        "archive", "--run-id", odd["run_id"], "--keep-recent-minutes", "0",
        "--keep-last-runs", "0", "--run", "--yes",
    )  # fmt: skip
    batch = client.get("/api/v1/archives").json()[0]["batch_id"]
    detail = client.get(f"/api/v1/archives/{batch}")
    assert detail.status_code == 200
    links = detail.json()["report"]["entries"][0]["symlinks"]
    link = next(x for x in links if x["path_b64"])
    assert base64.b64decode(link["target_b64"]) == b"/nowhere/\xfc\xfb"
    assert "\\x" in link["path"] and "\\x" in link["target"]
    page = client.get(f"/ui/archives/{batch}")
    assert page.status_code == 200 and "/nowhere/\\xfc\\xfb" in page.text
    for url in (
        "/ui/archives",
        f"/ui/runs/{odd['run_id']}",
        f"/api/v1/runs/{odd['run_id']}/history",
        f"/api/v1/runs/{odd['run_id']}/artifacts",
    ):
        assert client.get(url).status_code == 200, url


def test_a_run_folder_swapped_for_a_symlink_is_never_followed(client, made, tmp_path):
    """An active run's folder replaced by a link to elsewhere: its target is neither
    listed nor served (it could be anywhere), and the run's page still shows."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0\n")
    (secret / "run.json").write_text('{"planted": true}')
    folder = made["path"]
    folder.rename(tmp_path / "moved-away")
    folder.symlink_to(secret, target_is_directory=True)
    run_id = made["run_id"]
    listing = client.get(f"/api/v1/runs/{run_id}/artifacts")
    assert listing.status_code == 409 and "symlink" in listing.json()["error"]["message"]
    served = client.get(f"/api/v1/runs/{run_id}/artifacts/passwd")
    assert served.status_code == 409 and "root:x" not in served.text
    viewed = client.get(f"/ui/runs/{run_id}/artifacts/passwd")
    assert viewed.status_code == 409 and "root:x" not in viewed.text
    page = client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200 and "is a symlink" in page.text
    assert "passwd" not in page.text and "planted" not in page.text


def test_tags_and_summary_with_lone_surrogates_never_500(client, yard_path, made):
    """A registry row whose JSON holds ``\\udcff`` escapes (edited by hand: runyard
    refuses them on write) is shown in display form on every page and in every answer."""
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        conn.execute(
            update(runs_table)
            .where(runs_table.c.run_id == made["run_id"])
            .values(tags='{"source": "tape\\udcff"}', summary='{"note": "x\\udcfe", "n": 1}')
        )
    for url in ("/api/v1/runs", f"/api/v1/plans/{made['plan_version_id']}", "/ui/runs"):
        assert client.get(url).status_code == 200, url
    for url in (f"/api/v1/runs/{made['run_id']}", f"/ui/runs/{made['run_id']}"):
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.text[:300])
        assert "tape\\xff" in answer.text.replace("\\\\", "\\"), url
        assert "x\\xfe" in answer.text.replace("\\\\", "\\"), url
    assert client.get(f"/api/v1/runs/{made['run_id']}").json()["tags"] == {"source": "tape\\xff"}


def test_group_and_error_with_lone_surrogates_never_500(client, made, monkeypatch):
    """Whatever text the core hands over (a group or an error read from disk), no page
    and no answer fails to encode it."""
    to_model = runs_registry._to_model

    def odd_text(row: Any, settings: Any) -> Any:
        run = to_model(row, settings)
        return run.model_copy(update={"group": "CH\udcff/001", "error": "died: \udcfe"})

    to_models = runs_registry._to_models

    def odd_texts(rows: Any, settings: Any) -> Any:
        odd = {"group": "CH\udcff/001", "error": "died: \udcfe"}
        return [run.model_copy(update=odd) for run in to_models(rows, settings)]

    monkeypatch.setattr(runs_registry, "_to_model", odd_text)
    monkeypatch.setattr(runs_registry, "_to_models", odd_texts)
    for url in (
        f"/api/v1/runs/{made['run_id']}",
        "/api/v1/runs",
        f"/ui/runs/{made['run_id']}",
        "/ui/runs",
        f"/ui/plans/{made['plan_version_id']}",
    ):
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.text[:300])
        assert "CH\\xff/001" in answer.text.replace("\\\\", "\\"), url
    assert client.get(f"/api/v1/runs/{made['run_id']}").json()["error"] == "died: \\xfe"


def test_an_error_message_with_a_lone_surrogate_is_a_clean_4xx(client, made, monkeypatch):
    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise NotFound("no run folder /runs/\udcff", hint="look in \udcfe")

    monkeypatch.setattr("runyard.web.api.get_run", missing)
    monkeypatch.setattr("runyard.web.ui.runs.get_run", missing)
    api = client.get(f"/api/v1/runs/{made['run_id']}")
    assert api.status_code == 404
    assert api.json()["error"] == {"code": "not_found", "message": "no run folder /runs/\\xff",
                                   "hint": "look in \\xfe"}  # fmt: skip
    page = client.get(f"/ui/runs/{made['run_id']}")
    assert page.status_code == 404 and "/runs/\\xff" in page.text


def test_a_deeply_nested_manifest_is_shown_as_text_not_a_500(client, made):
    (made["path"] / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    page = client.get(f"/ui/runs/{made['run_id']}")
    assert page.status_code == 200 and "nested too deeply" in page.text


def test_fifos_where_files_are_read_are_refused_never_waited_on(client, made, yard_path):
    """A FIFO in place of a file the server reads would block it for ever on open."""
    manifest = made["path"] / "run.json"
    manifest.unlink()
    os.mkfifo(manifest)
    page = client.get(f"/ui/runs/{made['run_id']}")
    assert page.status_code == 200 and "not a regular file" in page.text
    secret = yard_path / ".web_secret"
    secret.unlink(missing_ok=True)
    os.mkfifo(secret)
    with pytest.raises(Invalid, match="FIFO"):
        create_app(load_settings(yard_path))


# ---------------------------------------------------------------- 3. request body limits


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _plan_body(made: dict[str, Any], params: str) -> str:
    return (
        f'{{"scenario": "{made["scenario_id"]}", '
        f'"config_version_id": "{made["config_version_id"]}", "params": {{"x": {params}}}}}'
    )


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (_deep(10_000), "levels deep"),
        (_deep(MAX_JSON_DEPTH + 1), "levels deep"),
        ("1e400", "float64"),
        ("-1e400", "float64"),
        ("1e-400", "float64"),
        ('"\\ud800"', "surrogate"),
        ("1" + "0" * 400, "float64"),
        ("NaN", "not valid JSON"),
    ],
)
def test_json_bodies_past_the_limits_are_a_422_that_changes_nothing(
    client, made, yard_path, params, needle
):
    before = _state(yard_path)
    for url, body in (
        ("/api/v1/plans", _plan_body(made, params)),
        (f"/api/v1/scenarios/{made['scenario_id']}/lock", f'{{"reason": {params}}}'),
        ("/api/v1/archives", f'{{"all": true, "run": true, "reason": {params}}}'),
    ):
        answer = client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, (url, answer.text[:300])
        error = answer.json()["error"]
        assert error["code"] == "invalid" and needle in error["message"], error
    assert _state(yard_path) == before


def test_values_at_the_depth_limit_are_taken_as_the_cli_takes_them(client, made):
    body = _plan_body(made, _deep(MAX_JSON_DEPTH - 1))  # params: 64 levels
    created = client.post(
        "/api/v1/plans", content=body, headers={"Content-Type": "application/json"}
    )
    assert created.status_code == 201, created.text
    shown = client.get(f"/api/v1/plans/{created.json()['plan_version_id']}")
    assert shown.status_code == 200


def test_a_body_over_the_size_limit_is_a_413(client, made, yard_path):
    before = _state(yard_path)
    big = _plan_body(made, json.dumps("x" * (5 * 1024 * 1024)))
    answer = client.post("/api/v1/plans", content=big)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "invalid"
    assert str(MAX_JSON_BYTES) in answer.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        yield big[:1000].encode()
        for _ in range(6):
            yield b" " * (1024 * 1024)

    streamed = client.post(
        "/api/v1/plans", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    form = client.post(
        f"/ui/runs/{made['run_id']}/pin",
        data={"csrf_token": csrf_token(client), "pad": "x" * (13 * 1024 * 1024)},
    )
    assert form.status_code == 413 and "text/html" in form.headers["content-type"]
    assert _state(yard_path) == before


def test_bodies_that_are_not_utf8_json_are_a_422(client, made):
    url = f"/api/v1/scenarios/{made['scenario_id']}/lock"
    for body in (b'{"reason": "\xff"}', b"{", b'{"reason": "a", "reason": "b"}'):
        answer = client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, (body, answer.text)
    assert client.get(f"/api/v1/scenarios/{made['scenario_id']}").json()["locked"] is False


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ('{"x": ' + _deep(10_000) + "}", "levels deep"),
        ('{"x": 1e400}', "float64"),
        ('{"x": 1e-400}', "float64"),
        ('{"x": "\\ud800"}', "surrogate"),
    ],
)
def test_the_plan_form_refuses_params_past_the_limits(client, made, yard_path, params, needle):
    before = _state(yard_path)
    answer = client.post(
        "/ui/plans/new",
        data={
            "csrf_token": csrf_token(client),
            "scenario": made["scenario_id"],
            "config_version_id": made["config_version_id"],
            "params": params,
        },
    )
    assert answer.status_code == 422 and needle in answer.text
    assert _state(yard_path) == before


# ---------------------------------------------------------------- 4. a port already in use


def test_serve_on_a_port_in_use_is_an_os_error_naming_the_address(cli, monkeypatch):
    from runyard.cli import output

    codes: list[str] = []
    report = output.report_error

    def spy(exc: Any, json_mode: bool) -> None:
        codes.append(exc.code)
        report(exc, json_mode)

    monkeypatch.setattr(output, "report_error", spy)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), "--no-worker")
    assert result.exit_code == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr
    assert "not found" not in result.stderr
    assert codes == ["os_error"]
