"""Recording a run from Python: the context manager behind ``Yard.start_run``.

Summary and tags are collected in memory and written once, when the run
finishes, together with its status: one registry write and one manifest write
per run, which is what keeps registration fast.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runyard.models import Run, RunStatus
from runyard.registry import runs as run_registry
from runyard.registry.common import dump_json_object

if TYPE_CHECKING:
    from runyard.yard import Yard


class RunHandle:
    """The run being recorded: its id and folder, and where to put its results."""

    def __init__(self, run: Run) -> None:
        self._started = run
        self.run_id = run.run_id
        self.path = Path(run.path)
        self.plan_version_id = run.plan_version_id
        self._summary: dict[str, Any] = {}
        self._tags: dict[str, str] = dict(run.tags)
        self.result: Run | None = None

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the run's summary (written when the run finishes).

        Raises Invalid at once for values that cannot be stored as JSON, so the problem
        shows where it is made, not when the run finishes.
        """
        merged = {**self._summary, **values}
        dump_json_object(merged, "summary")
        self._summary = merged

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the run (validated now, written when the run finishes)."""
        merged = {**self._tags, **run_registry.validate_tags(tags)}
        dump_json_object(merged, "tags")  # the JSON limits, at once (as log_summary)
        self._tags = merged

    def upload(self, path: str | Path, dest: str | None = None, replace: bool = False) -> Path:
        """Copy a file or a whole folder into the run's folder (at ``dest``, a relative
        path, default the source's name); symlinks are copied as links, never followed.
        Conflict when ``dest`` exists unless ``replace``; see ``runyard.uploads``."""
        from runyard.uploads import upload

        return upload(self.path, path, dest, replace)

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"


class RunContext:
    def __init__(
        self,
        yard: Yard,
        plan_version_id: str,
        group: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self._yard = yard
        self._args = (plan_version_id, group, run_id, tags)
        self.handle: RunHandle | None = None

    def __enter__(self) -> RunHandle:
        plan_version_id, group, run_id, tags = self._args
        run = run_registry.start_run(
            self._yard, plan_version_id, group=group, run_id=run_id, tags=tags
        )
        self.handle = RunHandle(run)
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
        handle.result = run_registry.finish_run(
            self._yard,
            handle.run_id,
            status,
            summary=handle._summary,
            error=error,
            tags=handle._tags,
            known=handle._started,
        )
