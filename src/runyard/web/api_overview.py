"""``/api/v1/overview``: the yard at a glance, the JSON twin of ``/ui``.

A read: on a server with tokens it needs one (any role), unless ``public_read``. It
is the same core call as the page
(``registry.overview.overview``), which reads the registry only, never the disk.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from runyard.registry.overview import Overview, overview
from runyard.web.api import READ_ERRORS, YardDep
from runyard.web.auth import require_access

router = APIRouter(
    prefix="/api/v1",
    tags=["overview"],
    responses=READ_ERRORS,
    dependencies=[Depends(require_access)],
)


@router.get("/overview", response_model=Overview)
def yard_overview(yard: YardDep) -> Any:
    """Runs by status and location, runs per day (30 UTC days), recorded disk use of the
    runs root and the archive, the largest groups, running and recently failed jobs, the
    last good backup's age, and how many runs the next retention pass would at most
    archive."""
    return overview(yard)
