"""The child side of a ``python`` runner: ``python -m runyard.jobs.entry MODULE:FUNC RUN_DIR``.

Imports the function, calls it with a ``RunnerContext`` built from the files the
planning job wrote into the run folder, and writes what it returns (a dict) to
``summary.json``. Exit codes: 0 done, 1 the function raised (its traceback goes to
``runner.log``), 2 the entry point or its inputs are wrong (a one-line message).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runyard.canonical import check_json_limits
from runyard.errors import Invalid
from runyard.fsutil import write_atomic

SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class RunnerContext:
    """What a Python runner is called with."""

    run_dir: Path
    config: Mapping[str, Any]
    scenario_data: Mapping[str, Any] | None
    params: Mapping[str, Any]
    run_id: str = ""
    plan_version_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def build_context(run_dir: Path) -> RunnerContext:
    data_file = os.environ.get("RUNYARD_SCENARIO_DATA_FILE", "")
    plan = _load(run_dir / "plan.json")
    return RunnerContext(
        run_dir=run_dir,
        config=_load(run_dir / "config.json"),
        scenario_data=_load(Path(data_file)) if data_file else None,
        params=_load(run_dir / "params.json"),
        run_id=os.environ.get("RUNYARD_RUN_ID", run_dir.name),
        plan_version_id=str(plan.get("plan_version_id", "")),
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2 or ":" not in argv[0]:
        print("usage: python -m runyard.jobs.entry MODULE:FUNCTION RUN_DIR", file=sys.stderr)
        return 2
    entry, run_dir = argv[0], Path(argv[1])
    module_name, func_name = entry.split(":", 1)
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        print(f"runyard: cannot load the runner entry {entry}: {exc}", file=sys.stderr)
        return 2
    try:
        context = build_context(run_dir)
    except (OSError, ValueError) as exc:
        print(f"runyard: cannot read the run's inputs in {run_dir}: {exc}", file=sys.stderr)
        return 2
    try:
        summary = func(context)
    except Exception:
        traceback.print_exc()
        return 1
    if summary is not None:
        if not isinstance(summary, Mapping):
            print(
                f"runyard: {entry} returned a {type(summary).__name__}, not a dict",
                file=sys.stderr,
            )
            return 2
        try:
            check_json_limits(dict(summary), f"the summary {entry} returned")
            text = json.dumps(dict(summary), indent=2, ensure_ascii=False, allow_nan=False)
        except Invalid as exc:
            print(f"runyard: {exc.message}", file=sys.stderr)
            return 2
        except (TypeError, ValueError) as exc:
            print(f"runyard: the summary {entry} returned is not JSON: {exc}", file=sys.stderr)
            return 2
        write_atomic(run_dir / SUMMARY_NAME, text.encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
