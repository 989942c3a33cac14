"""``/api/v1/views``: saved views of the runs list, read by anyone who may read, saved
and deleted by a recorder or above (the same core calls as ``runyard view``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from runyard.models import SavedView
from runyard.registry import views
from runyard.web.api import READ_ERRORS, WRITE_ERRORS, YardDep
from runyard.web.auth import require_access, require_api_write

router = APIRouter(
    prefix="/api/v1",
    tags=["views"],
    responses=READ_ERRORS,
    dependencies=[Depends(require_access)],
)


class ViewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    where: str = Field(default="", max_length=10_000, description="the query (docs/query.md)")
    order_by: list[str] = Field(default_factory=list, max_length=8)
    columns: list[str] = Field(default_factory=list, max_length=24)


class ViewList(BaseModel):
    items: list[SavedView]


@router.get("/views", response_model=ViewList)
def view_list(yard: YardDep) -> Any:
    """Every saved view, by name."""
    with yard.read() as conn:
        return ViewList(items=views.list_views(conn))


@router.get("/views/{name}", response_model=SavedView)
def view_show(yard: YardDep, name: str) -> Any:
    with yard.read() as conn:
        return views.get_view(conn, name)


@router.put(
    "/views/{name}",
    response_model=SavedView,
    dependencies=[Depends(require_api_write)],
    responses=WRITE_ERRORS,
)
def view_save(yard: YardDep, name: str, body: ViewRequest) -> Any:
    """Save (or replace) a view; a bad query is a 422 and nothing is saved."""
    with yard.write() as conn:
        return views.save_view(
            conn, name, body.where, body.order_by, body.columns, list(yard.settings.kpis)
        )


@router.delete("/views/{name}", dependencies=[Depends(require_api_write)], responses=WRITE_ERRORS)
def view_delete(yard: YardDep, name: str) -> dict[str, str]:
    with yard.write() as conn:
        views.delete_view(conn, name)
    return {"deleted": name}
