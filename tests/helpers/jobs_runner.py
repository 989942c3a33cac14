"""Python runner entry points for the job tests (``tests.helpers.jobs_runner:NAME``).

The child imports this module, so it must stay importable without pytest or conftest.
"""

from __future__ import annotations

from typing import Any


def summarize(context: Any) -> dict[str, Any]:
    """Echo what the context held, so the test can compare it with the plan."""
    (context.run_dir / "touched.txt").write_text("yes", encoding="utf-8")
    print("summarize ran", flush=True)
    return {
        "run_id": context.run_id,
        "plan_version_id": context.plan_version_id,
        "params": dict(context.params),
        "config": dict(context.config),
        "has_data": context.scenario_data is not None,
        "run_dir": str(context.run_dir),
        "score": 41.5,
    }


def explode(context: Any) -> dict[str, Any]:
    raise ValueError("boom from the runner")


def not_a_dict(context: Any) -> list[int]:
    return [1, 2, 3]


def nothing(context: Any) -> None:
    """Returns None: no summary.json is written, the run still succeeds."""
    return None
