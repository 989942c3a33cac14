"""``run.json``: the manifest in every run directory, from which the registry can be rebuilt.

Format (``schema_version`` 1; documented in docs/manifest.md)::

    {"schema_version": 1, "yard_id": "...", "run_id": "...",
     "plan_version_id": "...", "config_version_id": "...", "scenario_id": "...",
     "group": null, "status": "running", "created_at": "...", "started_at": "...",
     "finished_at": null, "summary": {}, "tags": {}, "error": null, "pinned": false}

It keeps runyard's JSON limits (``canonical``; docs/manifest.md "JSON limits"): its
summary as any accepted summary (so the document is at most ``MAX_JSON_DEPTH + 1``
levels deep), at most ``MAX_MANIFEST_BYTES``, UTF-8, a regular file. A manifest that
would break them is refused when it is written, so every manifest runyard wrote can be
read back by ``run import`` and ``rebuild``; one that breaks them on disk is a
``ManifestError`` (a per-folder problem there), never a crash or a hang.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from runyard.canonical import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    loads_checked,
)
from runyard.errors import Invalid, ManifestError
from runyard.fsutil import read_regular_file, write_atomic
from runyard.ids import run_id_problem
from runyard.models import Run, RunStatus

MANIFEST_NAME = "run.json"
SCHEMA_VERSION = 1
# A summary and the tags may each take MAX_JSON_BYTES; the layout (indentation) some more.
MAX_MANIFEST_BYTES = 4 * MAX_JSON_BYTES


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: int
    yard_id: str | None = None
    run_id: str
    plan_version_id: str | None
    config_version_id: str | None = None
    scenario_id: str | None = None
    group: str | None = None
    status: RunStatus
    created_at: datetime | None = None
    started_at: datetime
    finished_at: datetime | None = None
    summary: dict[str, Any] = {}
    tags: dict[str, str] = {}
    error: str | None = None
    pinned: bool = False  # kept here too, so that `runyard rebuild` restores pins


def manifest_bytes(run: Run, yard_id: str) -> bytes:
    """The manifest of ``run`` as bytes (what ``write_manifest`` writes)."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "yard_id": yard_id,
        "run_id": run.run_id,
        "plan_version_id": run.plan_version_id,
        "config_version_id": run.config_version_id,
        "scenario_id": run.scenario_id,
        "group": run.group,
        "status": run.status.value,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "summary": run.summary,
        "tags": run.tags,
        "error": run.error,
        "pinned": run.pinned,
    }
    data = (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
    if len(data) > MAX_MANIFEST_BYTES:
        raise Invalid(
            f"the {MANIFEST_NAME} of run {run.run_id} would be {len(data)} bytes; the limit "
            f"is {MAX_MANIFEST_BYTES}: store less in its summary and tags"
        )
    return data


def write_manifest(run_dir: Path, run: Run, yard_id: str) -> None:
    write_atomic(run_dir / MANIFEST_NAME, manifest_bytes(run, yard_id))


def read_manifest(run_dir: Path) -> Manifest | None:
    """The manifest of a run directory; None when it has none; ManifestError when corrupt."""
    path = run_dir / MANIFEST_NAME
    try:
        # Never blocks: a FIFO or socket named run.json is refused without being opened.
        raw = read_regular_file(path, str(path), MAX_MANIFEST_BYTES)
        data = loads_checked(
            raw, str(path), max_depth=MAX_JSON_DEPTH + 1, max_bytes=MAX_MANIFEST_BYTES
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    except Invalid as exc:
        raise ManifestError(exc.message) from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path}: unsupported schema_version {version!r}")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{path}: key `{key}`: {first['msg']}") from None
    problem = run_id_problem(manifest.run_id)
    if problem:
        raise ManifestError(f"{path}: run_id {manifest.run_id!r}: {problem}")
    return manifest
