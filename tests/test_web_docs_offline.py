"""``/docs`` (Swagger UI) and ``/redoc`` work with no internet, and no page of the UI
loads anything from another host.

The docs pages' scripts, style sheet and favicon are vendored in ``web/static/`` by
``scripts/vendor_web_assets.py``; here: the pages name only the server's own URLs,
each asset they name is served with its type, a crawl of a small yard's UI finds no
URL of another host in any page, and in a real browser (Debian's Chromium, as in
``test_browser.py``) both pages render the API with every request to another host
aborted, and none even attempted. With and without ``RUNYARD_TOKEN``: the docs pages
need no login; with a token, "try it out" works once the token is given to Authorize.

Without Chromium the browser test is skipped with a loud reason, unless
``RUNYARD_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which makes that a failure.
"""

from __future__ import annotations

import os
import re
import runpy
from collections import deque
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from runyard.config import load_settings
from runyard.web.app import create_app
from tests.conftest import Cli
from tests.helpers.server import running_server
from tests.helpers.ui import post_form, ui_client

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "src" / "runyard" / "web" / "static"
CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("RUNYARD_REQUIRE_BROWSER") == "1"
ARTIFACTS = ROOT / "test-artifacts" / "docs-offline"
TOKEN = "s3cret-token"

# Attributes whose value a browser loads, follows or posts to.
URL_ATTRIBUTES = frozenset(
    {
        "src",
        "href",
        "srcset",
        "action",
        "formaction",
        "poster",
        "data",
        "background",
        "manifest",
        "xlink:href",
        "hx-get",
        "hx-post",
        "hx-put",
        "hx-patch",
        "hx-delete",
    }
)
ABSOLUTE_URL = re.compile(r"""(?i)(?:https?|wss?|ftp):|//""")
CSS_URL = re.compile(r"""(?i)url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""")
OWN_HOSTS = frozenset({"127.0.0.1", "testserver"})


def _foreign(url: str) -> bool:
    """Whether ``url`` names another host (a relative URL or a data: URL names none)."""
    url = url.strip()
    if not ABSOLUTE_URL.match(url):
        return False
    return urlsplit(url if "://" in url else "http:" + url).hostname not in OWN_HOSTS


def _css_urls(css: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in CSS_URL.finditer(css)]


class _Refs(HTMLParser):
    """Every URL a page names in a URL attribute, a style or an inline script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.assets: list[tuple[str, str]] = []  # (kind, url) the page loads itself
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = {name: value or "" for name, value in attrs}
        for name, value in given.items():
            if name in URL_ATTRIBUTES:
                parts = value.split(",") if name == "srcset" else [value]
                self.urls += [(tag, name, part.strip().split(" ")[0]) for part in parts]
            if name == "style":
                self.urls += [(tag, "style", url) for url in _css_urls(value)]
        rel = given.get("rel", "").lower().split()
        if tag == "script" and given.get("src"):
            self.assets.append(("script", given["src"]))
        elif tag == "link" and "stylesheet" in rel:
            self.assets.append(("style", given["href"]))
        elif tag == "link" and "icon" in rel:
            self.assets.append(("icon", given["href"]))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.urls += [("style", "css", url) for url in _css_urls(data)]
        elif self._in == "script":
            found = re.findall(r"""(?i)(?:https?|wss?):/{2}[^\s'"`)]+""", data)
            self.urls += [("script", "text", url) for url in found]


def refs(html: str) -> _Refs:
    parser = _Refs()
    parser.feed(html)
    parser.close()
    return parser


def foreign_urls(html: str) -> list[tuple[str, str, str]]:
    return [ref for ref in refs(html).urls if _foreign(ref[2])]


ASSET_TYPES = {
    "script": ("text/javascript", "application/javascript"),
    "style": ("text/css",),
    "icon": ("image/",),
}


@pytest.fixture
def backend() -> str:
    """The UI is engine-agnostic: its pages run on SQLite here."""
    return "sqlite"


@pytest.fixture(params=[None, TOKEN], ids=["no-token", "token"])
def token(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Each test runs without ``RUNYARD_TOKEN`` and with it."""
    value: str | None = request.param
    if value:
        monkeypatch.setenv("RUNYARD_TOKEN", value)
    return value


@pytest.fixture
def client(yard_path: Path, token: str | None) -> Iterator[TestClient]:
    with ui_client(yard_path) as test_client:
        if token:  # with a token, pages need a login (issue 15)
            post_form(test_client, "/ui/login", {"token": token})
        yield test_client


# --- the docs pages over HTTP -------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_name_no_other_host_and_their_assets_are_served(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Not a single absolute URL: no CDN, no Google Fonts, no external favicon.
    assert not re.search(r"(?i)https?:|//[a-z0-9]", page.text), page.text
    assert foreign_urls(page.text) == []
    found = refs(page.text).assets
    kinds = {kind for kind, _ in found}
    assert kinds == ({"script", "style", "icon"} if path == "/docs" else {"script", "icon"})
    for kind, url in found:
        assert url.startswith("/static/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(ASSET_TYPES[kind]), (url, asset.headers)
        assert len(asset.content) > (500 if kind == "icon" else 100_000), url  # the real file
    spec = re.search(r"""(?:url: |spec-url=)['"]([^'"]+)['"]""", page.text)
    assert spec and spec.group(1) == "/openapi.json"
    assert "/api/v1/runs" in client.get(spec.group(1)).json()["paths"]


def test_swagger_oauth2_redirect_is_still_served(client):
    docs = client.get("/docs").text
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in docs
    page = client.get("/docs/oauth2-redirect")
    assert page.status_code == 200 and "oauth2" in page.text.lower()
    assert foreign_urls(page.text) == []


def test_docs_pages_are_not_in_the_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc", "/docs/oauth2-redirect"} & set(paths)


def test_docs_assets_follow_the_root_path_behind_a_proxy(yard_path, token):
    app = create_app(load_settings(yard_path))
    with TestClient(app, base_url="http://127.0.0.1", root_path="/runyard") as client:
        docs = client.get("/docs").text
        redoc = client.get("/redoc").text
    assert 'src="/runyard/static/swagger-ui-bundle.js"' in docs
    assert 'href="/runyard/static/swagger-ui.css"' in docs
    assert "url: '/runyard/openapi.json'" in docs
    assert "'/runyard/docs/oauth2-redirect'" in docs
    assert 'src="/runyard/static/redoc.standalone.js"' in redoc
    assert 'spec-url="/runyard/openapi.json"' in redoc


def _vendored_packages() -> list[Any]:
    """The packages ``scripts/vendor_web_assets.py`` pins (read, not run: no download)."""
    script = runpy.run_path(str(ROOT / "scripts" / "vendor_web_assets.py"))
    packages: list[Any] = script["PACKAGES"]
    return packages


def test_every_vendored_file_is_there_and_the_docs_name_the_versions():
    packages = _vendored_packages()
    guide = (ROOT / "docs" / "web.md").read_text()
    for package in packages:
        assert re.fullmatch(r"[0-9a-f]{64}", package.sha256), package.name
        assert f"{package.name} {package.version}" in guide, package.name
        for name in package.files.values():
            assert (STATIC / name).is_file() and (STATIC / name).stat().st_size > 0, name
    # The one patch: Redoc's sidebar logo is no longer loaded from its CDN.
    assert b"cdn.redoc.ly" not in (STATIC / "redoc.standalone.js").read_bytes()
    licences = [n for p in packages for n in p.files.values() if "LICENSE" in n]
    assert {"swagger-ui.LICENSE", "redoc.LICENSE"} <= set(licences)


# --- a crawl of the UI ----------------------------------------------------------------


@pytest.fixture
def small_yard(
    cli: Cli, lineage: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Runs of a plan (one failed, one archived into a batch), a planning job."""
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    pv = lineage["plan_version_id"]
    job = cli.ok("plan", "run", pv, "--wait")
    assert job["status"] == "succeeded", job
    runs = []
    for n, (group, status) in enumerate(
        (("CH01/001", "succeeded"), ("CH01/002", "failed"), ("CH02/001", "succeeded"))
    ):
        run = cli.ok("run", "start", "--plan", pv, "--group", group, "--run-id", f"run-{n}")
        cli.ok("run", "finish", run["run_id"], "--status", status, "--summary", '{"cost": 1}')
        runs.append(run["run_id"])
    keep_nothing = ("--keep-recent-minutes", "0", "--keep-last-runs", "0")
    batch = cli.ok("archive", "--group", "CH02/001", "--run", "--yes", *keep_nothing)
    assert batch["summary"]["moved"] == 1, batch
    return {**lineage, "job_id": job["job_id"], "runs": runs, "batch_id": batch["batch_id"]}


def _crawl(client: TestClient, seeds: list[str], limit: int = 120) -> dict[str, str]:
    """The HTML of every ``/ui`` page reached by links from ``seeds`` (at most ``limit``)."""
    pages: dict[str, str] = {}
    queue, seen = deque(seeds), set(seeds)
    while queue and len(pages) < limit:
        url = queue.popleft()
        response = client.get(url, follow_redirects=True)
        assert response.status_code < 500, (url, response.text[-2000:])
        if not response.headers.get("content-type", "").startswith("text/html"):
            continue
        pages[url] = response.text
        for tag, attribute, link in refs(response.text).urls:
            path = link.split("#", 1)[0].replace("&amp;", "&")
            if tag == "a" and attribute == "href" and path.startswith("/ui") and path not in seen:
                seen.add(path)
                queue.append(path)
    return pages


def test_no_ui_page_names_another_host(client, small_yard, token):
    run_id, failed, archived = small_yard["runs"]
    seeds = [
        "/ui",
        "/ui/runs",
        f"/ui/runs/{run_id}",
        f"/ui/runs/{archived}",
        f"/ui/runs/compare?ids={run_id}&ids={failed}",
        "/ui/plans",
        "/ui/plans/new",
        f"/ui/plans/{small_yard['plan_version_id']}",
        "/ui/scenarios",
        "/ui/configs",
        f"/ui/configs/{small_yard['config_version_id']}",
        "/ui/jobs",
        f"/ui/jobs/{small_yard['job_id']}",
        "/ui/archives",
        f"/ui/archives/{small_yard['batch_id']}",
        "/ui/archives/log",
        "/ui/login",
        "/ui/runs/run-that-is-not-there",  # an error page
    ]
    pages = _crawl(client, seeds)
    assert set(seeds) <= set(pages), set(seeds) - set(pages)
    assert len(pages) > len(seeds)  # the crawl followed links too
    offending = {url: found for url, html in pages.items() if (found := foreign_urls(html))}
    assert offending == {}
    # The pages' own assets (htmx, style sheets) are served from /static.
    assets = {url for html in pages.values() for _, url in refs(html).assets}
    assert any(url.endswith("/htmx.min.js") for url in assets), assets
    for url in assets:
        assert url.startswith("/static/") and client.get(url).status_code == 200, url


def test_the_check_itself_finds_a_cdn():
    """The detector catches what a CDN coming back would look like."""
    html = (
        '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/x.css">'
        '<script src="//unpkg.com/htmx.org"></script>'
        '<img srcset="/a.png 1x, https://img.example/b.png 2x">'
        "<style>@import 'https://fonts.googleapis.com/css';</style>"
        "<div style=\"background: url('http://example.org/x.png')\"></div>"
        "<script>fetch('https://api.example.org/beacon')</script>"
        '<a href="/ui/runs">ok</a><script src="/static/htmx.min.js"></script>'
        '<a href="http://127.0.0.1/ui/runs">own</a><img src="data:image/png;base64,AA==">'
    )
    hosts = {urlsplit(u if "://" in u else "http:" + u).hostname for *_, u in foreign_urls(html)}
    assert hosts == {
        "cdn.jsdelivr.net",
        "unpkg.com",
        "img.example",
        "fonts.googleapis.com",
        "example.org",
        "api.example.org",
    }


# --- in a real browser, with no other host reachable -----------------------------------


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
def browser_context() -> Iterator[Any]:
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()
            browser.close()


@pytest.mark.slow
def test_docs_and_redoc_render_in_a_browser_with_no_other_host(browser_context, yard_path, token):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    label = "token" if token else "no-token"
    env = {"RUNYARD_TOKEN": token} if token else {}
    with running_server(yard_path, env=env) as base:
        own = urlsplit(base).netloc
        attempted: list[str] = []  # every request to another host, aborted
        own_failures: list[str] = []
        errors: list[str] = []

        def network(url: str) -> bool:
            return urlsplit(url).scheme in ("http", "https", "ws", "wss")

        def on_request(request: Any) -> None:  # pages and workers alike
            if network(request.url) and urlsplit(request.url).netloc != own:
                attempted.append(request.url)

        def on_response(response: Any) -> None:
            if urlsplit(response.url).netloc == own and response.status >= 400:
                own_failures.append(f"{response.status} {response.url}")

        def only_own(route: Any) -> None:
            url = route.request.url
            if network(url) and urlsplit(url).netloc != own:
                attempted.append(url)
                route.abort("blockedbyclient")
            else:
                route.continue_()

        browser_context.on("request", on_request)
        browser_context.on("response", on_response)
        page = browser_context.new_page()
        page.route("**/*", only_own)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        # Swagger UI: every operation listed; one tried out, answered by this server.
        page.goto(f"{base}/docs")
        runs = page.locator(".opblock.opblock-get").filter(
            has=page.locator(".opblock-summary-path[data-path='/api/v1/runs']")
        )
        runs.wait_for()
        assert page.locator(".opblock").count() >= 20
        assert page.locator(".opblock.opblock-post").count() >= 5
        if token:  # reads need the token too: send it as a user would, with Authorize
            page.locator("button.authorize").first.click()
            dialog = page.locator(".modal-ux")
            dialog.locator("input").first.fill(token)
            dialog.locator("button.modal-btn.authorize").click()
            dialog.locator("button.btn-done").click()
        runs.locator(".opblock-summary").click()
        runs.get_by_role("button", name=re.compile("try it out", re.I)).click()
        runs.get_by_role("button", name=re.compile("execute", re.I)).click()
        status = runs.locator(".live-responses-table .response .response-col_status").first
        status.wait_for()
        assert status.inner_text().strip().startswith("200")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ARTIFACTS / f"docs-{label}.png"), full_page=True)

        # Redoc: the operations' summaries, in the menu and as headings.
        page.goto(f"{base}/redoc")
        heading = page.locator("h2", has_text=re.compile(r"^\s*Run List\s*$")).first
        heading.wait_for()
        assert heading.is_visible()
        assert page.locator("h2", has_text="Plan Create").first.is_visible()
        assert page.locator("[role=menuitem]", has_text="Run List").count() >= 1  # sidebar
        assert page.locator("h1", has_text="runyard").first.is_visible()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ARTIFACTS / f"redoc-{label}.png"))

    assert attempted == []
    assert own_failures == []
    assert errors == []
