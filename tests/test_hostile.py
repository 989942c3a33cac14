"""The hostile-tree fuzzer: what a real workspace holds never loses a run or sticks a yard.

Hypothesis builds run folders full of what video and ML tools leave behind (names and
link texts that are not UTF-8, fifos and sockets, hard links, extended attributes,
dangling and looping links, deep chains, empty folders) and hostile JSON (deep, huge,
out-of-range numbers, text that is not UTF-8). Each example goes through ``run import``,
``archive`` (dry run and ``--run``), ``check``, the API listings and the run page,
``restore``, ``rebuild`` and ``purge``, with the archive on the same filesystem and on
another one. It asserts: no traceback and only documented exit codes, no 500, trees
back byte-identical (bytes names, link text, modes, mtimes, xattrs, link counts),
``check`` agreeing with the disk, and nothing outside the yard changed (a canary tree
hashed before and after; the runs' links point into it).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runyard
from runyard.config import load_settings
from runyard.lifecycle.fsops import same_filesystem
from runyard.web.app import create_app
from tests.conftest import Cli, CliResult
from tests.trees import DirSpec, build_into, exact_state, hostile_trees, make_outside, remove

pytestmark = pytest.mark.slow

SHM = Path("/dev/shm")
DOCUMENTED_EXITS = {0, 2, 3, 4, 5, 6, 7}
EXAMPLES = settings(
    max_examples=int(os.environ.get("RUNYARD_HOSTILE_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def documented(result: CliResult) -> CliResult:
    """An exit code the docs list, and never exit 1 (an unforeseen error)."""
    assert result.exit_code in DOCUMENTED_EXITS, (result.exit_code, result.stdout, result.stderr)
    return result


def ok(result: CliResult) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.json if result.stdout.strip().startswith(("{", "[")) else None


@pytest.fixture(params=["same_fs", "cross_fs"])
def hostile_yard(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A video-preset yard with a plan, a canary folder outside it, and an archive root on
    this filesystem or on /dev/shm."""
    archive_root: Path | None = None
    if request.param == "cross_fs":
        if not SHM.is_dir() or same_filesystem(SHM, tmp_path):
            pytest.skip("CROSS-FILESYSTEM FUZZING NOT RUN: /dev/shm is missing or not another fs")
        archive_root = Path(tempfile.mkdtemp(prefix="runyard-hostile-", dir=SHM)) / "archive"
    yard = tmp_path / "yard"
    runyard.init_yard(yard, preset="video")
    if archive_root is not None:
        toml = yard / "runyard.toml"
        text = toml.read_text().replace(
            'archive_root = "video/_archive"', f'archive_root = "{archive_root}"'
        )
        toml.write_text(text)
    canary = tmp_path / "canary"
    make_outside(canary)
    cli = Cli(yard)
    ok(cli("scenario", "add", "episodes", "--json"))
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"fps": 30}')
    cfg_id = ok(cli("config", "add", str(cfg), "--json"))["config_version_id"]
    plan = ok(cli("plan", "create", "--scenario", "episodes", "--config", cfg_id, "--json"))
    settings_ = load_settings(yard)
    app = create_app(settings_)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield {
            "cli": cli,
            "yard": yard,
            "canary": canary,
            "plan": plan["plan_version_id"],
            "runs_root": settings_.runs_root,
            "client": client,
        }
    if archive_root is not None:
        remove(archive_root.parent)


def _canary_state(canary: Path) -> dict[bytes, tuple[object, ...]]:
    return exact_state(canary)


def _no_server_error(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code < 500, (url, response.status_code, response.text[:500])


_counter = iter(range(10**9))


@given(specs=st.lists(hostile_trees(), min_size=1, max_size=3), legacy=hostile_trees())
@EXAMPLES
def test_hostile_runs_move_and_come_back_exactly(
    hostile_yard: dict[str, Any], specs: list[DirSpec], legacy: DirSpec
) -> None:
    ws = hostile_yard
    cli: Cli = ws["cli"]
    runs_root: Path = ws["runs_root"]
    canary_before = _canary_state(ws["canary"])
    n = next(_counter)

    # Runs recorded by runyard, then filled by a hostile pipeline; one legacy folder imported.
    run_ids = []
    for i, spec in enumerate(specs):
        run_id = f"h{n}-run{i}"
        ok(cli("run", "start", "--plan", ws["plan"], "--run-id", run_id, "--json"))
        build_into(spec, runs_root / run_id, ws["canary"])
        documented(cli("run", "finish", run_id, "--status", "succeeded", "--json"))
        run_ids.append(run_id)
    legacy_id = f"api_h{n}"
    (runs_root / legacy_id).mkdir()
    build_into(legacy, runs_root / legacy_id, ws["canary"])
    ok(cli("run", "import", str(runs_root / legacy_id), "--json"))
    run_ids.append(legacy_id)
    before = {r: exact_state(runs_root / r) for r in run_ids}

    # The API and the pages never answer 500 on them.
    client: TestClient = ws["client"]
    _no_server_error(client, "/api/v1/runs")
    _no_server_error(client, "/ui/runs")
    for run_id in run_ids:
        _no_server_error(client, f"/api/v1/runs/{run_id}")
        _no_server_error(client, f"/api/v1/runs/{run_id}/artifacts")
        _no_server_error(client, f"/ui/runs/{run_id}")

    archive_args = ["archive", *[a for r in run_ids for a in ("--run-id", r)]]
    archive_args += ["--keep-recent-minutes", "0", "--keep-last-runs", "0", "--json"]
    dry = documented(cli(*archive_args))
    assert dry.exit_code == 0, dry.stdout
    assert {e["run_id"] for e in dry.json["entries"]} == set(run_ids), dry.json["skips"]
    moved = ok(cli(*archive_args, "--run", "--reason", "hostile"))
    batch = moved["batch_id"]
    assert {e["run_id"]: e["status"] for e in moved["entries"]} == dict.fromkeys(run_ids, "moved")
    for run_id in run_ids:
        assert not os.path.lexists(runs_root / run_id)
    ok(cli("check", "--json"))
    for run_id in run_ids:
        _no_server_error(client, f"/api/v1/runs/{run_id}")
        _no_server_error(client, f"/ui/runs/{run_id}")
    _no_server_error(client, f"/ui/archives/{batch}")
    _no_server_error(client, f"/api/v1/archives/{batch}")

    # Restore puts every byte back; check agrees; rebuild keeps the registry as it was.
    restored = ok(cli("restore", "--report", _report(ws, batch), "--run", "--json"))
    assert restored["restored"] == len(run_ids), restored
    after = {r: exact_state(runs_root / r) for r in run_ids}
    assert after == before
    ok(cli("check", "--json"))
    ok(cli("rebuild", "--json"))
    ok(cli("check", "--json"))

    # Archived again and purged: deleted, and only inside the yard.
    again = ok(cli(*archive_args, "--run"))
    purged = ok(cli("purge", "--older-than", "0", "--run", "--yes", "--json"))
    mine = [e for e in purged["entries"] if e["batch_id"] == again["batch_id"]]
    assert {e["status"] for e in mine} == {"deleted"}, mine
    ok(cli("check", "--json"))
    assert _canary_state(ws["canary"]) == canary_before


def _report(ws: dict[str, Any], batch: str) -> str:
    settings_ = load_settings(ws["yard"])
    return str(settings_.archive_root / batch / "archive_report.json")


# --- hostile JSON --------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    """JSON text; ``str`` leaves of the sampled raw forms are written unquoted/escaped."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    if isinstance(value, _Raw):
        return value.text
    return json.dumps(value)


class _Raw:
    def __init__(self, text: str) -> None:
        self.text = text


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1e400", "-1e400", "1e-400", "4.9e-324", '"\\ud800"', '"\\udcff"']).map(_Raw),
    st.text(max_size=10),
)
_json_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


_hostile_json = st.one_of(
    _json_values.map(lambda v: '{"v":' + _json_text(v) + "}"),
    st.integers(60, 70).map(_deep),
    st.sampled_from([_deep(20_000), '{"v":"' + "x" * (5 * 1024 * 1024) + '"}']),
)


@given(text=_hostile_json)
@settings(
    max_examples=int(os.environ.get("RUNYARD_HOSTILE_EXAMPLES", "12")) * 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_hostile_json_is_accepted_whole_or_refused_everywhere(
    cli: Cli, lineage: dict[str, str], yard_path: Path, tmp_path: Path, text: str
) -> None:
    """Every entrance answers the same JSON alike (accepted, or exit 5), and nothing
    accepted ever makes a listing, a show command, the API or rebuild fail."""
    n = next(_counter)
    config_file = tmp_path / f"c{n}.json"
    config_file.write_text(text)
    as_config = documented(cli("config", "add", str(config_file), "--json"))
    run_id = f"j{n}"
    ok(cli("run", "start", "--plan", lineage["plan_version_id"], "--run-id", run_id, "--json"))
    as_summary = documented(
        cli(
            "run",
            "finish",
            run_id,
            "--status",
            "succeeded",
            "--summary",
            f"@{config_file}",
            "--json",
        )
    )
    assert {as_config.exit_code, as_summary.exit_code} <= {0, 5}
    assert as_config.exit_code == as_summary.exit_code, (as_config.stdout, as_summary.stdout)
    # run.json of an imported folder: the same answer, per folder.
    settings_ = load_settings(yard_path)
    folder = settings_.runs_root / f"imp{n}"
    folder.mkdir()
    manifest = {
        "schema_version": 1,
        "run_id": f"imp{n}",
        "plan_version_id": lineage["plan_version_id"],
        "status": "succeeded",
        "started_at": "2026-01-01T00:00:00Z",
    }
    raw = json.dumps(manifest)[:-1] + ',"summary":' + text + "}"
    (folder / "run.json").write_text(raw)
    imported = documented(cli("run", "import", str(folder), "--json"))
    assert imported.exit_code in (0, 5)
    # Whatever was accepted reads back everywhere.
    ok(cli("run", "list", "--json"))
    ok(cli("run", "show", run_id, "--json"))
    ok(cli("config", "list", "--json"))
    ok(cli("plan", "show", lineage["plan_version_id"], "--json"))
    app = create_app(settings_)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for url in ("/api/v1/runs", f"/api/v1/runs/{run_id}", "/ui/runs", f"/ui/runs/{run_id}"):
            _no_server_error(client, url)
    ok(cli("rebuild", "--json"))
