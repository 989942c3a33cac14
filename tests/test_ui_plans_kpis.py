"""Plans at a glance: the plans list (``/ui/plans`` and ``/api/v1/plans``) gives each
plan's run count and its mean of each configured KPI from two grouped queries for the
whole page; a plan's runs table has the KPI columns with best and worst marked. On
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import runyard
from runyard.registry.plans import plan_stats
from runyard.web.ui import plans as plans_ui
from tests.conftest import Cli
from tests.helpers.ui import ui_client

KPIS = (
    '[kpis.cost]\nbetter = "lower"\nlabel = "Cost"\nunit = "EUR"\n'
    '[kpis."svc.fill"]\nlabel = "Fill"\n'
)


def _finish(cli: Cli, plan: str, summary: dict[str, Any], status: str = "succeeded") -> str:
    run = cli.ok("run", "start", "--plan", plan)
    text = json.dumps(summary)
    cli.ok("run", "finish", run["run_id"], "--status", status, "--summary", text)
    return str(run["run_id"])


@pytest.fixture
def plans(cli: Cli, lineage: dict[str, str], yard_path: Path) -> dict[str, Any]:
    """Three plans: one with three runs (a nested KPI, one run without cost), one with a
    single run, one with none."""
    toml = yard_path / "runyard.toml"
    toml.write_text(toml.read_text() + "\n" + KPIS)
    made: dict[str, Any] = {"summaries": {}}
    for label in ("alpha", "beta", "empty"):
        created = cli.ok(
            "plan",
            "create",
            "--scenario",
            lineage["scenario_id"],
            "--config",
            lineage["config_version_id"],
            "--label",
            label,
        )
        made[label] = created["plan_version_id"]
        made["summaries"][label] = []
    for summary, status in (
        ({"cost": 100.5, "svc": {"fill": 0.9}}, "succeeded"),
        ({"cost": 130, "svc": {"fill": 0.8}}, "failed"),
        ({"svc": {"fill": 0.95}, "note": "no cost"}, "succeeded"),
    ):
        _finish(cli, made["alpha"], summary, status)
        made["summaries"]["alpha"].append(summary)
    _finish(cli, made["beta"], {"cost": 70, "svc": {"fill": 0.99}})
    made["summaries"]["beta"].append({"cost": 70, "svc": {"fill": 0.99}})
    return made


def _python_mean(summaries: list[dict[str, Any]], name: str) -> float | None:
    values = []
    for s in summaries:
        node: Any = s
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, int | float):
            values.append(float(node))
    return statistics.fmean(values) if values else None


@contextmanager
def counting(yard_path: Path) -> Iterator[list[str]]:
    """Every SQL statement the app's engines run meanwhile."""
    from sqlalchemy.engine import Engine

    statements: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", listen)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", listen)


def test_plan_list_means_equal_a_python_mean(yard_path, plans):
    with ui_client(yard_path) as client:
        items = {p["label"]: p for p in client.get("/api/v1/plans").json()["items"]}
        assert items["alpha"]["run_count"] == 3 and items["beta"]["run_count"] == 1
        assert items["empty"]["run_count"] == 0
        for label in ("alpha", "beta", "empty"):
            means = items[label]["kpi_means"]
            assert list(means) == ["cost", "svc.fill"]  # the configured order
            for name in means:
                expected = _python_mean(plans["summaries"][label], name)
                if expected is None:
                    assert means[name] is None
                else:
                    assert means[name] == pytest.approx(expected)
        assert items["alpha"]["kpi_means"]["cost"] == pytest.approx((100.5 + 130) / 2)
        # the page shows them, formatted, with the run count linking to the runs
        page = client.get("/ui/plans").text
        assert '<th class="num kpi-mean"' in page and "Cost (EUR) <span" in page
        row = re.search(rf'href="/ui/plans/{plans["alpha"]}".*?</tr>', page, re.S)
        assert row
        assert f'<a href="/ui/runs?plan_version_id={plans["alpha"]}">3</a>' in row.group(0)
        assert ">115.2</td>" in row.group(0) and ">0.8833</td>" in row.group(0)
        empty = re.search(rf'href="/ui/plans/{plans["empty"]}".*?</tr>', page, re.S)
        assert empty and '<td class="num">0</td>' in empty.group(0)
        assert empty.group(0).count('<td class="num">—</td>') == 2


def test_plan_list_without_configured_kpis_still_counts(yard_path, cli, lineage):
    _finish(cli, lineage["plan_version_id"], {"cost": 1})
    with ui_client(yard_path) as client:
        (item,) = client.get("/api/v1/plans").json()["items"]
        assert item["run_count"] == 1 and item["kpi_means"] == {}
        page = client.get("/ui/plans").text
        assert "kpi-mean" not in page and "Add <code>[kpis.NAME]</code>" in page


def test_plan_list_is_two_grouped_queries_whatever_the_page(yard_path, plans, cli, lineage):
    """No query per plan: a page of 3 plans and a page of 13 run the same statements."""

    def statements_for_page() -> list[str]:
        with ui_client(yard_path) as client:
            client.get("/ui/plans")  # warm up: sessions, the web secret
            with counting(yard_path) as seen:
                assert client.get("/ui/plans").status_code == 200
                assert client.get("/api/v1/plans").status_code == 200
        # The token table is re-read at most once a second whatever the page (its
        # snapshot may expire between two requests on a slow machine): not a per-plan query.
        return [s for s in seen if "api_tokens" not in s]

    few = statements_for_page()
    for i in range(10):
        cli.ok(
            "plan",
            "create",
            "--scenario",
            lineage["scenario_id"],
            "--config",
            lineage["config_version_id"],
            "--label",
            f"more-{i}",
        )
    many = statements_for_page()
    assert len(many) == len(few)
    grouped = [s for s in many if "GROUP BY" in s.upper()]
    assert len(grouped) == 4  # count and means, for the page and for its JSON twin
    assert sum("avg(" in s.lower() for s in many) == 2


def test_plan_stats_reads_many_plans_at_once(yard_path, plans):
    with runyard.open_yard(yard_path) as yard, yard.read() as conn:
        stats = plan_stats(conn, [plans["alpha"], plans["beta"], plans["empty"]], ["cost"])
        assert stats[plans["beta"]].kpi_means == {"cost": 70.0}
        assert stats[plans["empty"]].run_count == 0
        assert plan_stats(conn, [], ["cost"]) == {}
        assert plan_stats(conn, [plans["alpha"]])[plans["alpha"]].kpi_means == {}


def test_plan_page_shows_configured_kpis_with_best_and_worst(yard_path, plans):
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/plans/{plans['alpha']}").text
    header = re.search(r"<thead>\s*<tr><th>Run</th>.*?</tr>", page, re.S)
    assert header
    assert re.findall(r'<th class="num"[^>]*>([^<]+)</th>', header.group(0)) == [
        "Cost (EUR)",
        "Fill",
    ]
    rows = re.findall(r"<tr>\s*<td><a class=\"id\" href=\"/ui/runs/.*?</tr>", page, re.S)
    assert len(rows) == 3  # newest first: no cost, 130 (failed), 100.5
    costs = [re.findall(r'<td class="num([^"]*)">([^< ]*)', r)[0] for r in rows]
    assert costs == [("", "—"), (" kpi-worst", "130"), (" kpi-best", "100.5")]
    assert "★ best" in rows[2] and "✕ worst" in rows[1]
    # Fill has no direction: no marks
    fills = [re.findall(r'<td class="num([^"]*)">([^<]*)', r)[1] for r in rows]
    assert fills == [("", "0.95"), ("", "0.8"), ("", "0.9")]


def test_plan_page_without_configured_kpis_shows_the_most_common(yard_path, cli, lineage):
    plan = lineage["plan_version_id"]
    _finish(cli, plan, {"a": 1, "b": {"c": 2}, "t": "x"})
    _finish(cli, plan, {"a": 3})
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/plans/{plan}").text
    assert '<th class="num">a</th>' in page and '<th class="num">b.c</th>' in page
    assert "kpi-best" not in page and "★" not in page


def test_plan_page_caps_kpi_columns(yard_path, cli, lineage, monkeypatch):
    monkeypatch.setattr(plans_ui, "KPIS_SHOWN", 1)
    toml = yard_path / "runyard.toml"
    toml.write_text(toml.read_text() + "\n" + KPIS)
    _finish(cli, lineage["plan_version_id"], {"cost": 1, "svc": {"fill": 1}})
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/plans/{lineage['plan_version_id']}").text
    assert "Cost (EUR)" in page and ">Fill</th>" not in page
