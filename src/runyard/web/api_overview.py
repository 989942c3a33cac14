"""``/api/v1/overview``: the yard at a glance, the JSON twin of ``/ui``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["overview"])
