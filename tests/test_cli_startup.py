"""The CLI starts in a blink: ``import runyard`` and ``runyard --help`` load none of the
heavy libraries (SQLAlchemy, FastAPI, NumPy, pydantic), and a command's own help loads
no database or web library (pydantic comes with Typer's parameter parsing there).
Checked in fresh interpreters, so nothing another test imported can hide a regression."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "fastapi", "numpy", "pydantic", "starlette", "jinja2", "alembic")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})), file=sys.stderr)
"""


def _loaded(body: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(body=body)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    last = done.stderr.strip().splitlines()[-1]
    return set(json.loads(last))


def test_import_runyard_loads_nothing_heavy():
    assert _loaded("import runyard") & set(HEAVY) == set()


def test_the_public_names_still_load_on_first_use():
    loaded = _loaded("import runyard\nrunyard.open_yard\nrunyard.RunStatus")
    assert "sqlalchemy" in loaded  # the yard needs its database layer once it is used


def test_runyard_help_loads_nothing_heavy():
    body = (
        "from runyard.cli.main import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert _loaded(body) & set(HEAVY) == set()


@pytest.mark.parametrize(
    "command",
    [["run", "list"], ["run", "start"], ["archive"], ["plan", "show"], ["serve"], ["backup"]],
)
def test_a_commands_help_loads_no_database_nor_web_library(command):
    body = (
        "from runyard.cli.main import app\n"
        "try:\n"
        f"    app({[*command, '--help']!r})\n"
        "except SystemExit:\n"
        "    pass"
    )
    loaded = _loaded(body)
    assert loaded & {"sqlalchemy", "fastapi", "numpy", "starlette", "jinja2", "alembic"} == set()


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["run", "list"], "run"),
        (["--yard", "/y", "run", "list"], "run"),
        (["--yard=/y", "archive", "--all"], "archive"),
        (["--help"], None),
        (["--version"], None),
        ([], None),
        (["nope"], "nope"),
    ],
)
def test_the_command_a_line_runs_is_found_past_the_global_options(argv, name):
    from runyard.cli.main import _command_name, app, app_for

    assert _command_name(argv) == name
    built = app_for(argv)
    if name in (None, "nope"):
        assert built is app  # the whole app answers: help, version, unknown command
    else:
        assert built is not app
        assert [c.name for c in built.registered_commands] + [
            g.name for g in built.registered_groups
        ] == [name]


def test_the_server_path_of_run_start_loads_no_database_library():
    body = (
        "from runyard.cli.main import app\n"
        "try:\n"
        "    app(['--server', 'http://127.0.0.1:9', 'run', 'start', '--help'])\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert _loaded(body) & {"sqlalchemy", "fastapi", "starlette", "alembic"} == set()


def test_a_remote_run_start_loads_httpx_but_no_database_nor_models(tmp_path):
    """An actual remote call (to a port nothing listens on: it fails after its retries,
    which is enough to have loaded everything the remote path loads)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    body = (
        "from runyard.cli.main import app\n"
        "try:\n"
        f"    app(['--server', 'http://127.0.0.1:{port}', 'run', 'start', '--plan', 'pv-x'])\n"
        "except SystemExit:\n"
        "    pass"
    )
    loaded = _loaded(body)
    assert "httpx" in loaded
    assert loaded & {"sqlalchemy", "fastapi", "starlette", "alembic", "numpy"} == set()
