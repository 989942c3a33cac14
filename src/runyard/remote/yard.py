"""``runyard.connect(url)``: a yard on a server, with the recording interface of
``open_yard`` (``start_run``, ``record_runs``, ``list_runs``) and the set-up calls a
remote pipeline needs (``add_scenario``, ``add_config``, ``create_plan``).

Answers are the same pydantic models as locally (``runyard.models``); errors the same
``runyard.errors`` classes. Changing ``open_yard(...)`` to ``connect(...)`` is the one
line a pipeline changes.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

import httpx

from runyard.canonical import check_json_limits
from runyard.errors import Invalid
from runyard.models import ConfigVersion, Page, PlanVersion, Run, RunStatus, Scenario
from runyard.remote import uploads
from runyard.remote.client import DEFAULT_TIMEOUT, Client


def _checked(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``value`` as a JSON object within runyard's limits (Invalid at once otherwise)."""
    merged = dict(value)
    check_json_limits(merged, what)
    try:
        json.dumps(merged, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"{what} holds text that is not valid UTF-8 (a lone surrogate)") from None
    except (TypeError, ValueError) as exc:
        raise Invalid(f"{what} is not storable as JSON: {exc}") from None
    return merged


class RemoteRunHandle:
    """The run being recorded on a server: as ``runyard.tracking.RunHandle``, except that
    its folder is the server's (``path`` is the server's path; write into it with
    ``upload``)."""

    def __init__(self, client: Client, run: Run) -> None:
        self._client = client
        self._started = run
        self.run_id = run.run_id
        self.path = PurePosixPath(run.path)
        self.plan_version_id = run.plan_version_id
        self._summary: dict[str, Any] = {}
        self._tags: dict[str, Any] = dict(run.tags)
        self.result: Run | None = None

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the run's summary (sent when the run finishes)."""
        self._summary = _checked({**self._summary, **values}, "summary")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the run (sent when the run finishes)."""
        for key, value in tags.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise Invalid(f"tag {key!r}: tags are text keys with text values")
        self._tags = _checked({**self._tags, **tags}, "tags")

    def upload(
        self, path: str | Path, dest: str | None = None, replace: bool = False
    ) -> PurePosixPath:
        """Send a file or a whole folder into the run's folder on the server (at ``dest``,
        a relative path, default the source's name); links are sent as links, never
        followed; empty folders kept. Conflict when ``dest`` exists unless ``replace``.
        Answers ``dest`` relative to the run's folder."""
        return uploads.upload(self._client, self.run_id, path, dest, replace)

    def __repr__(self) -> str:
        return f"RemoteRunHandle({self.run_id!r})"


class RemoteRunContext:
    def __init__(
        self,
        client: Client,
        plan_version_id: str,
        group: str | None,
        run_id: str | None,
        tags: Mapping[str, Any] | None,
    ) -> None:
        self._client = client
        self._args = (plan_version_id, group, run_id, tags)
        self.handle: RemoteRunHandle | None = None

    def __enter__(self) -> RemoteRunHandle:
        plan_version_id, group, run_id, tags = self._args
        answer = self._client.start_run(plan_version_id, group=group, run_id=run_id, tags=tags)
        self.handle = RemoteRunHandle(self._client, Run.model_validate(answer))
        return self.handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        handle = self.handle
        assert handle is not None
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            status, error = RunStatus.succeeded, None
        else:
            cancelled = isinstance(exc, KeyboardInterrupt)
            status = RunStatus.cancelled if cancelled else RunStatus.failed
            error = "".join(traceback.format_exception_only(exc)).strip()
        answer = self._client.finish_run(
            handle.run_id, status.value, summary=handle._summary, error=error, tags=handle._tags
        )
        handle.result = Run.model_validate(answer)


class RemoteYard:
    """A yard reached through a runyard server's API (``runyard.connect``)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def url(self) -> str:
        return self.client.url

    def __enter__(self) -> RemoteYard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def start_run(
        self,
        plan_version_id: str,
        group: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> RemoteRunContext:
        """Record a run: ``with yard.start_run(plan_version_id=...) as run:``, as locally.

        The run is registered (its folder made on the server) on entering; a normal exit
        finishes it as succeeded, an exception as failed with the error, and re-raises.
        """
        return RemoteRunContext(self.client, plan_version_id, group, run_id, tags)

    def record_runs(self, records: Iterable[Any]) -> list[Run]:
        """Register runs that have already executed, all or none (as ``Yard.record_runs``)."""
        sent = [
            r.model_dump(mode="json", exclude_none=True) if hasattr(r, "model_dump") else dict(r)
            for r in records
        ]
        return [Run.model_validate(r) for r in self.client.record_runs(sent)]

    def list_runs(
        self,
        where: str | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[Run]:
        """A page of runs matching ``where``, in the order of ``order_by`` (docs/query.md)."""
        orders = [order_by] if isinstance(order_by, str) else list(order_by or []) or None
        answer = self.client.list_runs(where=where, order_by=orders, limit=limit, after=after)
        return Page[Run].model_validate(answer)

    def get_run(self, run_id: str) -> Run:
        return Run.model_validate(self.client.get_run(run_id))

    def add_scenario(
        self, name: str, description: str = "", data: Mapping[str, Any] | None = None
    ) -> Scenario:
        return Scenario.model_validate(self.client.add_scenario(name, description, data))

    def add_config(
        self, content: Mapping[str, Any], name: str | None = None, description: str | None = None
    ) -> ConfigVersion:
        """A config version of ``content`` (the existing one when that content exists)."""
        return ConfigVersion.model_validate(self.client.add_config(content, name, description))

    def create_plan(
        self,
        scenario: str,
        config_version_id: str,
        params: Mapping[str, Any] | None = None,
        label: str | None = None,
        runner: str | None = None,
    ) -> PlanVersion:
        answer = self.client.create_plan(scenario, config_version_id, params, label, runner)
        return PlanVersion.model_validate(answer)

    def __repr__(self) -> str:
        return f"RemoteYard({self.url!r})"


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
) -> RemoteYard:
    """A yard on a runyard server: ``runyard.connect("http://host:8765", token=...)``.

    Args:
        url: default ``RUNYARD_SERVER``.
        token: default ``RUNYARD_TOKEN`` (none: the server must be open).
    """
    url = url or os.environ.get("RUNYARD_SERVER")
    if not url:
        raise Invalid(
            "no server to connect to", hint="pass the URL, or set RUNYARD_SERVER=http://HOST:PORT"
        )
    return RemoteYard(Client(url, token, timeout=timeout))
