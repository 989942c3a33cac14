"""``/ui/configs``: config versions, the canonical JSON of one with the plans that use it,
and the difference between two (``registry.configs.diff_configs``)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from runyard.errors import Invalid
from runyard.models import ConfigChange
from runyard.registry import configs, plans, scenarios
from runyard.web.ui.render import render
from runyard.web.ui.scenarios import checked_id, yard_of

router = APIRouter()

PAGE_SIZE = 50
PLANS_SHOWN = 50
COMPARE_CHOICES = 100


@router.get("/configs", response_class=HTMLResponse)
def config_list(request: Request, after: str | None = None) -> Response:
    with yard_of(request).read() as conn:
        page = configs.list_configs(conn, limit=PAGE_SIZE, after=after or None)
    json_href = "/api/v1/configs" + (f"?after={quote(after, safe='')}" if after else "")
    return render(
        request,
        "configs/list.html",
        title="Config versions",
        section="configs",
        json_href=json_href,
        page=page,
    )


@router.get("/configs/{config_version_id}", response_class=HTMLResponse)
def config_show(request: Request, config_version_id: str) -> Response:
    checked_id(config_version_id, "config version id")
    with yard_of(request).read() as conn:
        config = configs.get_config(conn, config_version_id)
        used_by = plans.list_plans(conn, limit=PLANS_SHOWN, config_version_id=config_version_id)
        names = scenarios.scenario_names(conn, (p.scenario_id for p in used_by.items))
        others = [
            c
            for c in configs.list_configs(conn, limit=COMPARE_CHOICES).items
            if c.config_version_id != config.config_version_id
        ]
    return render(
        request,
        "configs/show.html",
        title=f"Config {config.name or config.config_version_id}",
        section="configs",
        json_href=f"/api/v1/configs/{config.config_version_id}",
        config=config,
        plans=used_by,
        scenario_names=names,
        others=others,
    )


@router.get("/configs/{config_version_id}/diff")
def config_diff_choice(config_version_id: str, other: str = "") -> Response:
    """The "compare with" form (a plain GET form, so no JavaScript) lands here."""
    checked_id(config_version_id, "config version id")
    if not other:
        raise Invalid("choose a config version to compare with")
    checked_id(other, "config version id to compare with")
    return RedirectResponse(
        f"/ui/configs/{quote(config_version_id, safe='')}/diff/{quote(other, safe='')}",
        status_code=303,
    )


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _row(change: ConfigChange) -> dict[str, str]:
    return {
        "path": change.path,
        "change": change.change,
        "old": "" if change.change == "added" else _shown(change.old),
        "new": "" if change.change == "removed" else _shown(change.new),
    }


def _unified_lines(text: str) -> list[tuple[str, str]]:
    """The unified diff's lines with the class that colours them."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---", "@@")):
            out.append(("muted", line))
        elif line.startswith("+"):
            out.append(("diff-add", line))
        elif line.startswith("-"):
            out.append(("diff-del", line))
        else:
            out.append(("", line))
    return out


@router.get("/configs/{config_version_id}/diff/{other}", response_class=HTMLResponse)
def config_diff(request: Request, config_version_id: str, other: str) -> Response:
    checked_id(config_version_id, "config version id")
    checked_id(other, "config version id to compare with")
    with yard_of(request).read() as conn:
        a = configs.get_config(conn, config_version_id)
        b = configs.get_config(conn, other)
        diff = configs.diff_configs(conn, config_version_id, other)
    return render(
        request,
        "configs/diff.html",
        title=f"Config diff {a.config_version_id} → {b.config_version_id}",
        section="configs",
        json_href=f"/api/v1/configs/{a.config_version_id}/diff/{b.config_version_id}",
        a=a,
        b=b,
        diff=diff,
        rows=[_row(c) for c in diff.changes],
        unified=_unified_lines(diff.unified_diff),
        counts={
            kind: sum(1 for c in diff.changes if c.change == kind)
            for kind in ("added", "removed", "changed")
        },
    )
