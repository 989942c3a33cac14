"""Runs side by side at a glance (``/ui/runs/compare`` and its JSON twin): runs named by
their plan's label and a short id, best and worst by ``[kpis.NAME] better``, one grouped
bar chart of the KPIs each scaled to its largest magnitude, and "only differences"
hiding the lineage rows that are equal. On SQLite and PostgreSQL: names and labels come
from the registry."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from runyard.web.charts import normalised_bar_chart
from tests.conftest import Cli
from tests.helpers.ui import ui_client

NS = "{http://www.w3.org/2000/svg}"
FIGURE = re.compile(r'<figure class="chart">(.*?)</figure>', re.S)


def _configure_kpis(yard_path: Path, text: str) -> None:
    toml = yard_path / "runyard.toml"
    toml.write_text(toml.read_text() + "\n" + text)


def _finished(cli: Cli, plan: str, summary: dict[str, Any]) -> str:
    run = cli.ok("run", "start", "--plan", plan)
    summary_text = json.dumps(summary)
    cli.ok("run", "finish", run["run_id"], "--status", "succeeded", "--summary", summary_text)
    return str(run["run_id"])


def _plan(cli: Cli, lineage: dict[str, str], label: str | None, horizon: int) -> str:
    args = ["plan", "create", "--scenario", lineage["scenario_id"]]
    args += ["--config", lineage["config_version_id"], "--param", f"horizon={horizon}"]
    if label:
        args += ["--label", label]
    return str(cli.ok(*args)["plan_version_id"])


@pytest.fixture
def runs(cli: Cli, lineage: dict[str, str], yard_path: Path) -> dict[str, Any]:
    """Three runs: two of plan small-base, one of plan big-base; cost is better lower."""
    _configure_kpis(
        yard_path,
        '[kpis.cost]\nbetter = "lower"\nlabel = "Total cost"\nunit = "EUR"\n'
        '[kpis.fill_rate]\nbetter = "higher"\n',
    )
    small = _plan(cli, lineage, "small-base", 52)
    big = _plan(cli, lineage, "big-base", 26)
    ids = [
        _finished(cli, small, {"cost": 120000, "fill_rate": 0.91, "stockouts": 4}),
        _finished(cli, small, {"cost": 90000, "fill_rate": 0.97, "stockouts": 2}),
        _finished(cli, big, {"cost": 150000, "fill_rate": 0.95, "stockouts": 9}),
    ]
    return {"ids": ids, "small": small, "big": big}


def _kpi_figure(text: str) -> ET.Element:
    figure = next(f for f in FIGURE.findall(text) if "share of its largest" in f)
    svg = re.search(r"<svg.*</svg>", figure, re.S)
    assert svg
    return ET.fromstring(svg.group(0))


def _bars(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {
        (b.get("data-series") or "", b.get("data-category") or ""): b
        for b in root.iter(f"{NS}rect")
        if b.get("class") == "bar"
    }


def test_runs_are_named_by_plan_label_and_short_id(yard_path, runs):
    a, b, c = runs["ids"]
    with ui_client(yard_path) as client:
        page = client.get("/ui/runs/compare", params={"ids": [a, b, c]})
        assert page.status_code == 200, page.text
        text = page.text
        for run_id, label in ((a, "small-base"), (b, "small-base"), (c, "big-base")):
            name = f"{label} · {run_id[-6:]}"
            assert f'<th scope="col" class="run-col" title="{run_id}">{name}</th>' in text
        root = _kpi_figure(text)
        legend = [g for g in root.iter(f"{NS}g") if g.get("class") == "legend-item"]
        assert [g.get("data-series") for g in legend] == [
            f"small-base · {a[-6:]}",
            f"small-base · {b[-6:]}",
            f"big-base · {c[-6:]}",
        ]
        assert [g.findtext(f"{NS}title") for g in legend] == [a, b, c]  # full id on hover
        names = client.get("/api/v1/runs/compare", params={"ids": [a, b, c]}).json()["names"]
        assert [n["name"] for n in names] == [g.get("data-series") for g in legend]
        assert [n["plan_label"] for n in names] == ["small-base", "small-base", "big-base"]


def test_better_lower_marks_the_smallest_as_best(yard_path, runs):
    a, b, c = runs["ids"]
    with ui_client(yard_path) as client:
        text = client.get("/ui/runs/compare", params={"ids": [a, b, c]}).text
        row = re.search(r"Total cost <code class=\"muted\">cost</code>.*?</tr>", text, re.S)
        assert row and "(EUR)" in row.group(0) and "↓ better" in row.group(0)
        cells = re.findall(r'<td class="num([^"]*)"', row.group(0))
        assert cells == ["", " kpi-best", " kpi-worst"]
        assert "★ best" in row.group(0) and "✕ worst" in row.group(0)
        fill = re.search(r"<code>fill_rate</code>.*?</tr>", text, re.S)
        assert fill
        assert re.findall(r'<td class="num([^"]*)"', fill.group(0)) == [
            " kpi-worst",
            " kpi-best",
            "",
        ]
        # no direction configured: a neutral highest and lowest
        stockouts = re.search(r"<code>stockouts</code>.*?</tr>", text, re.S)
        assert stockouts
        marks = re.findall(r'<td class="num([^"]*)"', stockouts.group(0))
        assert marks == ["", " kpi-lowest", " kpi-highest"]
        assert "best" not in stockouts.group(0)
        # the chart marks them too
        bars = _bars(_kpi_figure(text))
        assert bars[(f"small-base · {b[-6:]}", "Total cost")].get("data-mark") == "best"
        assert bars[(f"big-base · {c[-6:]}", "Total cost")].get("data-mark") == "worst"
        # the JSON twin says the same
        kpis = {
            r["key"]: r
            for r in client.get("/api/v1/runs/compare", params={"ids": [a, b, c]}).json()["kpis"]
        }
        assert kpis["cost"]["better"] == "lower" and kpis["cost"]["label"] == "Total cost"
        assert kpis["cost"]["best"] == [1] and kpis["cost"]["worst"] == [2]
        assert kpis["cost"]["highest"] == [2] and kpis["cost"]["lowest"] == [1]
        assert kpis["fill_rate"]["best"] == [1] and kpis["fill_rate"]["worst"] == [0]
        assert kpis["stockouts"]["better"] is None and kpis["stockouts"]["best"] == []
        assert kpis["stockouts"]["highest"] == [2] and kpis["stockouts"]["lowest"] == [1]


def test_kpis_of_different_scales_share_one_normalised_chart(yard_path, runs):
    a, b, c = runs["ids"]
    with ui_client(yard_path) as client:
        text = client.get("/ui/runs/compare", params={"ids": [a, b, c]}).text
    figures = [f for f in FIGURE.findall(text) if 'class="bar"' in f]
    assert len(figures) == 1  # one chart for cost (~1e5) and fill rate (~1)
    root = _kpi_figure(text)
    bars = _bars(root)
    assert len(bars) == 9  # 3 KPIs x 3 runs

    def height(run_id: str, label: str, kpi: str) -> float:
        return float(bars[(f"{label} · {run_id[-6:]}", kpi)].get("height") or 0)

    # each KPI's largest value reaches the same height, whatever its scale
    top = height(c, "big-base", "Total cost")
    assert height(b, "small-base", "fill_rate") == pytest.approx(top)
    assert height(c, "big-base", "stockouts") == pytest.approx(top)
    # and the others are their share of it
    assert height(a, "small-base", "Total cost") == pytest.approx(top * 120000 / 150000, 0.02)
    assert height(a, "small-base", "fill_rate") == pytest.approx(top * 0.91 / 0.97, 0.02)
    # the raw value is in the tooltip
    tip = bars[(f"small-base · {a[-6:]}", "Total cost")].findtext(f"{NS}title") or ""
    assert "120,000 EUR" in tip and "80% of the largest" in tip
    assert [t.text for t in root.iter(f"{NS}text") if t.text and t.text.endswith("%")][-1] == (
        "100%"
    )


def test_normalised_chart_handles_negatives_zeros_and_gaps():
    out = normalised_bar_chart(
        "K",
        ["delta", "zero", "gap"],
        [("a", [-50.0, 0.0, None]), ("b", [25.0, 0.0, 3.0])],
    )
    root = ET.fromstring(str(out))
    bars = _bars(root)
    assert ("a", "gap") not in bars and ("b", "gap") in bars
    tip = bars[("a", "delta")].findtext(f"{NS}title") or ""
    assert tip.startswith("a · delta: -50") and "-100% of the largest" in tip
    assert "no data" in str(normalised_bar_chart("K", ["x"], [("a", [None])]))


def test_only_differences_hides_equal_lineage_rows(yard_path, runs):
    a, b, c = runs["ids"]
    with ui_client(yard_path) as client:
        same_plan = client.get("/ui/runs/compare", params={"ids": [a, b], "only_diff": "1"}).text
        assert '<th scope="row">Plan</th>' not in same_plan
        assert '<th scope="row">Scenario</th>' not in same_plan
        assert '<th scope="row">Config version</th>' not in same_plan
        assert "so hidden: plan version, scenario, config version" in same_plan
        # all rows without the toggle
        full = client.get("/ui/runs/compare", params={"ids": [a, b]}).text
        assert '<th scope="row">Plan</th>' in full and '<th scope="row">Scenario</th>' in full
        # two plans: the plan row differs and stays; scenario and config are equal
        mixed = client.get("/ui/runs/compare", params={"ids": [a, c], "only_diff": "1"}).text
        assert re.search(r'<tr class="differs">\s*<th scope="row">Plan</th>', mixed)
        assert f'title="{runs["big"]}">big-base</a>' in mixed
        assert '<th scope="row">Scenario</th>' not in mixed
        assert "so hidden: scenario, config version" in mixed
        lineage = client.get("/api/v1/runs/compare", params={"ids": [a, c]}).json()["lineage"]
        by_key = {r["key"]: r for r in lineage}
        assert by_key["plan_version_id"]["differs"] and not by_key["scenario_id"]["differs"]
        assert by_key["plan_label"]["values"] == ["small-base", "big-base"]


def test_names_stay_unique_and_fall_back_to_the_scenario(yard_path, cli, lineage):
    """Runs of an unlabelled plan are named by its scenario; ids that end alike get a
    longer short id."""
    plan = lineage["plan_version_id"]
    for run_id in ("x-aaaaaa111111", "y-bbbbbb111111"):
        cli.ok("run", "start", "--plan", plan, "--run-id", run_id)
    with ui_client(yard_path) as client:
        ids = ["x-aaaaaa111111", "y-bbbbbb111111"]
        answer = client.get("/api/v1/runs/compare", params={"ids": ids})
        names = [n["name"] for n in answer.json()["names"]]
    assert names == ["base · aa111111", "base · bb111111"]


def test_config_versions_are_named_by_their_names(yard_path: Path, runs, lineage):
    query = "&".join(f"ids={i}" for i in runs["ids"])
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/runs/compare?{query}")
        assert page.status_code == 200
        config = lineage["config_version_id"]
        assert f'<a href="/ui/configs/{config}" title="{config}">policy-v1</a>' in page.text
        twin = client.get(f"/api/v1/runs/compare?{query}").json()
        assert twin["config_names"] == {config: "policy-v1"}
