"""The UI with named tokens: log in with a token, see who you are, see only the actions
your role may use; a role too low gets a 403 page naming the role needed; a revoked
token's session is logged out; a session cookie cannot be forged to another role."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import runyard
from runyard.registry import tokens
from runyard.registry.tokens import Role
from tests.conftest import Cli
from tests.helpers.ui import post_form, ui_client


@pytest.fixture
def backend() -> str:
    """The UI is engine-agnostic: its pages run on SQLite here."""
    return "sqlite"


@pytest.fixture
def secrets_by_role(yard_path: Path) -> dict[Role, str]:
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        return {role: tokens.create_token(conn, role.name, role).secret for role in Role}


@pytest.fixture
def run_id(cli: Cli, lineage: dict[str, str]) -> str:
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    return str(run["run_id"])


@pytest.fixture
def client(yard_path: Path, secrets_by_role: dict[Role, str]) -> Iterator[TestClient]:
    with ui_client(yard_path) as test_client:
        test_client.app.state.guard.book.refresh_seconds = 0  # type: ignore[attr-defined]
        yield test_client


def _login(client: TestClient, secret: str) -> None:
    response = post_form(client, "/ui/login", {"token": secret, "next": "/ui/runs"})
    assert response.status_code == 303, response.text
    assert "Logged+in+as" in response.headers["location"]


def test_login_takes_a_named_token_and_shows_who(client, secrets_by_role):
    assert client.get("/ui/runs").headers["location"].startswith("/ui/login")
    wrong = post_form(client, "/ui/login", {"token": "ryt_0000000000000000_nope"})
    assert wrong.status_code == 401 and "does not match" in wrong.text
    _login(client, secrets_by_role[Role.recorder])
    page = client.get("/ui/runs")
    assert page.status_code == 200
    assert 'class="whoami"' in page.text and "recorder" in page.text
    assert "Log out" in page.text


@pytest.mark.parametrize("role", list(Role), ids=[r.name for r in Role])
def test_pages_show_only_the_actions_of_the_role(client, secrets_by_role, run_id, lineage, role):
    _login(client, secrets_by_role[role])
    run_page = client.get(f"/ui/runs/{run_id}").text
    operates = role >= Role.operator
    records = role >= Role.recorder
    assert (f'action="/ui/runs/{run_id}/pin"' in run_page) is operates
    assert (f'action="/ui/runs/{run_id}/archive/preview"' in run_page) is operates
    plan_page = client.get(f"/ui/plans/{lineage['plan_version_id']}").text
    assert ('/run" class="inline"' in plan_page) is records
    assert ('action="/ui/plans/' in plan_page) is records
    scenarios = client.get("/ui/scenarios").text
    assert ('/lock"' in scenarios) is operates
    assert ('href="/ui/plans/new' in client.get("/ui/plans").text) is records
    assert ('action="/ui/views"' in client.get("/ui/runs").text) is records


def test_a_role_too_low_gets_a_403_page_naming_the_role(client, secrets_by_role, run_id):
    _login(client, secrets_by_role[Role.recorder])
    response = post_form(client, f"/ui/runs/{run_id}/pin")
    assert response.status_code == 403
    assert "this needs the operator role" in response.text and "recorder" in response.text
    _login(client, secrets_by_role[Role.operator])
    assert post_form(client, f"/ui/runs/{run_id}/pin").status_code == 303


def test_a_revoked_token_logs_its_sessions_out(client, secrets_by_role, yard_path):
    _login(client, secrets_by_role[Role.admin])
    assert client.get("/ui/runs").status_code == 200
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        tokens.revoke_token(conn, "admin")
    response = client.get("/ui/runs")
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")


def test_a_session_cannot_be_forged_to_another_role(client, secrets_by_role):
    _login(client, secrets_by_role[Role.reader])
    cookie = client.cookies.get("runyard_session") or ""
    session_id, who, mac = cookie.split(".")
    raw = base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
    forged_raw = raw.replace("\0reader\0", "\0admin\0").encode()
    forged = base64.urlsafe_b64encode(forged_raw).decode().rstrip("=")
    client.cookies.set("runyard_session", f"{session_id}.{forged}.{mac}")
    response = client.get("/ui/runs")
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")


def test_a_job_page_says_who_queued_it(client, secrets_by_role, lineage):
    _login(client, secrets_by_role[Role.recorder])
    response = post_form(client, f"/ui/plans/{lineage['plan_version_id']}/aggregate")
    assert response.status_code == 303
    job_page = client.get(response.headers["location"].split("?")[0]).text
    assert "Queued by" in job_page and ">recorder<" in job_page.replace("<dd>", ">")
