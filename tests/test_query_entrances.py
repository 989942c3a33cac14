"""The query at every entrance: the CLI, Python, the API, the UI and saved views; and
every writer of a summary (run finish, start_run, record_runs, jobs, run import,
rebuild, the migration's backfill) makes it queryable at once. Both engines."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import runyard
from runyard.config import load_settings
from runyard.db import schema
from runyard.examples.psi import example_path
from runyard.web.app import create_app
from tests.conftest import Cli

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _seed(yard: runyard.Yard, plan: str) -> list[str]:
    made = yard.record_runs(
        [
            {
                "plan_version_id": plan,
                "run_id": f"r{i}",
                "summary": {"fill_rate": rate, "cost": {"total": cost}},
                "tags": {"owner": owner},
                "started_at": T0 + timedelta(minutes=i),
                "finished_at": T0 + timedelta(minutes=i, seconds=30),
                "status": status,
            }
            for i, (rate, cost, owner, status) in enumerate(
                [
                    (0.99, 300.0, "ann", "succeeded"),
                    (0.90, 100.0, "bob", "succeeded"),
                    (0.97, 200.0, "ann", "failed"),
                    (0.96, 250.0, "bob", "succeeded"),
                ]
            )
        ]
    )
    return [r.run_id for r in made]


def _ids(document: dict[str, Any]) -> list[str]:
    return [r["run_id"] for r in document["items"]]


def test_cli_where_and_order_by(cli: Cli, yard: runyard.Yard, lineage):
    _seed(yard, lineage["plan_version_id"])
    found = cli.ok(
        "run", "list", "--where", "kpi.fill_rate >= 0.95", "--order-by", "kpi.cost.total"
    )
    assert _ids(found) == ["r2", "r3", "r0"]
    found = cli.ok(
        "run",
        "list",
        "--where",
        "tags.owner = 'ann' or status = 'failed'",
        "--order-by",
        "kpi.fill_rate desc",
    )
    assert _ids(found) == ["r0", "r2"]
    found = cli.ok("run", "list", "--order-by", "kpi.fill_rate asc", "--limit", "3")
    assert _ids(found) == ["r1", "r3", "r2"] and found["next_cursor"]
    rest = cli.ok("run", "list", "--order-by", "kpi.fill_rate asc", "--after", found["next_cursor"])
    assert _ids(rest) == ["r0"]
    table = cli("run", "list", "--where", "kpi.fill_rate >= 0.95", "--columns", "cost.total")
    assert table.exit_code == 0 and "cost.total" in table.stdout and "300" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "kpi.fill_rate >"], "at column 16: expected a value after '>'"),
        (["--where", "kpi.fil_rate > 0.5"], "did you mean kpi.fill_rate?"),
        (["--where", "stauts = 'failed'"], "did you mean 'status'?"),
        (["--order-by", "kpi.fill_rate sideways"], "expected asc, desc or ','"),
    ],
)
def test_cli_refuses_a_bad_query_with_exit_5(cli: Cli, yard, lineage, args, message):
    _seed(yard, lineage["plan_version_id"])
    result = cli("run", "list", *args)
    assert result.exit_code == 5
    assert message in result.stderr


def test_a_cursor_only_continues_its_own_order(cli: Cli, yard, lineage):
    _seed(yard, lineage["plan_version_id"])
    page = cli.ok("run", "list", "--order-by", "kpi.fill_rate", "--limit", "1")
    result = cli("run", "list", "--limit", "1", "--after", page["next_cursor"])
    assert result.exit_code == 5 and "another order" in result.stderr


def test_python_list_runs(yard: runyard.Yard, lineage):
    _seed(yard, lineage["plan_version_id"])
    page = yard.list_runs(where="kpi.cost.total < 260", order_by=["kpi.cost.total desc"])
    assert [r.run_id for r in page.items] == ["r3", "r2", "r1"]


def test_every_writer_is_queryable_at_once(cli: Cli, yard: runyard.Yard, lineage, tmp_path):
    plan = lineage["plan_version_id"]
    # run start + run finish (CLI)
    started = cli.ok("run", "start", "--plan", plan, "--run-id", "by-cli")
    cli.ok("run", "finish", started["run_id"], "--status", "succeeded", "--summary", '{"w": 1}')
    # start_run (Python)
    with yard.start_run(plan_version_id=plan, run_id="by-python", tags={"via": "py"}) as run:
        run.log_summary({"w": 2})
    # record_runs
    yard.record_runs([{"plan_version_id": plan, "run_id": "by-record", "summary": {"w": 3}}])
    # run import: a folder with a manifest
    folder = yard.settings.runs_root / "by-import"
    folder.mkdir()
    manifest = json.loads((yard.settings.runs_root / "by-record" / "run.json").read_text())
    manifest.update(run_id="by-import", summary={"w": 4})
    (folder / "run.json").write_text(json.dumps(manifest))
    cli.ok("run", "import", str(folder))
    # a planning job, run by a worker, whose runner (the PSI example) writes the summary
    cli.ok("scenario", "add", "small", "--data", str(example_path("small.json")))
    psi_plan = cli.ok(
        "plan", "create", "--scenario", "small", "--config", lineage["config_version_id"]
    )
    job = cli.ok("plan", "run", psi_plan["plan_version_id"], "--wait")
    job_run = job["run_id"]
    found = cli.ok("run", "list", "--where", "kpi.w >= 1", "--order-by", "kpi.w")
    assert _ids(found) == ["by-cli", "by-python", "by-record", "by-import"]
    assert _ids(cli.ok("run", "list", "--where", "tag.via = 'py'")) == ["by-python"]
    assert job_run in _ids(cli.ok("run", "list", "--where", "kpi.fill_rate is not null"))


def test_rebuild_and_the_migration_backfill_fill_the_index(cli: Cli, yard, lineage):
    _seed(yard, lineage["plan_version_id"])
    query = ["run", "list", "--where", "kpi.fill_rate > 0.95 and tag.owner = 'bob'"]
    assert _ids(cli.ok(*query)) == ["r3"]
    with yard.write() as conn:
        for table in ("run_kpis", "run_tags", "plan_params", "config_values"):
            conn.execute(text(f"DELETE FROM {table}"))
    gone = cli(*query)  # the index is gone: no run has the KPI now
    assert gone.exit_code == 5 and "no run has the KPI 'fill_rate'" in gone.stderr
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    with yard.engine.connect() as conn:  # …so take the registry back to 0004 and upgrade
        config.attributes["connection"] = conn
        command.downgrade(config, "0004_skip_reasons")
        command.upgrade(config, "head")
        conn.commit()
    assert _ids(cli.ok(*query)) == ["r3"]
    assert _ids(cli.ok("run", "list", "--where", "param.horizon = 52")) == _ids(
        cli.ok("run", "list")
    )


def _client(yard_path: Path) -> TestClient:
    return TestClient(create_app(load_settings(yard_path)), base_url="http://127.0.0.1")


def test_api_where_and_order_by(yard_path: Path, yard, lineage):
    _seed(yard, lineage["plan_version_id"])
    with _client(yard_path) as client:
        answer = client.get(
            "/api/v1/runs",
            params=[("where", "kpi.fill_rate >= 0.95"), ("order_by", "kpi.cost.total desc")],
        )
        assert answer.status_code == 200
        assert _ids(answer.json()) == ["r0", "r3", "r2"]
        bad = client.get("/api/v1/runs", params={"where": "kpi.fill_rate >"})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_query"
        assert "at column 16: expected a value after '>'" in bad.json()["error"]["message"]
        unknown = client.get("/api/v1/runs", params={"order_by": "kpi.nope"})
        assert unknown.status_code == 422


def test_saved_views_from_the_cli_the_api_and_the_ui(cli: Cli, yard_path: Path, yard, lineage):
    _seed(yard, lineage["plan_version_id"])
    saved = cli.ok(
        "view",
        "save",
        "cheap",
        "--where",
        "kpi.fill_rate >= 0.95",
        "--order-by",
        "kpi.cost.total",
        "--columns",
        "cost.total,fill_rate",
    )
    assert saved["order_by"] == ["kpi.cost.total asc"]
    assert saved["columns"] == ["cost.total", "fill_rate"]
    shown = cli.ok("view", "show", "cheap")
    assert _ids(shown["runs"]) == ["r2", "r3", "r0"]
    bad = cli("view", "save", "broken", "--where", "kpi.fill_rate >")
    assert bad.exit_code == 5
    assert [v["name"] for v in cli.ok("view", "list")["items"]] == ["cheap"]
    with _client(yard_path) as client:
        assert [v["name"] for v in client.get("/api/v1/views").json()["items"]] == ["cheap"]
        put = client.put("/api/v1/views/ann", json={"where": "tag.owner = 'ann'"})
        assert put.status_code == 200, put.text
        assert client.put("/api/v1/views/x", json={"where": "kpi.nope > 1"}).status_code == 422
        page = client.get("/ui/runs", params={"view": "cheap"})
        assert page.status_code == 200
        assert 'aria-current="page"' in page.text and "cost.total" in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        posted = client.post(
            "/ui/views",
            data={
                "csrf_token": csrf.group(1),
                "name": "bob's",
                "where": "tag.owner = 'bob'",
                "order_by": ["kpi.fill_rate desc"],
                "columns": ["fill_rate"],
            },
            follow_redirects=False,
        )
        assert posted.status_code == 303, posted.text
        opened = client.get(posted.headers["location"])
        assert opened.status_code == 200 and "r3" in opened.text and "r1" in opened.text
        assert client.delete("/api/v1/views/ann").status_code == 200
    assert sorted(v["name"] for v in cli.ok("view", "list")["items"]) == ["bob's", "cheap"]
    assert cli("view", "delete", "nope").exit_code == 3


def test_ui_runs_page_speaks_labels_and_kpis(cli: Cli, yard_path: Path, yard, lineage):
    plan = cli.ok(
        "plan",
        "create",
        "--scenario",
        "base",
        "--config",
        lineage["config_version_id"],
        "--label",
        "small-base",
    )
    _seed(yard, plan["plan_version_id"])
    with _client(yard_path) as client:
        page = client.get(
            "/ui/runs", params={"where": "kpi.fill_rate >= 0.95", "order_by": "kpi.cost.total"}
        )
        assert page.status_code == 200
        body = page.text
        assert ">small-base</a>" in body and plan["plan_version_id"] + "</a>" not in body
        assert ">base</a>" in body  # the scenario by its name
        assert 'aria-sort="ascending"' in body
        assert body.index(">r2<") < body.index(">r3<") < body.index(">r0<")
        assert "cost.total" in body and "fill_rate" in body
        # the header of the column sorted by sorts the other way
        assert "&amp;order_by=kpi.cost.total+desc" in body
        assert 'title="r0"' in body
        assert '<link rel="alternate" type="application/json"' in body
        assert "where=kpi.fill_rate" in body
        error = client.get("/ui/runs", params={"where": "kpi.fill_rate >"})
        assert error.status_code == 422
        assert "This query cannot run" in error.text and "at column 16" in error.text
        partial = client.get(
            "/ui/runs", params={"where": "kpi.fill_rate >"}, headers={"HX-Request": "true"}
        )
        assert partial.status_code == 200 and "This query cannot run" in partial.text
        chosen = client.get("/ui/runs", params=[("columns", "cost.total")])
        assert "fill_rate</a>" not in chosen.text and "cost.total" in chosen.text


FUZZ_PIECES = st.sampled_from(
    [
        "kpi.fill_rate",
        "kpi.cost.total",
        "tag.owner",
        "param.horizon",
        "config.lot_size",
        "status",
        "duration",
        "started_at",
        "plan_label",
        "scenario",
        " = ",
        " != ",
        " < ",
        " >= ",
        " in (",
        ")",
        "(",
        ", ",
        " like ",
        " is null",
        " is not null",
        " and ",
        " or ",
        "not ",
        "'ann'",
        "'a%'",
        "0.95",
        "-1e3",
        "1e400",
        "2026-11-02",
        "true",
        "'\u00e9\u2603'",
        "'\\x00'",
        "`",
        '"',
        "asc",
        " desc",
    ]
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    where=st.lists(FUZZ_PIECES, max_size=12).map("".join),
    order=st.lists(FUZZ_PIECES, max_size=3).map("".join),
)
def test_any_query_is_a_page_or_a_422_never_a_500(yard_path: Path, lineage, where, order):
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        api = client.get("/api/v1/runs", params={"where": where, "order_by": order})
        assert api.status_code in (200, 422), api.text
        if api.status_code == 422:
            assert api.json()["error"]["code"] in ("invalid_query", "invalid")
        page = client.get("/ui/runs", params={"where": where, "order_by": order})
        assert page.status_code in (200, 422), page.text[:500]


def test_a_page_of_runs_equals_the_validated_runs(yard: runyard.Yard, lineage):
    """list_runs builds its runs without validating them again; they must be exactly
    what the validating path (get_run) builds, and behave as models (copy, dump)."""
    from runyard.registry.runs import get_run

    _seed(yard, lineage["plan_version_id"])
    page = yard.list_runs(limit=10).items
    for run in page:
        assert run == get_run(yard, run.run_id)
        assert run.model_dump() == get_run(yard, run.run_id).model_dump()
        assert run.model_copy(update={"group": "x"}).group == "x"


def test_names_and_texts_no_index_can_hold_are_left_out_not_refused(
    cli: Cli, yard: runyard.Yard, lineage, tmp_path
):
    """PostgreSQL refuses NUL in text: a config, params or a summary holding one is still
    stored whole (as JSON), only that value stays out of the query index."""
    config_file = tmp_path / "nul.json"
    config_file.write_text(json.dumps({"note": "a\u0000b", "lot": 3, "k\u0000": 1}))
    config = cli.ok("config", "add", str(config_file))
    assert config["content"]["note"] == "a\u0000b"
    plan = cli.ok("plan", "create", "--scenario", "base", "--config", config["config_version_id"])
    yard.record_runs(
        [
            {
                "plan_version_id": plan["plan_version_id"],
                "run_id": "nul-run",
                "summary": {"fill_rate": 0.5, "odd\u0000name": 2},
            }
        ]
    )
    found = cli.ok("run", "list", "--where", "config.lot = 3 and kpi.fill_rate = 0.5")
    assert _ids(found) == ["nul-run"]
    assert cli.ok("run", "show", "nul-run")["summary"]["odd\u0000name"] == 2


def test_known_names_are_every_distinct_name_in_order(yard: runyard.Yard, lineage):
    from runyard.registry.run_query import known_names

    _seed(yard, lineage["plan_version_id"])
    with yard.read() as conn:
        assert known_names(conn, "kpi") == ["cost.total", "fill_rate"]
        assert known_names(conn, "kpi", 1) == ["cost.total"]
        assert known_names(conn, "tag") == ["owner"]
        assert known_names(conn, "param") == ["horizon"]
        assert known_names(conn, "config") == ["lot_size", "safety_stock_periods"]
