"""UI test helpers: a test client for a yard, and form posts that carry the CSRF token
of the client's session the way a browser's form would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from runyard.config import load_settings
from runyard.web.app import create_app

CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@contextmanager
def ui_client(yard_path: Path, **app_options: Any) -> Iterator[TestClient]:
    app = create_app(load_settings(yard_path), **app_options)
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        yield client


def csrf_token(client: TestClient, page: str = "/ui/login") -> str:
    """The CSRF token of this client's session (the first page visit sets the cookie)."""
    found = CSRF_RE.search(client.get(page).text)
    assert found, f"{page} has no CSRF field"
    return found.group(1)


def post_form(client: TestClient, url: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    """POST a form as the browser would: with the session's CSRF token."""
    return client.post(url, data={**(data or {}), "csrf_token": csrf_token(client)}, **kw)


def json_twin(html: str) -> str | None:
    """The href of the page's ``<link rel="alternate" type="application/json">``."""
    found = re.search(r'<link rel="alternate" type="application/json" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None
