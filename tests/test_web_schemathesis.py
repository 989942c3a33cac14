"""Schemathesis over the OpenAPI document against a real ``runyard serve``: every
operation, generated inputs (coverage, fuzzing, stateful phases): zero server errors,
zero responses outside the document (status codes, content types, bodies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.helpers.server import running_server

CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,"
    "content_type_conformance"
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    yard_path: Path, cli: Cli, lineage: dict[str, str], tmp_path: Path
) -> None:
    for group in ("CH01/001", None):
        args = ["run", "start", "--plan", lineage["plan_version_id"]]
        run = cli.ok(*([*args, "--group", group] if group else args))
        Path(run["path"], "out.txt").write_text("output\n")
        cli.ok("run", "finish", run["run_id"], "--status", "succeeded")
    cli.ok(
        "archive", "--all", "--keep-recent-minutes", "0", "--keep-last-runs", "1", "--run", "--yes"
    )
    with running_server(yard_path, "--no-worker") as base:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{base}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                "15",
                "--generation-deterministic",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # its cache and reports stay out of the checkout
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
