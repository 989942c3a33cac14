"""The web UI in a real browser: Playwright drives Debian's Chromium
(``/usr/bin/chromium``, never a downloaded browser) against a real ``runyard serve``
process on a temporary yard, through the operators' whole day: a plan from a scenario
page, its job watched to the end, the run found by plan, opened, compared with another
(chart), archived (preview, then for real), restored from the archives page, and the
closed legacy path. Every step leaves a screenshot in ``test-artifacts/browser/``.

Without Chromium the test is skipped with a loud reason, unless
``RUNYARD_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which makes that a failure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.helpers.server import running_server

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("RUNYARD_REQUIRE_BROWSER") == "1"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
PSI_DATA = Path(__file__).resolve().parent.parent / "src/runyard/examples/psi/data"

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]


def _chromium_or_skip() -> None:
    if CHROMIUM.is_file():
        return
    reason = (
        f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium) "
        "to run the browser tests"
    )
    if REQUIRE_BROWSER:
        pytest.fail("RUNYARD_REQUIRE_BROWSER=1 but " + reason, pytrace=False)
    pytest.skip("BROWSER TESTS SKIPPED: " + reason)


@pytest.fixture
def page() -> Iterator[Any]:
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(20_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


class Shots:
    """Numbered screenshots of each step, kept as test artifacts."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    def __call__(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.folder / f"{self.n:02d}-{name}.png"), full_page=True)


@pytest.fixture
def planning_yard(yard_path: Path, cli: Cli) -> dict[str, str]:
    """A scenario with PSI data and a config version; guards that let a fresh run go."""
    config_file = yard_path / "runyard.toml"
    text = config_file.read_text()
    text = re.sub(r"(?m)^keep_recent_minutes = .*$", "keep_recent_minutes = 0", text)
    text = re.sub(r"(?m)^keep_last_runs = .*$", "keep_last_runs = 0", text)
    if "keep_recent_minutes = 0" not in text:
        text = "keep_recent_minutes = 0\nkeep_last_runs = 0\n" + text
    config_file.write_text(text)
    scenario = cli.ok("scenario", "add", "small", "--data", str(PSI_DATA / "small.json"))
    config = cli.ok("config", "add", str(PSI_DATA / "config-base.json"), "--name", "base")
    return {"scenario_id": scenario["scenario_id"], "config": config["config_version_id"]}


def _column(page: Any, heading: str) -> list[str]:
    """The cells of the runs table's column ``heading``, top to bottom."""
    headings = [h.strip() for h in page.locator("table.runs thead th").all_inner_texts()]
    index = next(i for i, h in enumerate(headings) if h.startswith(heading))
    return page.locator(f"table.runs tbody tr td:nth-child({index + 1})").all_inner_texts()


def _wait_for_job(page: Any, shots: Shots) -> str:
    """On a job page: htmx refreshes it until the job has finished; its final status."""
    page.wait_for_selector(
        "[data-job-status='succeeded'], [data-job-status='failed']", timeout=60_000
    )
    status = page.locator("[data-job-status]").first.get_attribute("data-job-status")
    assert status == "succeeded", page.content()[-3000:]
    return str(status)


def test_operators_day_in_a_real_browser(page, yard_path, planning_yard):
    shots = Shots(page, ARTIFACTS)
    with running_server(yard_path) as base:
        # 1. A plan from the scenario page: "new plan", choose the config, create and run.
        page.goto(f"{base}/ui/scenarios")
        shots("scenarios")
        page.get_by_role("link", name=re.compile("new plan", re.I)).first.click()
        page.wait_for_url(re.compile(r"/ui/plans/new\?scenario="))
        page.get_by_label(re.compile("config", re.I)).select_option(planning_yard["config"])
        shots("new-plan")
        page.get_by_role("button", name=re.compile("create and run", re.I)).click()
        page.wait_for_url(re.compile(r"/ui/jobs/job-"))
        shots("job-running")
        # 2. The job page refreshes itself until the job is done.
        _wait_for_job(page, shots)
        shots("job-done")
        plan_id = page.locator("a[href^='/ui/plans/pv-']").first.get_attribute("href")
        assert plan_id
        plan_version_id = plan_id.rsplit("/", 1)[1]

        # A second run of the same plan, for the comparison.
        page.goto(f"{base}/ui/plans/{plan_version_id}")
        page.get_by_role("button", name=re.compile("run again", re.I)).click()
        page.wait_for_url(re.compile(r"/ui/jobs/job-"))
        _wait_for_job(page, shots)

        # 3. The run history, queried by a KPI and the plan, then sorted by the KPI.
        page.goto(f"{base}/ui/runs")
        page.get_by_label("Query", exact=True).fill(
            f"kpi.fill_rate >= 0 and plan = '{plan_version_id}'"
        )
        page.get_by_role("button", name="Search").click()
        page.wait_for_url(re.compile(r"where=kpi"))
        page.locator("table.runs caption", has_text="matching").wait_for()
        rows = page.locator("tbody tr", has=page.locator(f"a[href='/ui/plans/{plan_version_id}']"))
        rows.nth(1).wait_for()
        assert rows.count() == 2
        header = page.locator("thead th", has_text="fill_rate")
        assert header.count() == 1  # the KPI queried by is a column
        shots("runs-by-query")
        page.get_by_role("link", name="fill_rate").click()
        page.wait_for_url(re.compile(r"order_by=kpi\.fill_rate"))
        page.locator("thead th[aria-sort]", has_text="fill_rate").wait_for()
        values = [float(v.replace(",", "")) for v in _column(page, "fill_rate")]
        assert values == sorted(values, reverse=True)
        shots("runs-sorted-by-kpi")
        # Save the view, then open it again from the list of saved views.
        page.get_by_text("Save this view").click()
        page.get_by_label("Name").fill("plan fill rates")
        page.get_by_role("button", name="Save", exact=True).click()
        page.wait_for_url(re.compile(r"view=plan"))
        page.goto(f"{base}/ui/runs")
        page.get_by_role("navigation", name="Saved views").get_by_role(
            "link", name="plan fill rates"
        ).click()
        page.wait_for_url(re.compile(r"view=plan"))
        assert page.get_by_label("Query", exact=True).input_value().startswith("kpi.fill_rate >= 0")
        assert rows.count() == 2
        page.locator("thead th[aria-sort]", has_text="fill_rate").wait_for()
        shots("saved-view")

        # 4. Compare the two runs: the chart is drawn.
        for i in range(2):
            rows.nth(i).get_by_role("checkbox").check()
        page.get_by_role("button", name=re.compile("compare", re.I)).click()
        page.wait_for_url(re.compile(r"/ui/runs/compare\?"))
        page.locator("figure.chart svg polyline.series").first.wait_for()
        assert page.locator("figure.chart svg polyline.series").count() >= 2
        shots("compare")

        # 5. Open a run, archive it: preview, then for real.
        page.goto(f"{base}/ui/runs?plan_version_id={plan_version_id}")
        run_link = page.locator("tbody tr a[href^='/ui/runs/']").first
        run_id = (run_link.get_attribute("href") or "").rsplit("/", 1)[1]
        run_link.click()
        page.wait_for_url(re.compile(f"/ui/runs/{re.escape(run_id)}$"))
        assert page.get_by_text("summary.json").first.is_visible()
        shots("run")
        page.get_by_role("button", name=re.compile("preview archive|archive preview", re.I)).click()
        page.get_by_role("button", name=re.compile("archive now", re.I)).wait_for()
        shots("archive-preview")
        assert (yard_path / "runs" / run_id).is_dir()  # the preview moved nothing
        page.get_by_role("button", name=re.compile("archive now", re.I)).click()
        page.wait_for_load_state()
        shots("archived")
        assert not (yard_path / "runs" / run_id).exists()

        # 6. Restore it from the archives page: preview, then for real.
        page.goto(f"{base}/ui/archives")
        shots("archives")
        page.locator("a[href^='/ui/archives/2']").first.click()
        page.get_by_label(run_id).check()
        page.get_by_role("button", name=re.compile("preview restore", re.I)).click()
        page.get_by_role("button", name=re.compile("restore now", re.I)).wait_for()
        shots("restore-preview")
        page.get_by_role("button", name=re.compile("restore now", re.I)).click()
        page.wait_for_load_state()
        shots("restored")
        assert (yard_path / "runs" / run_id / "summary.json").is_file()

        # 7. The closed legacy path: 403 and a banner that leads to plans.
        response = page.goto(f"{base}/ui/scenarios/{planning_yard['scenario_id']}/run")
        assert response is not None and response.status == 403
        banner = page.get_by_role("alert")
        assert "plan" in banner.inner_text().lower()
        link = page.get_by_role("link", name=re.compile("create a plan", re.I))
        assert link.get_attribute("href") == (
            f"/ui/plans/new?scenario={planning_yard['scenario_id']}"
        )
        shots("legacy-403")
