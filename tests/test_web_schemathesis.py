"""Schemathesis over the OpenAPI document against a real ``runyard serve``: every
operation, generated inputs (coverage, fuzzing, stateful phases): zero server errors,
zero responses outside the document (status codes, content types, bodies).

The yard is hostile as well as clean (issue 13): beside ordinary runs and an archived
batch it holds run folders with names and link targets that are not UTF-8, a FIFO, a
socket, dangling and looping links, a summary and tags as deep and as large as runyard
accepts, an active run whose folder was replaced by a symlink, and a folder in the runs
root whose name is not UTF-8. Schemathesis draws run ids, batch ids and artifact paths
from those runs (its dictionaries) often, so the hostile runs are not just listed."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runyard import fsnames
from runyard.canonical import MAX_JSON_DEPTH
from tests.conftest import Cli
from tests.helpers.server import running_server

CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,"
    "content_type_conformance"
)
REPORT = os.environ.get("SCHEMATHESIS_TEST_REPORT", "").split()
ARCHIVE_NOW = ("--keep-recent-minutes", "0", "--keep-last-runs", "0", "--run", "--yes")


def _odd_tree(folder: Path) -> list[bytes]:
    """Names and targets that are not UTF-8, a FIFO, a socket, dangling and looping
    links in ``folder``; the relative paths (bytes) of what it made."""
    names = [b"bad\xff.txt", b"dir\xfe", b"dir\xfe/inner.txt", b"ln\xfd", b"dangling", b"loop"]
    raw = os.fsencode(folder)
    Path(os.fsdecode(raw + b"/bad\xff.txt")).write_bytes(b"bytes\n")
    os.mkdir(raw + b"/dir\xfe")
    Path(os.fsdecode(raw + b"/dir\xfe/inner.txt")).write_text("inside\n")
    os.symlink(b"/nowhere/\xfc\xfb", raw + b"/ln\xfd")
    os.symlink(b"../../nowhere", raw + b"/dangling")
    os.symlink(b"loop", raw + b"/loop")
    os.mkfifo(raw + b"/fifo")
    here = os.getcwd()
    os.chdir(folder)  # a socket's path must be short: bound relative to its folder
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("sock")
    finally:
        os.chdir(here)
    return [*names, b"fifo", b"sock", b"out.txt"]


def _finished_run(cli: Cli, plan: str, *args: str, summary: Any = None) -> dict[str, Any]:
    run = cli.ok("run", "start", "--plan", plan, *args)
    Path(run["path"], "out.txt").write_text("output\n")
    finish = ["run", "finish", run["run_id"], "--status", "succeeded"]
    if summary is not None:
        finish += ["--summary", json.dumps(summary)]
    cli.ok(*finish)
    return dict(run)


def _hostile_yard(yard_path: Path, cli: Cli, plan: str, tmp_path: Path) -> dict[str, list[str]]:
    """Fill the yard; the values schemathesis should draw path parameters from."""
    clean = [_finished_run(cli, plan, *g) for g in (["--group", "CH01/001"], [])]
    archived_odd = _finished_run(cli, plan, "--group", "CH02/001")
    _odd_tree(Path(archived_odd["path"]))
    for run in (clean[0], archived_odd):
        cli.ok("archive", "--run-id", run["run_id"], *ARCHIVE_NOW)
    odd = _finished_run(cli, plan, "--group", "CH02/002")
    paths = _odd_tree(Path(odd["path"]))
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = [deep]
    tags = [f"k{i}=" + "v\u00e9\u6f22" * 200 for i in range(50)]
    deep_run = _finished_run(
        cli,
        plan,
        *[a for t in tags for a in ("--tag", t)],
        summary={"deep": deep, "wide": {f"kpi{i}": i / 7 for i in range(500)}, "big": 1.7e308},
    )
    swapped = _finished_run(cli, plan, "--group", "CH03/001")
    outside = tmp_path / "elsewhere"
    Path(swapped["path"]).rename(outside)
    Path(swapped["path"]).symlink_to(outside, target_is_directory=True)
    os.mkdir(os.fsencode(yard_path / "runs") + b"/legacy\xff")
    batches = sorted(p.name for p in (yard_path / "_archive").iterdir() if p.is_dir())
    assert batches, "the archive made no batch"
    return {
        "run_ids": [r["run_id"] for r in (*clean, archived_odd, odd, deep_run, swapped)],
        "batch_ids": batches,
        "paths": [fsnames.shown(os.fsdecode(p)) for p in paths],
        "path_b64s": [base64.b64encode(p).decode() for p in paths],
        "odd_run": [odd["run_id"]],
    }


def _config(values: dict[str, list[str]]) -> str:
    """A schemathesis.toml drawing path parameters from the hostile runs most times; the
    download of one file asks the run with odd names for its paths more often."""
    lines = ["generation.max-examples = 15", ""]
    for name, entries in values.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(entries)}", ""]

    def binding(parameter: str, name: str, probability: float) -> str:
        return f'"{parameter}" = {{ dictionary = "{name}", probability = {probability} }}'

    lines += [
        "[parameters]",
        binding("path.run_id", "run_ids", 0.8),
        binding("path.batch_id", "batch_ids", 0.8),
        binding("path.path", "paths", 0.8),
        binding("query.path_b64", "path_b64s", 0.5),
        "",
        "[[operations]]",
        'include-name = "GET /api/v1/runs/{run_id}/artifacts/{path}"',
        "generation.max-examples = 40",
        "[operations.parameters]",
        binding("path.run_id", "odd_run", 1.0),
        binding("path.path", "paths", 0.9),
        binding("query.path_b64", "path_b64s", 0.7),
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    yard_path: Path, cli: Cli, lineage: dict[str, str], tmp_path: Path
) -> None:
    values = _hostile_yard(yard_path, cli, lineage["plan_version_id"], tmp_path)
    work = tmp_path / "schemathesis"
    work.mkdir()
    (work / "schemathesis.toml").write_text(_config(values))
    with running_server(yard_path, "--no-worker") as base:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{base}/openapi.json",
                "--checks",
                CHECKS,
                "--generation-deterministic",
                *REPORT,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=work,  # its config; its cache and reports stay out of the checkout
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
