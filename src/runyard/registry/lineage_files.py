"""The lineage as files in the yard, so that ``runyard rebuild`` can recreate scenarios,
config versions and plan versions, with their ids, after the registry is lost.

``<yard>/lineage/scenarios/<scenario_id>.json``, ``lineage/configs/<config_version_id>.json``
and ``lineage/plans/<plan_version_id>.json`` hold each one's registry fields (a config its
canonical content; a scenario its data digest, the data itself being in
``<yard>/scenario_data/<sha256>.json``). They are written when each is created through
the CLI (a scenario again when its lock changes), and for every plan a run is started
from, once per open yard: a registry restored from an old backup, or none at all, can
always be brought back from the disk. Files are written atomically; they never change
the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Connection, select

from runyard import fsutil
from runyard.config import Settings
from runyard.db.tables import config_versions
from runyard.errors import Invalid
from runyard.fsutil import write_atomic
from runyard.models import ConfigVersion, PlanVersion, Scenario
from runyard.registry.configs import get_config
from runyard.registry.plans import get_plan
from runyard.registry.scenarios import data_content, get_scenario

if TYPE_CHECKING:
    from runyard.yard import Yard

LINEAGE_DIR = "lineage"
# A sanity cap only: a config's file holds its content twice (as indented JSON and as
# canonical text), and indentation alone can make it many times MAX_JSON_BYTES.
LINEAGE_FILE_BYTES = 1024 * 1024 * 1024


def lineage_dir(settings: Settings) -> Path:
    return settings.yard_path / LINEAGE_DIR


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    write_atomic(path, text.encode())


def write_scenario(settings: Settings, scenario: Scenario, data_text: str | None = None) -> None:
    _write(
        lineage_dir(settings) / "scenarios" / f"{scenario.scenario_id}.json",
        scenario.model_dump(mode="json"),
    )
    if scenario.data_digest and data_text is not None:
        data_file = settings.scenario_data_dir / f"{scenario.data_digest}.json"
        if not data_file.exists():
            data_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(data_file, data_text.encode())


def write_config(conn: Connection, settings: Settings, config_version_id: str) -> None:
    """A config version's file, with its canonical text exactly as stored (its id is
    derived from that text, so a rebuild checks the one against the other)."""
    config = get_config(conn, config_version_id)
    text = conn.execute(
        select(config_versions.c.content).where(
            config_versions.c.config_version_id == config_version_id
        )
    ).scalar_one()
    _write(
        lineage_dir(settings) / "configs" / f"{config_version_id}.json",
        {**config.model_dump(mode="json"), "canonical": text},
    )


def write_plan(settings: Settings, plan: PlanVersion) -> None:
    _write(
        lineage_dir(settings) / "plans" / f"{plan.plan_version_id}.json",
        plan.model_dump(mode="json"),
    )


def write_plan_lineage(conn: Connection, settings: Settings, plan_version_id: str) -> None:
    """The files of a plan version and of its scenario and config version."""
    plan = get_plan(conn, plan_version_id)
    scenario = get_scenario(conn, plan.scenario_id)
    data = data_content(conn, scenario.data_digest) if scenario.data_digest else None
    write_scenario(settings, scenario, data)
    write_config(conn, settings, plan.config_version_id)
    write_plan(settings, plan)


def ensure_plan_lineage(yard: Yard, plan_version_id: str, conn: Connection | None = None) -> None:
    """Write a plan's lineage files unless this open yard did already."""
    done: set[str] = yard.plan_cache.setdefault("__lineage_written__", set())
    if plan_version_id in done:
        return
    if conn is None:
        with yard.read() as read_conn:
            write_plan_lineage(read_conn, yard.settings, plan_version_id)
    else:
        write_plan_lineage(conn, yard.settings, plan_version_id)
    done.add(plan_version_id)


class ConfigFile(ConfigVersion):
    canonical: str  # the stored canonical text


@dataclass
class LineageFiles:
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    configs: dict[str, ConfigFile] = field(default_factory=dict)
    plans: dict[str, PlanVersion] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # "path: why"


def read_lineage(settings: Settings) -> LineageFiles:
    """Every lineage file; one that cannot be read is a problem, not an error."""
    found = LineageFiles()
    root = lineage_dir(settings)
    kinds: list[tuple[str, type[Scenario] | type[ConfigFile] | type[PlanVersion], str]] = [
        ("scenarios", Scenario, "scenario_id"),
        ("configs", ConfigFile, "config_version_id"),
        ("plans", PlanVersion, "plan_version_id"),
    ]
    for folder, model, key in kinds:
        target: dict[str, Any] = getattr(found, folder)
        try:
            entries = sorted(p for p in (root / folder).iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            continue
        for path in entries:
            try:
                # Never blocks on a FIFO put in a lineage file's place.
                raw = fsutil.read_regular_file(path, path.name, LINEAGE_FILE_BYTES)
                if len(raw) > LINEAGE_FILE_BYTES:
                    raise Invalid(f"larger than {LINEAGE_FILE_BYTES} bytes")
                item = model.model_validate_json(raw)
            except (OSError, ValidationError, ValueError, Invalid) as exc:
                first = (exc.message if isinstance(exc, Invalid) else str(exc)).splitlines()[0]
                found.problems.append(f"{path.relative_to(settings.yard_path)}: {first}")
                continue
            target[getattr(item, key)] = item
    return found
