"""docs/query.md: every example in it runs against the demo yard and does what the page
says (exit 0, or the error it shows)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

import runyard
from runyard.config import load_settings
from runyard.demo import build_demo
from runyard.web.app import create_app
from tests.conftest import Cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "query.md"


def _examples() -> list[tuple[str, str | None]]:
    """(command line, the error it prints or None) for each ``$ runyard`` line."""
    out: list[tuple[str, str | None]] = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ runyard "):
                following = lines[i + 1] if i + 1 < len(lines) else ""
                error = following[len("error: ") :] if following.startswith("error: ") else None
                out.append((line[2:], error))
    return out


@pytest.fixture(scope="module")
def demo_yard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("RUNYARD_DB", "RUNYARD_YARD", "RUNYARD_SKIP_SIMULATION"):
            mp.delenv(name, raising=False)
        target = tmp_path_factory.mktemp("querydocs") / "demo-yard"
        build_demo(target)
    return target


def test_the_page_has_examples_of_each_kind():
    found = _examples()
    assert len(found) >= 12
    assert sum(1 for _, error in found if error) >= 5


@pytest.mark.parametrize(("line", "error"), _examples(), ids=lambda v: str(v)[:60])
def test_every_cli_example_runs(demo_yard: Path, monkeypatch, line, error):
    monkeypatch.delenv("RUNYARD_DB", raising=False)
    with runyard.open_yard(demo_yard) as yard:
        plan_id = next(
            r.plan_version_id
            for r in yard.list_runs(where="plan_label = 'small-base'", limit=1).items
        )
    args = shlex.split(line.replace("PLAN_ID", plan_id or ""))[1:]
    result = Cli(demo_yard)(*args)
    if error is None:
        assert result.exit_code == 0, (line, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    else:
        assert result.exit_code == 5, (line, result.stderr)
        assert f"error: {error}" in result.stderr


def test_the_query_examples_find_runs(demo_yard: Path, monkeypatch):
    monkeypatch.delenv("RUNYARD_DB", raising=False)
    with runyard.open_yard(demo_yard) as yard:
        page = yard.list_runs(where="kpi.fill_rate >= 0.95", order_by="kpi.total_cost asc")
        costs = [r.summary["total_cost"] for r in page.items]
        assert costs and costs == sorted(costs)
        assert all(r.summary["fill_rate"] >= 0.95 for r in page.items)
        missed = yard.list_runs(where="kpi.fill_rate < 0.95 or status = 'failed'").items
        assert missed and all(r.summary["fill_rate"] < 0.95 for r in missed)


def test_the_python_and_api_examples_run(demo_yard: Path, monkeypatch):
    monkeypatch.delenv("RUNYARD_DB", raising=False)
    text = DOC.read_text()
    python = re.search(r"```python\n(.*?)```", text, re.S)
    assert python is not None
    monkeypatch.chdir(demo_yard.parent)
    exec(compile("import runyard\n" + python.group(1), "query.md", "exec"), {})
    request = re.search(r"^GET (/api/v1/runs\?\S+)$", text, re.M)
    assert request is not None
    app = create_app(load_settings(demo_yard))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.get(request.group(1))
        assert answer.status_code == 200, answer.text
        assert answer.json()["items"]
        assert "kpi.fill_rate >= 0.95" in unquote(request.group(1))
