"""``/api/v1``, recording side: what a remote client (``runyard.connect``, the CLI's
``--server``) needs to record runs on this server. Scenarios and configs, starting,
updating and finishing runs, streaming files into a run's folder, and registering
finished runs in bulk: each route calls the same core function as the CLI, with the
caller's token name as ``created_by``.

Every create takes an ``Idempotency-Key`` header (``registry.idempotency``): its answer
is stored in the create's own transaction, and a retry gets that answer back (header
``Idempotent-Replayed: true``) instead of creating twice. docs/remote.md is the
contract with the client.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from starlette.requests import ClientDisconnect

from runyard import fsnames
from runyard.errors import Conflict, Invalid
from runyard.models import ConfigAdded, Run, RunLocation, RunStatus, Scenario
from runyard.registry import configs, lineage_files, scenarios
from runyard.registry.bulk import RunRecord, record_runs
from runyard.registry.idempotency import (
    IdempotentRequest,
    KeyTaken,
    StoredAnswer,
    lookup,
    remember,
    request_for,
    validate_key,
)
from runyard.registry.runs import finish_run, get_run, start_run, update_run
from runyard.uploads import Stored, TooLarge, upload_async_stream
from runyard.web.api import WRITE_ERRORS, YardDep
from runyard.web.auth import principal_of, require_api_write
from runyard.web.errors import SafeJSONResponse, answer
from runyard.yard import Yard

router = APIRouter(
    prefix="/api/v1", dependencies=[Depends(require_api_write)], responses=WRITE_ERRORS
)

MAX_BATCH_RUNS = 10_000
REPLAYED_HEADER = "Idempotent-Replayed"
# How long a request that lost a race to a twin with the same key waits for the twin's
# answer to be committed before giving up with its own conflict.
_TWIN_WAIT_SECONDS = 5.0


# --- idempotency --------------------------------------------------------------------


async def idempotency(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1-200 printable ASCII characters; a retry with the same key "
            "and body gets the first answer",
        ),
    ] = None,
) -> IdempotentRequest | None:
    """The request's idempotency identity, when it carries a key (its body is small
    JSON, already read by the body-limit middleware)."""
    if idempotency_key is None:
        return None
    body = await request.body()
    who = principal_of(request).name
    return request_for(who, idempotency_key, f"{request.method} {request.url.path}", body)


IdemDep = Annotated[IdempotentRequest | None, Depends(idempotency)]


def _json_text(value: Any) -> str:
    return json.dumps(fsnames.clean(value), ensure_ascii=False, separators=(",", ":"))


def _replay(stored: StoredAnswer) -> Response:
    return Response(
        stored.body,
        status_code=stored.status_code,
        media_type="application/json",
        headers={REPLAYED_HEADER: "true"},
    )


def _twin_answer(yard: Yard, idem: IdempotentRequest) -> StoredAnswer | None:
    """The answer a concurrent request with the same key stored, waiting a little for
    it to commit."""
    deadline = time.monotonic() + _TWIN_WAIT_SECONDS
    while True:
        with yard.read() as conn:
            stored = lookup(conn, idem)
        if stored is not None or time.monotonic() > deadline:
            return stored
        time.sleep(0.05)


def once(
    yard: Yard,
    idem: IdempotentRequest | None,
    create: Callable[[Callable[[Connection, Any], None] | None], Any],
    answer_of: Callable[[Any], tuple[int, Any]],
) -> Any:
    """``create(on_commit)`` once per idempotency key; the stored answer otherwise.

    ``answer_of(result)`` is the status and JSON body the result is answered with; it is
    stored by ``on_commit`` inside the create's transaction.
    """
    if idem is None:
        status, body = answer_of(create(None))
        return _respond(status, body)
    with yard.read() as conn:
        stored = lookup(conn, idem)
    if stored is not None:
        return _replay(stored)

    def on_commit(conn: Connection, result: Any) -> None:
        status, body = answer_of(result)
        remember(conn, idem, status, _json_text(body))

    try:
        status, body = answer_of(create(on_commit))
    except KeyTaken:
        stored = _twin_answer(yard, idem)
        if stored is None:  # pragma: no cover - the twin committed its key
            raise Conflict("a request with the same Idempotency-Key is in progress") from None
        return _replay(stored)
    except Conflict:
        stored = _twin_answer(yard, idem)
        if stored is None:
            raise
        return _replay(stored)
    return _respond(status, body)


def _respond(status: int, body: Any) -> Response:
    return SafeJSONResponse(body, status_code=status)


def _created_by(request: Request) -> str | None:
    return principal_of(request).name


# --- bodies --------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioCreateRequest(_Body):
    name: str
    description: str = ""
    data: dict[str, Any] | None = Field(default=None, description="its base data")


class ConfigCreateRequest(_Body):
    content: dict[str, Any] = Field(description="the config (a JSON object)")
    name: str | None = Field(default=None, description="a label for people")


class RunStartRequest(_Body):
    plan_version_id: str
    group: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    run_id: str | None = Field(default=None, description="default: a new time-ordered id")


class RunUpdateRequest(_Body):
    tags: dict[str, str] = Field(default_factory=dict, description="merged into the run's")
    summary: dict[str, Any] = Field(default_factory=dict, description="merged into the run's")


class RunFinishRequest(_Body):
    status: Literal["succeeded", "failed", "cancelled"]
    summary: dict[str, Any] = Field(default_factory=dict, description="merged into the run's")
    error: str | None = None
    tags: dict[str, str] = Field(default_factory=dict, description="merged into the run's")


class RunBatchRequest(_Body):
    runs: list[RunRecord] = Field(max_length=MAX_BATCH_RUNS)


class RunBatchResponse(BaseModel):
    runs: list[Run]


class StoredFile(BaseModel):
    path: str = Field(description="where it is, relative to the run's folder")
    kind: Literal["file", "dir", "symlink"]
    size: int
    sha256: str | None = Field(
        description="of the file's bytes (a link's target); none for a folder"
    )


def _model_answer(status: int) -> Callable[[Any], tuple[int, Any]]:
    return lambda result: (status, result.model_dump(mode="json"))


# --- scenarios and configs -----------------------------------------------------------


@router.post("/scenarios", response_model=Scenario, status_code=201, tags=["scenarios"])
def scenario_create(yard: YardDep, body: ScenarioCreateRequest, idem: IdemDep) -> Any:
    """A new scenario, with its base data if given (as ``scenario add``)."""
    data_text = None if body.data is None else json.dumps(body.data, ensure_ascii=False)

    def create(on_commit: Callable[[Connection, Any], None] | None) -> Scenario:
        with yard.write() as conn:
            scenario = scenarios.add_scenario(conn, body.name, body.description, data_text)
            if on_commit is not None:
                on_commit(conn, scenario)
        lineage_files.write_scenario(yard.settings, scenario, data_text)
        return scenario

    return once(yard, idem, create, _model_answer(201))


@router.post(
    "/configs",
    response_model=ConfigAdded,
    status_code=201,
    tags=["configs"],
    responses={200: {"model": ConfigAdded, "description": "that content existed already"}},
)
def config_create(yard: YardDep, body: ConfigCreateRequest, idem: IdemDep) -> Any:
    """A config version from its content (as ``config add``: the same canonical id; 200
    when that content was stored already)."""
    text = json.dumps(body.content, ensure_ascii=False)

    def create(on_commit: Callable[[Connection, Any], None] | None) -> ConfigAdded:
        with yard.write() as conn:
            added = configs.add_config(conn, text, name=body.name, source="content")
            if on_commit is not None:
                on_commit(conn, added)
        with yard.read() as conn:
            lineage_files.write_config(conn, yard.settings, added.config_version_id)
        return added

    def answer_of(added: ConfigAdded) -> tuple[int, Any]:
        return (201 if added.created else 200), added.model_dump(mode="json")

    return once(yard, idem, create, answer_of)


# --- runs ----------------------------------------------------------------------------


@router.post("/runs", response_model=Run, status_code=201, tags=["runs"])
def run_start(yard: YardDep, request: Request, body: RunStartRequest, idem: IdemDep) -> Any:
    """Start a run of a plan version: registered as running, its folder made here. A
    retry with the same ``run_id`` takes over a folder an interrupted start left."""
    return once(
        yard,
        idem,
        lambda on_commit: start_run(
            yard,
            body.plan_version_id,
            group=body.group,
            run_id=body.run_id,
            tags=body.tags,
            created_by=_created_by(request),
            on_commit=on_commit,
            take_over=True,
        ),
        _model_answer(201),
    )


@router.patch("/runs/{run_id}", response_model=Run, tags=["runs"])
def run_update(yard: YardDep, run_id: str, body: RunUpdateRequest) -> Any:
    """Merge tags and summary into a queued or running run (409 once finished)."""
    return update_run(yard, run_id, tags=body.tags, summary=body.summary)


@router.post("/runs/{run_id}/finish", response_model=Run, tags=["runs"])
def run_finish(yard: YardDep, run_id: str, body: RunFinishRequest, idem: IdemDep) -> Any:
    """Finish a queued or running run (summary and tags merged, as ``run finish``)."""
    return once(
        yard,
        idem,
        lambda on_commit: finish_run(
            yard,
            run_id,
            body.status,
            summary=body.summary,
            error=body.error,
            tags=body.tags,
            on_commit=on_commit,
        ),
        _model_answer(200),
    )


@router.post("/runs:batch", response_model=RunBatchResponse, status_code=201, tags=["runs"])
def run_batch(yard: YardDep, request: Request, body: RunBatchRequest, idem: IdemDep) -> Any:
    """Register up to 10,000 already-finished runs, all or none (as ``Yard.record_runs``)."""
    return once(
        yard,
        idem,
        lambda on_commit: record_runs(
            yard, body.runs, created_by=_created_by(request), on_commit=on_commit
        ),
        lambda runs: (201, {"runs": [r.model_dump(mode="json") for r in runs]}),
    )


# --- files ---------------------------------------------------------------------------

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
Kind = Annotated[
    Literal["file", "dir", "symlink"],
    Query(description="file (the body), dir (an empty folder) or symlink (target = body)"),
]
Replace = Annotated[bool, Query(description="replace an existing file (running runs only)")]
Mode = Annotated[
    str | None, Query(pattern="^0?[0-7]{1,4}$", description="octal permissions, e.g. 0644")
]
Mtime = Annotated[
    float | None, Query(ge=0, le=2**40, description="modification time, seconds since 1970")
]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key")]


async def _receive(
    request: Request,
    yard: Yard,
    run_id: str,
    dest: str,
    kind: str,
    replace: bool,
    mode: str | None,
    mtime: float | None,
    key: str | None,
) -> Any:
    run = await run_in_threadpool(get_run, yard, run_id)
    if run.status not in (RunStatus.queued, RunStatus.running) or (
        run.location is not RunLocation.active
    ):
        raise Conflict(
            f"run {run_id} is {run.status.value}: files are added to a queued or running run only",
            hint="upload before finishing the run",
        )
    if key is not None:
        validate_key(key)
    limit = yard.settings.file.web.max_upload_bytes
    declared = request.headers.get("content-length", "")
    try:
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"an uploaded file is at most {limit} bytes")
        stored: Stored = await upload_async_stream(
            Path(run.path),
            dest,
            request.stream(),
            limit=limit,
            kind=kind,
            replace=replace,
            same_ok=key is not None,
            mode=None if mode is None else int(mode, 8),
            mtime=mtime,
        )
    except TooLarge as exc:
        hint = "raise [web] max_upload_bytes in runyard.toml for larger files"
        return answer(request, 413, exc.code, exc.message, hint)
    except ClientDisconnect:
        return answer(request, 400, "disconnected", "the client left before the body ended")
    return _respond(201, StoredFile(**stored.__dict__).model_dump(mode="json"))


@router.put(
    "/runs/{run_id}/files/{path:path}",
    response_model=StoredFile,
    status_code=201,
    tags=["runs"],
    openapi_extra=_UPLOAD_BODY,
)
async def run_file_put(
    request: Request,
    yard: YardDep,
    run_id: str,
    path: str,
    kind: Kind = "file",
    replace: Replace = False,
    mode: Mode = None,
    mtime: Mtime = None,
    idempotency_key: IdemKey = None,
) -> Any:
    """Stream the body into the run's folder at ``path`` (temporary name, fsync,
    rename): 413 over ``[web] max_upload_bytes``, 409 when something is there already
    (unless ``replace``, or the same content again with an ``Idempotency-Key``)."""
    return await _receive(request, yard, run_id, path, kind, replace, mode, mtime, idempotency_key)


@router.put(
    "/runs/{run_id}/files",
    response_model=StoredFile,
    status_code=201,
    tags=["runs"],
    openapi_extra=_UPLOAD_BODY,
)
async def run_file_put_b64(
    request: Request,
    yard: YardDep,
    run_id: str,
    path_b64: Annotated[
        str, Query(description="the path's bytes, urlsafe base64 (a name that is not UTF-8)")
    ],
    kind: Kind = "file",
    replace: Replace = False,
    mode: Mode = None,
    mtime: Mtime = None,
    idempotency_key: IdemKey = None,
) -> Any:
    """``PUT /runs/{run_id}/files/{path}`` for a path given as base64 bytes."""
    try:
        raw = base64.urlsafe_b64decode(path_b64 + "=" * (-len(path_b64) % 4))
    except (binascii.Error, ValueError):
        raise Invalid("path_b64 is not urlsafe base64") from None
    dest = os.fsdecode(raw)
    return await _receive(request, yard, run_id, dest, kind, replace, mode, mtime, idempotency_key)
