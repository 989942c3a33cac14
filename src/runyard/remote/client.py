"""The HTTP client of a runyard server (docs/remote.md): JSON in, JSON out.

One ``httpx.Client`` (one keep-alive connection pool) per ``Client``, with timeouts.
A request that may safely be sent again is retried on a connection-level failure and on
a 503 that is not the registry's own complaint: reads always, creates because each one
carries an ``Idempotency-Key`` that the retry sends again (the server answers a repeat
with the first answer, so a lost answer never makes a second run). Errors come back as
the same ``runyard.errors`` classes as locally, chosen by the body's ``code``.

This module answers plain dicts and imports neither pydantic nor SQLAlchemy: the CLI's
``--server`` path starts fast. ``runyard.remote.yard`` turns answers into models.
"""

from __future__ import annotations

import base64
import json as json_module
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from runyard import errors
from runyard.errors import RunyardError

API_PREFIX = "/api/v1"
CHUNK = 1 << 16
# A pipeline outlives a server restart: about 12.7 s of retries in all. The CLI, which a
# person may have pointed at a wrong URL, gives up sooner (CLI_ATTEMPTS: about 1.7 s).
ATTEMPTS = 8
CLI_ATTEMPTS = 4
BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 3.0)
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class ServerUnreachable(errors.RegistryStateError):
    """The server could not be reached (or kept failing) after every retry: through its
    server, the registry cannot be opened, so it exits 6 as ``registry_state`` does."""

    code = "server_unreachable"


def _error_classes() -> dict[str, type[RunyardError]]:
    found: dict[str, type[RunyardError]] = {}
    todo: list[type[RunyardError]] = [RunyardError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


BY_STATUS: dict[int, type[RunyardError]] = {
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Refused,
    413: errors.Invalid,
    422: errors.Invalid,
    423: errors.Locked,
    503: errors.RegistryStateError,
}


def error_from(response: httpx.Response) -> RunyardError:
    """The runyard error a server's error answer stands for (its ``code`` kept as sent)."""
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
        hint = detail.get("hint")
    except (ValueError, KeyError, TypeError):
        code, message, hint = "", "", None
    cls = _error_classes().get(code) or BY_STATUS.get(response.status_code, RunyardError)
    if not message:
        message = f"the server answered {response.status_code} {response.reason_phrase}"
    error = cls(message, hint=str(hint) if hint else None)
    if code and code != cls.code:
        error.code = code  # e.g. too_large, idempotency_key_reused: shown as the server said
    return error


def new_key() -> str:
    """An Idempotency-Key: 1-200 printable ASCII."""
    return secrets.token_urlsafe(24)


def file_path(path: bytes) -> tuple[str, dict[str, str]]:
    """The URL of a run's file at ``path`` (its exact bytes): in the path when they are
    UTF-8, else as ``path_b64``."""
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        encoded = base64.urlsafe_b64encode(path).decode("ascii")
        return "files", {"path_b64": encoded}
    return "files/" + quote(text, safe="/"), {}


Body = bytes | Callable[[], Iterable[bytes]] | None


class Client:
    """A runyard server at ``url`` (``http://HOST:PORT``, with or without ``/api/v1``).

    Args:
        token: sent as ``Authorization: Bearer``; default ``RUNYARD_TOKEN``.
        timeout: seconds, or an ``httpx.Timeout``.
        transport: for tests (an ``httpx`` transport).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        attempts: int = ATTEMPTS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise errors.Invalid(
                f"the server {url!r} is not an http:// or https:// URL",
                hint="e.g. --server http://127.0.0.1:8765",
            )
        if not base.endswith(API_PREFIX):
            base += API_PREFIX
        self.url = base
        token = token if token is not None else os.environ.get("RUNYARD_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.attempts = max(1, attempts)
        self._http = httpx.Client(
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- the one way a request goes out --------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        """Send a request and answer its (successful) response; errors raised as runyard's.

        ``key`` is sent as ``Idempotency-Key`` and makes the request safe to retry; a GET
        is retried without one. ``body`` is bytes, or a function giving an iterable of
        chunks anew for each attempt (a file streamed, never read whole).
        """
        sent = dict(headers or {})
        if json is not None:
            body = _json_bytes(json)
            sent["Content-Type"] = "application/json"
        retry = method == "GET" or key is not None
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1 or not retry
            content = body() if callable(body) else body
            # A PUT's key goes only with a retry: the first attempt is an ordinary upload
            # (an existing file is a Conflict, as locally); a retry after an answer that
            # never came accepts the identical file its first attempt may have written.
            if key is not None and (method != "PUT" or attempt > 0):
                sent["Idempotency-Key"] = key
            try:
                response = self._http.request(
                    method,
                    # The whole URL: "runs:batch" alone would read as a URL scheme.
                    f"{self.url}/{path.lstrip('/')}",
                    params=clean,
                    content=content,
                    headers=sent,
                )
            except httpx.TransportError as exc:
                # Never sent (no connection): safe to send again whatever the request.
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt == self.attempts - 1 or not (retry or unsent):
                    raise ServerUnreachable(
                        f"cannot reach the runyard server at {self.url}: "
                        f"{exc or type(exc).__name__}",
                        hint="is `runyard serve` running there? (--server, RUNYARD_SERVER)",
                    ) from None
            else:
                if response.status_code < 400:
                    return response
                if response.status_code != 503 or last or _registry_complaint(response):
                    raise error_from(response)
            time.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, json: Any = None, *, create: bool = False) -> Any:
        """POST ``json``; ``create`` sends an Idempotency-Key (the same on every retry)."""
        return self.request("POST", path, json=json, key=new_key() if create else None).json()

    # -- runs -----------------------------------------------------------------------------

    def start_run(
        self,
        plan_version_id: str | None,
        group: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register a running run (its folder made on the server); the id is chosen here
        when not given, so that a retried request names the same run."""
        if run_id is None:
            from runyard.ids import new_run_id

            run_id = new_run_id()
        body: dict[str, Any] = {"plan_version_id": plan_version_id, "run_id": run_id}
        if group is not None:
            body["group"] = group
        if tags:
            body["tags"] = dict(tags)
        return dict(self.post("runs", body, create=True))

    def finish_run(
        self,
        run_id: str,
        status: str,
        summary: Mapping[str, Any] | None = None,
        error: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if summary:
            body["summary"] = dict(summary)
        if error is not None:
            body["error"] = error
        if tags:
            body["tags"] = dict(tags)
        return dict(self.post(f"runs/{_seg(run_id)}/finish", body, create=True))

    def update_run(
        self,
        run_id: str,
        tags: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {k: dict(v) for k, v in (("tags", tags), ("summary", summary)) if v is not None}
        return dict(self.request("PATCH", f"runs/{_seg(run_id)}", json=body, key=new_key()).json())

    def record_runs(self, records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        answer = self.post("runs:batch", {"runs": list(records)}, create=True)
        return list(answer["runs"])

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"runs/{_seg(run_id)}"))

    def list_runs(self, **params: Any) -> dict[str, Any]:
        """A page of runs; ``params`` as GET /api/v1/runs takes them (``where``,
        ``order_by`` (a list), ``plan_version_id``, ``status``, ``limit``, ``after`` …)."""
        return dict(self.get("runs", **params))

    def set_pinned(self, run_id: str, pinned: bool) -> dict[str, Any]:
        return dict(self.post(f"runs/{_seg(run_id)}/{'pin' if pinned else 'unpin'}"))

    def put_file(
        self,
        run_id: str,
        path: bytes,
        *,
        kind: str = "file",
        body: Body = b"",
        size: int | None = None,
        replace: bool = False,
        mode: int | None = None,
        mtime: float | None = None,
    ) -> dict[str, Any]:
        """One entry of a run's folder: a file (``body`` streamed), a folder or a link."""
        where, located = file_path(path)
        params: dict[str, Any] = {
            **located,
            "kind": kind,
            "replace": "true" if replace else None,
            "mode": f"{mode:04o}" if mode is not None else None,
            "mtime": repr(mtime) if mtime is not None else None,
        }
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        answer = self.request(
            "PUT",
            f"runs/{_seg(run_id)}/{where}",
            params=params,
            body=body,
            headers=headers,
            key=new_key(),
        )
        return dict(answer.json())

    # -- scenarios, configs, plans, jobs ----------------------------------------------------

    def add_scenario(
        self, name: str, description: str = "", data: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "description": description}
        if data is not None:
            body["data"] = dict(data)
        return dict(self.post("scenarios", body, create=True))

    def add_config(
        self, content: Mapping[str, Any], name: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"content": dict(content)}
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        response = self.request("POST", "configs", json=body, key=new_key())
        answer = dict(response.json())
        answer.setdefault("created", response.status_code == 201)  # 200: it existed
        return answer

    def create_plan(
        self,
        scenario: str,
        config_version_id: str,
        params: Mapping[str, Any] | None = None,
        label: str | None = None,
        runner: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "scenario": scenario,
            "config_version_id": config_version_id,
            "params": dict(params or {}),
        }
        if label is not None:
            body["label"] = label
        if runner is not None:
            body["runner"] = runner
        return dict(self.post("plans", body, create=True))


def _number(value: object) -> object:
    """A Decimal (the CLI parses numbers exactly) as the JSON number it reads as."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_bytes(value: Any) -> bytes:
    try:
        return json_module.dumps(value, default=_number, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise errors.Invalid(f"cannot send this as JSON: {exc}") from None


def _seg(value: str) -> str:
    """One path segment of a URL (an id), quoted."""
    return quote(value, safe="")


def _registry_complaint(response: httpx.Response) -> bool:
    """A 503 that is runyard's own registry error (schema outdated …): no retry helps."""
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return code in {"schema_outdated", "not_a_registry", "other_yard", "check_failed"}


def file_chunks(path: str | bytes) -> Callable[[], Iterator[bytes]]:
    """A function reading ``path`` anew in chunks each time it is called (one per attempt)."""

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as source:
            while block := source.read(CHUNK):
                yield block

    return chunks
