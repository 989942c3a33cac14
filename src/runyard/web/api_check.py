"""``/api/v1/check``: ``runyard check`` through the API (the CLI's ``--server`` uses it).

A read (role reader, as every GET): the same core as the command
(``durability.check.check_yard``), which compares the registry with the runs and archive
folders and changes nothing. The answer is the
report whatever it found (``ok`` false with the mismatches listed); the CLI turns a
report that is not ok into its exit 6, as locally.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from runyard.durability.check import check_yard
from runyard.web.api import READ_ERRORS, YardDep
from runyard.web.auth import require_access

router = APIRouter(
    prefix="/api/v1",
    tags=["check"],
    responses=READ_ERRORS,
    dependencies=[Depends(require_access)],  # a read: a reader's token when tokens are on
)


class CheckMismatch(BaseModel):
    kind: str
    run_id: str | None
    path: str | None = Field(description="relative to the yard where possible (display form)")
    detail: str
    path_b64: str | None = Field(default=None, description="the exact bytes of a non-UTF-8 path")


class CheckAnswer(BaseModel):
    ok: bool
    counts: dict[str, int] = Field(description="mismatches of each kind, zero included")
    mismatches: list[CheckMismatch]
    runs_checked: int
    folders_seen: int
    objects_seen: int = Field(default=0, description="run objects found in archive stores")


@router.get("/check", response_model=CheckAnswer)
def check(yard: YardDep, deep: bool = False) -> Any:
    """Every mismatch between the registry and the disk (read-only), as ``runyard check``;
    ``deep`` re-hashes every run object in an archive store (``check --deep``)."""
    return check_yard(yard, deep=deep).to_dict()
