"""Config versions: immutable canonical JSON snapshots whose id is their content."""

from __future__ import annotations

import difflib
import json
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from runyard import canonical
from runyard.db.tables import config_versions
from runyard.errors import Invalid, NotFound
from runyard.ids import validate_label
from runyard.models import ConfigAdded, ConfigChange, ConfigDiff, ConfigVersion, Page
from runyard.registry.common import as_aware, newest_first_page, utcnow
from runyard.registry.search_index import index_config


def _to_model(row: Any) -> ConfigVersion:
    return ConfigVersion(
        config_version_id=row.config_version_id,
        name=row.name,
        digest=row.digest,
        created_at=as_aware(row.created_at),
        content=canonical.loads(row.content),
    )


def add_config(
    conn: Connection, text: str, name: str | None = None, source: str = "config"
) -> ConfigAdded:
    """Store a config snapshot from JSON text; identical content returns the existing id."""
    if name is not None:
        validate_label(name, "config name")
    parsed = canonical.parse_exact(text, source)
    if not isinstance(parsed, dict):
        raise Invalid(f"{source} must be a JSON object (got {type(parsed).__name__})")
    content = canonical.canonical_text(parsed)
    config_id = canonical.config_version_id(content)
    existing = conn.execute(
        select(config_versions).where(config_versions.c.config_version_id == config_id)
    ).first()
    if existing is None:
        try:
            with conn.begin_nested():
                conn.execute(
                    config_versions.insert().values(
                        config_version_id=config_id,
                        name=name,
                        content=content,
                        digest=canonical.content_digest(content),
                        created_at=utcnow(),
                    )
                )
                index_config(conn, config_id, json.loads(content))
        except IntegrityError:
            pass  # added concurrently with the same content: same id, same snapshot
        else:
            return ConfigAdded(**get_config(conn, config_id).model_dump(), created=True)
    return ConfigAdded(**get_config(conn, config_id).model_dump(), created=False)


def get_config(conn: Connection, config_version_id: str) -> ConfigVersion:
    row = conn.execute(
        select(config_versions).where(config_versions.c.config_version_id == config_version_id)
    ).first()
    if row is None:
        raise NotFound(
            f"no config version {config_version_id!r}",
            hint="`runyard config list` shows them",
        )
    return _to_model(row)


def list_configs(
    conn: Connection, limit: int = 100, after: str | None = None
) -> Page[ConfigVersion]:
    """Config versions, newest first."""
    t = config_versions
    rows, cursor = newest_first_page(
        conn, select(t), t.c.created_at, t.c.config_version_id, limit, after
    )
    return Page[ConfigVersion](items=[_to_model(r) for r in rows], next_cursor=cursor)


def _changes(a: Any, b: Any, path: str, out: list[ConfigChange]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else key
            if key not in b:
                out.append(ConfigChange(path=sub, change="removed", old=a[key]))
            elif key not in a:
                out.append(ConfigChange(path=sub, change="added", new=b[key]))
            else:
                _changes(a[key], b[key], sub, out)
    elif a != b or type(a) is not type(b):
        out.append(ConfigChange(path=path or "(root)", change="changed", old=a, new=b))


def diff_configs(conn: Connection, id_a: str, id_b: str) -> ConfigDiff:
    """What changed from config version ``id_a`` to ``id_b``: paths and a unified diff."""
    a, b = get_config(conn, id_a), get_config(conn, id_b)
    changes: list[ConfigChange] = []
    _changes(a.content, b.content, "", changes)
    text_a = json.dumps(a.content, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    text_b = json.dumps(b.content, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    unified = "\n".join(
        difflib.unified_diff(text_a, text_b, fromfile=id_a, tofile=id_b, lineterm="")
    )
    return ConfigDiff(
        config_version_id_a=id_a,
        config_version_id_b=id_b,
        identical=not changes,
        changes=changes,
        unified_diff=unified,
    )
