"""The presets of ``runyard init``: the ``runyard.toml`` each one writes.

``planning`` is the second seed's flow (scenarios, configs, plans, runs in
``runs/``). ``video`` is the first seed's workspace layout, so that a yard can
be created inside an existing workspace of that shape without moving anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

PRESETS = ("planning", "video")

_COMMON_TAIL = """
[db]
# SQLAlchemy URL or SQLite file path (relative to this folder). RUNYARD_DB wins over it.
# Default: registry.db in this folder.
{db_line}

[retention]
# Cap on active runs: `runyard retention` archives the oldest eligible ones above it
# (RUNYARD_MAX_RUNS wins).
# max_active_runs = 200

[jobs]
# A job whose worker stops sending heartbeats for lost_after_seconds is failed with
# "worker lost", or queued again while it has attempts left (max_attempts).
max_attempts = 1
heartbeat_seconds = 2
lost_after_seconds = 30

# How plans run (`runyard plan create --runner NAME`). Without a [runners.default]
# table, "default" is the built-in PSI example (runyard.examples.psi:run).
# [runners.default]
# kind = "python"
# entry = "runyard.examples.psi:run"
# timeout_seconds = 3600
#
# [runners.my-model]
# kind = "command"
# argv = ["{{python}}", "-m", "my_model", "--run-dir", "{{run_dir}}", "--config", "{{config}}",
#         "--data", "{{scenario_data}}", "--params", "{{params}}"]
# env = {{ OMP_NUM_THREADS = "2" }}
# timeout_seconds = 600
"""

_PLANNING = """# runyard yard configuration; every key is described in docs/configuration.md
yard_id = "{yard_id}"
preset = "planning"

runs_root = "runs"
archive_root = "_archive"
logs_dir = "logs"

# Archive guards.
keep_recent_minutes = 60
keep_last_runs = 2
keep_marker = ".keep"

# A regex applied to run ids; its named groups, joined with "/", give the run's group.
# group_pattern = '^(?P<channel>CH\\d+)-(?P<episode>\\d+)'
legacy_patterns = []
"""

_VIDEO = """# runyard yard configuration (video preset); keys are described in docs/configuration.md
yard_id = "{yard_id}"
preset = "video"

runs_root = "video/runs"
archive_root = "video/_archive"
logs_dir = "logs/regression"

# Archive guards: skip runs changed within a day, runs with a .keep marker,
# and the newest 2 runs of each episode.
keep_recent_minutes = 1440
keep_last_runs = 2
keep_marker = ".keep"

# Runs not tied to an episode: numeric ids (192), api_*, jinsei*, CHxx-*.
legacy_patterns = ['^[0-9]+$', '^api_', '^jinsei', '^CH[0-9]{{2}}-']

# An episode's status.json names its adopted run, which archiving never moves; the
# two wildcard parts of the path (channel/episode, e.g. CH01/003) name its group.
[[references]]
glob = "scripts/*/*/status.json"
json_path = "metadata.video_run_id"
"""


_ARCHIVE_HEAD = """
# Archive batches into an S3-compatible bucket instead of archive_root. Credentials come
# from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE, never from this file.
"""

_ARCHIVE_EXAMPLE = """# [archive]
# store = "s3://my-bucket/runyard"
# endpoint_url = "http://127.0.0.1:8333"   # S3-compatible stores; omit for AWS
# region = "eu-west-1"
"""


def _archive_table(archive: Mapping[str, str | None] | None) -> str:
    if not archive or not archive.get("store"):
        return _ARCHIVE_HEAD + _ARCHIVE_EXAMPLE
    lines = ["[archive]"]
    for key in ("store", "endpoint_url", "region"):
        value = archive.get(key)
        if value is not None:
            # JSON strings are TOML basic strings (the values are checked, printable).
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    return _ARCHIVE_HEAD + "\n".join(lines) + "\n"


def render_config(
    preset: str,
    yard_id: str,
    db_url: str | None = None,
    archive: Mapping[str, str | None] | None = None,
) -> str:
    """The text of a new ``runyard.toml`` for ``preset``; ``archive`` is its ``[archive]``
    table (``store``, ``endpoint_url``, ``region``), a commented example without one."""
    body = {"planning": _PLANNING, "video": _VIDEO}[preset].format(yard_id=yard_id)
    db_line = (
        f"url = {json.dumps(db_url)}"
        if db_url
        else '# url = "postgresql+psycopg://user@host/dbname"'
    )
    return body + _COMMON_TAIL.format(db_line=db_line) + _archive_table(archive)
