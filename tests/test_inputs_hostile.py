"""Hostile input at every entrance: JSON limits, files that are not regular files, option
values at their edges, errors that name the right thing, text that is not UTF-8.

Each test here failed on main before issue 13; see docs/manifest.md ("JSON limits") and
docs/exit-codes.md for the answers they hold runyard to.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text as sql

import runyard
from runyard.canonical import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    canonical_text,
    check_json_limits,
    parse_exact,
)
from runyard.errors import ConfigFileError, Invalid
from runyard.jobs.execute import _read_summary
from tests.conftest import Cli, CliResult, registry_snapshot, tree_snapshot


def nested(depth: int, leaf: str = "1") -> str:
    """JSON text of ``depth`` nested arrays around ``leaf``."""
    return "[" * depth + leaf + "]" * depth


def nested_value(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# --- the limits themselves (runyard.canonical) ---------------------------------------------


def test_depth_limit_is_64_levels_exactly():
    assert MAX_JSON_DEPTH == 64
    assert parse_exact(nested(64)) is not None
    parse_exact('{"a":' * 63 + "[1]" + "}" * 63)  # objects count too: 64 levels
    with pytest.raises(Invalid, match=r"^c\.json: nested 65 levels deep; the limit is 64$"):
        parse_exact(nested(65), "c.json")
    with pytest.raises(Invalid, match="nested 65 levels deep"):
        parse_exact('{"a":' * 64 + "[1]" + "}" * 64)


def test_deep_nesting_never_raises_recursion_error():
    with pytest.raises(Invalid, match="the limit is 64"):
        parse_exact(nested(100_000))
    with pytest.raises(Invalid, match="nested 65 levels deep"):
        check_json_limits(nested_value(100_000), "x")
    with pytest.raises(Invalid, match="nested 65 levels deep"):
        canonical_text({"deep": nested_value(100_000)})


def test_size_limit_is_4_mib_of_utf8():
    assert MAX_JSON_BYTES == 4 * 1024 * 1024
    fits = '"' + "a" * (MAX_JSON_BYTES - 2) + '"'
    assert len(parse_exact(fits)) == MAX_JSON_BYTES - 2
    with pytest.raises(Invalid, match="the limit is 4194304"):
        parse_exact(fits + " ")
    # counted in UTF-8 bytes, not characters: 2 bytes each
    with pytest.raises(Invalid, match="the limit is 4194304"):
        parse_exact('"' + "é" * (MAX_JSON_BYTES // 2) + '"')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"n": 1e400}', r"^f: 1E\+400 is beyond the float64 range .* at \$\.n$"),
        ('{"n": -1e400}', r"^f: -1E\+400 is beyond the float64 range"),
        ('{"n": [0, 1e-400]}', r"^f: 1E-400 is too small for a float64 .* at \$\.n\[1\]$"),
        ('{"a b": "\\ud800"}', r'unpaired surrogate .* at \$\["a b"\]$'),
        ('{"\\udc80": 1}', r"^f: the key .* holds an unpaired surrogate"),
    ],
)
def test_values_beyond_the_limits_say_what_and_where(text, message):
    with pytest.raises(Invalid, match=message):
        parse_exact(text, "f")


def test_python_values_get_the_same_answer():
    for bad in ({"n": float("inf")}, {"n": 10**400}, {"n": Decimal("1e-400")}, {"\udc80": 1}):
        with pytest.raises(Invalid):
            check_json_limits(bad, "v")
    check_json_limits({"n": 1e308, "m": 5e-324, "z": 0, "b": True, "s": "😀"}, "v")


# --- every JSON entrance gives the same answer (issue 13, item 2) --------------------------

DEEP_OK = nested(63)  # inside an object: 64 levels in all
DEEP_BAD = nested(64)  # 65 levels


def _error(result: CliResult) -> dict[str, Any]:
    assert result.exit_code == 5, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return dict(result.json["error"])


def _config_file(tmp_path: Path, text: str, name: str = "c.json") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1e-400"])
def test_config_add_refuses_numbers_beyond_float64_instead_of_storing_null(
    cli: Cli, tmp_path: Path, snapshot: Any, number: str
) -> None:
    before = snapshot()
    text = f'{{"lot": {number}}}'
    from_file = _error(cli("config", "add", _config_file(tmp_path, text), "--json"))
    from_stdin = _error(cli("config", "add", "-", "--json", input=text))
    for error in (from_file, from_stdin):
        assert error["code"] == "invalid"
        assert "float64" in error["message"] and "at $.lot" in error["message"]
    assert from_file["message"].startswith(f"{tmp_path / 'c.json'}: ")
    assert snapshot() == before  # nothing stored: not null, not anything


def test_json_files_over_the_size_limit_are_refused_without_reading_them_whole(
    cli: Cli, tmp_path: Path, snapshot: Any
) -> None:
    before = snapshot()
    big = tmp_path / "big.json"
    big.write_text('{"x": "' + "a" * MAX_JSON_BYTES + '"}')
    for args in (("config", "add", str(big)), ("scenario", "add", "s", "--data", str(big))):
        assert "the limit is 4194304" in _error(cli(*args, "--json"))["message"]
    assert snapshot() == before


def test_every_json_entrance_refuses_the_same_values(
    cli: Cli, lineage: dict[str, str], tmp_path: Path, snapshot: Any
) -> None:
    run_id = cli.ok("run", "start", "--plan", lineage["plan_version_id"])["run_id"]
    before = snapshot()
    for bad in ("1e400", "1e-400", DEEP_BAD, '"\\ud800"'):
        text = f'{{"x": {bad}}}'
        attempts = [
            cli("config", "add", _config_file(tmp_path, text), "--json"),
            cli("scenario", "add", "s2", "--data", _config_file(tmp_path, text), "--json"),
            cli(
                "plan",
                "create",
                "--scenario",
                lineage["scenario_id"],
                "--config",
                lineage["config_version_id"],
                "--param",
                f"x={bad}",
                "--json",
            ),
            cli("run", "finish", run_id, "--status", "succeeded", "--summary", text, "--json"),
            cli(
                "run",
                "finish",
                run_id,
                "--status",
                "succeeded",
                "--summary",
                "@" + _config_file(tmp_path, text, "s.json"),
                "--json",
            ),
        ]
        for result in attempts:
            assert _error(result)["code"] == "invalid", bad
    assert snapshot() == before


def test_deep_param_text_is_refused_not_a_crash(cli: Cli, lineage: dict[str, str]) -> None:
    result = cli(
        "plan",
        "create",
        "--scenario",
        lineage["scenario_id"],
        "--config",
        lineage["config_version_id"],
        "--param",
        "x=" + nested(100_000),
        "--json",
    )
    assert "the limit is 64" in _error(result)["message"]


def test_python_api_refuses_what_the_cli_refuses(
    yard: runyard.Yard, cli: Cli, lineage: dict[str, str], snapshot: Any
) -> None:
    plan = lineage["plan_version_id"]
    deep = nested_value(64)  # 65 levels inside the summary object
    with yard.start_run(plan) as run:
        for bad in (float("inf"), 10**400, Decimal("1e-400"), deep, "\udc80"):
            with pytest.raises(Invalid):
                run.log_summary({"x": bad})
        run.log_summary({"x": nested_value(63)})  # 64 levels: accepted
    assert run.result is not None and run.result.status == "succeeded"
    before = snapshot()
    for bad in (float("nan"), 10**400, deep):
        with pytest.raises(Invalid):
            yard.record_runs([{"plan_version_id": plan, "summary": {"x": bad}}])
        with pytest.raises(Invalid), yard.start_run(plan, tags={"x": "\udc80"}):
            pass
    assert snapshot() == before


def _empty_registry(yard_path: Path) -> None:
    with runyard.open_yard(yard_path) as opened, opened.write() as conn:
        for table in (
            "aggregates",
            "jobs",
            "executions",
            "runs",
            "plan_versions",
            "config_versions",
            "scenarios",
            "scenario_data",
        ):
            conn.execute(sql(f"DELETE FROM {table}"))


def test_what_was_accepted_at_the_limits_always_reads_back_and_rebuilds(
    cli: Cli, yard_path: Path, tmp_path: Path, yard: runyard.Yard
) -> None:
    """Depth 64 everywhere, 1.7e308 and 5e-324: listings, shows and rebuild never fail."""
    edge = f'{{"deep": {DEEP_OK}, "big": 1.7e308, "tiny": 5e-324, "neg": -1.7e308}}'
    scenario = cli.ok("scenario", "add", "edge", "--data", _config_file(tmp_path, edge, "d.json"))
    config = cli.ok("config", "add", _config_file(tmp_path, edge))
    plan = cli.ok(
        "plan",
        "create",
        "--scenario",
        "edge",
        "--config",
        config["config_version_id"],
        "--param",
        f"deep={DEEP_OK}",
        "--param",
        "big=1.7e308",
    )
    run_id = cli.ok("run", "start", "--plan", plan["plan_version_id"])["run_id"]
    cli.ok("run", "finish", run_id, "--status", "succeeded", "--summary", edge)
    with yard.start_run(plan["plan_version_id"]) as handle:
        handle.log_summary({"deep": nested_value(63), "tiny": 5e-324})
    shows = [
        ("run", "list"),
        ("run", "show", run_id),
        ("run", "show", handle.run_id),
        ("plan", "show", plan["plan_version_id"]),
        ("plan", "list"),
        ("config", "show", config["config_version_id"]),
        ("config", "list"),
        ("scenario", "show", scenario["scenario_id"]),
    ]
    state = {args: cli.ok(*args) for args in shows}
    shown = state[("run", "show", run_id)]["summary"]
    assert shown["big"] == 1.7e308 and shown["tiny"] == 5e-324
    for args in shows:  # and as tables, for people
        assert cli(*args).exit_code == 0, args
    _empty_registry(yard_path)
    rebuilt = cli.ok("rebuild")
    assert rebuilt["problems"] == [], rebuilt["problems"]
    assert {args: cli.ok(*args) for args in shows} == state


def test_run_json_beyond_the_limits_is_a_per_folder_error(
    cli: Cli, lineage: dict[str, str], yard_path: Path
) -> None:
    good = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    manifest = json.loads((Path(good["path"]) / "run.json").read_text())
    runs_root = yard_path / "runs"
    bad_docs = {
        "huge-number": json.dumps({**manifest, "run_id": "huge-number"}).replace(
            '"summary": {}', '"summary": {"x": 1e400}'
        ),
        "tiny-number": json.dumps({**manifest, "run_id": "tiny-number"}).replace(
            '"summary": {}', '"summary": {"x": 1e-400}'
        ),
        "too-deep": json.dumps({**manifest, "run_id": "too-deep"}).replace(
            '"summary": {}', f'"summary": {{"x": {nested(100_000)}}}'
        ),
        "surrogate": json.dumps({**manifest, "run_id": "surrogate", "error": "\udc80"}),
    }
    for name, doc in bad_docs.items():
        (runs_root / name).mkdir()
        (runs_root / name / "run.json").write_text(doc)
    (runs_root / "not-utf8").mkdir()
    (runs_root / "not-utf8" / "run.json").write_bytes(
        json.dumps({**manifest, "run_id": "not-utf8"}).encode().replace(b"running", b"run\xffing")
    )
    result = cli("run", "import", "--all", "--json")
    assert result.exit_code == 5 and "Traceback" not in result.stderr
    outcomes = {o["run_id"]: o for o in result.json["items"]}
    for name in [*bad_docs, "not-utf8"]:
        assert outcomes[name]["outcome"] == "error", outcomes[name]
    assert "float64" in outcomes["huge-number"]["message"]
    assert "too small" in outcomes["tiny-number"]["message"]
    assert "the limit is 65" in outcomes["too-deep"]["message"]
    assert "surrogate" in outcomes["surrogate"]["message"]
    assert "not UTF-8" in outcomes["not-utf8"]["message"]
    assert cli.ok("run", "list")["items"][0]["run_id"] == good["run_id"]
    report = cli.ok("rebuild")
    problems = "\n".join(report["problems"])
    for name in [*bad_docs, "not-utf8"]:
        assert f"{name}: " in problems
    assert cli.ok("run", "list", "--limit", "1000")  # still lists


# --- files that are not regular files never block (issue 13, item 3) -----------------------

REFERENCE_RULE = """
[[references]]
glob = "scripts/*/*/status.json"
json_path = "metadata.video_run_id"
"""


@pytest.fixture
def sqlite_yard(tmp_path: Path) -> Path:
    """A yard on SQLite (what a FIFO does is the filesystem's business, not the database's)."""
    path = tmp_path / "yard"
    runyard.init_yard(path)
    return path


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``runyard ARGS`` in a child process: a command that blocks fails the test
    (TimeoutExpired) instead of hanging the suite."""
    return subprocess.run(
        [sys.executable, "-m", "runyard", *args], capture_output=True, timeout=timeout, check=False
    )


def _refused(result: subprocess.CompletedProcess[bytes], fragment: str) -> dict[str, Any]:
    assert result.returncode == 5, (result.returncode, result.stdout, result.stderr)
    assert b"Traceback" not in result.stderr
    error = dict(json.loads(result.stdout)["error"])
    assert fragment in error["message"], error
    return error


def _fifo(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return str(path)


def test_json_arguments_that_are_fifos_sockets_or_devices_are_refused_at_once(
    sqlite_yard: Path, tmp_path: Path
) -> None:
    cli = Cli(sqlite_yard)
    lineage = cli.ok("scenario", "add", "base")
    config = cli.ok("config", "add", "-", input="{}")
    plan = cli.ok(
        "plan",
        "create",
        "--scenario",
        lineage["scenario_id"],
        "--config",
        config["config_version_id"],
    )
    run_id = cli.ok("run", "start", "--plan", plan["plan_version_id"])["run_id"]
    fifo = _fifo(tmp_path / "pipe.json")
    yard = ["--yard", str(sqlite_yard)]
    for args in (
        ["config", "add", fifo],
        ["scenario", "add", "s2", "--data", fifo],
        ["run", "finish", run_id, "--status", "succeeded", "--summary", "@" + fifo],
    ):
        _refused(run_cli(*yard, *args, "--json"), "a FIFO (named pipe), not a regular file")
    _refused(run_cli(*yard, "config", "add", "/dev/zero", "--json"), "a character device")
    with tempfile.TemporaryDirectory(dir="/tmp") as short:  # AF_UNIX paths are short
        sock_path = os.path.join(short, "s.json")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(sock_path)
            _refused(run_cli(*yard, "config", "add", sock_path, "--json"), "a socket")
    assert cli.ok("run", "show", run_id)["status"] == "running"  # nothing happened


def test_a_fifo_named_run_json_is_a_per_folder_error_on_import_and_rebuild(
    sqlite_yard: Path,
) -> None:
    _fifo(sqlite_yard / "runs" / "piped" / "run.json")
    (sqlite_yard / "runs" / "plain").mkdir()
    yard = ["--yard", str(sqlite_yard)]
    imported = run_cli(*yard, "run", "import", "--all", "--json")
    assert imported.returncode == 5 and b"Traceback" not in imported.stderr
    outcomes = {o["run_id"]: o for o in json.loads(imported.stdout)["items"]}
    assert outcomes["piped"]["outcome"] == "error"
    assert "a FIFO (named pipe), not a regular file" in outcomes["piped"]["message"]
    assert outcomes["plain"]["outcome"] == "legacy"  # the others go on
    rebuilt = run_cli(*yard, "rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    problems = json.loads(rebuilt.stdout)["problems"]
    assert any(p.startswith("piped: ") and "FIFO" in p for p in problems), problems
    checked = run_cli(*yard, "check", "--json")
    assert checked.returncode in (0, 6) and b"Traceback" not in checked.stderr


def test_a_fifo_as_reference_file_is_a_reported_problem_not_a_hang(sqlite_yard: Path) -> None:
    with (sqlite_yard / "runyard.toml").open("a") as toml:
        toml.write(REFERENCE_RULE)
    _fifo(sqlite_yard / "scripts" / "CH01" / "001" / "status.json")
    result = run_cli("--yard", str(sqlite_yard), "archive", "--all", "--json")
    assert result.returncode == 0, result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert any("scripts/CH01/001/status.json" in p and "FIFO" in str(p) for p in problems), problems


def test_a_fifo_as_runyard_toml_is_a_bad_config_file(tmp_path: Path) -> None:
    _fifo(tmp_path / "y" / "runyard.toml")
    result = run_cli("--yard", str(tmp_path / "y"), "run", "list", "--json")
    error = _refused(result, "a FIFO (named pipe), not a regular file")
    assert error["code"] == "bad_config_file"


def test_a_runner_summary_that_is_a_fifo_or_out_of_range_is_a_summary_error(
    tmp_path: Path,
) -> None:
    _fifo(tmp_path / "a" / "summary.json")
    assert "FIFO" in _read_summary(tmp_path / "a")["summary_error"]
    for name, text in (("b", '{"x": 1e400}'), ("c", nested(100_000)), ("d", '{"x": 1e-400}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(text)
        assert set(_read_summary(tmp_path / name)) == {"summary_error"}, name


# --- option values at their edges (issue 13, item 5) ---------------------------------------

EDGES = [
    ("purge", "--older-than", "1000000"),
    ("purge", "--older-than", "inf"),
    ("archive", "--all", "--older-than", "1e12"),
    ("archive", "--all", "--older-than", "nan"),
    ("archive", "--all", "--keep-recent-minutes", str(10**15)),
    ("archive", "--all", "--keep-last-runs", str(10**20)),
    ("run", "list", "--limit", "0"),
    ("run", "list", "--limit", "-1"),
    ("run", "list", "--limit", "1001"),
    ("run", "list", "--limit", str(2**64)),
    ("config", "list", "--limit", str(10**12)),
    ("log", "--limit", "5000"),
    ("job", "list", "--limit", "-5"),
    ("run", "list", "--since", "10000-01-01"),
    ("run", "list", "--until", "9999-12-31T23:59:59-01:00"),
    ("run", "list", "--since", "0001-01-01T00:00:00+01:00"),
    ("worker", "--exit-when-idle", "--concurrency", str(10**17)),
    ("worker", "--exit-when-idle", "--grace", "nan"),
    ("worker", "--exit-when-idle", "--grace", "1e400"),
    ("backup", "--keep", "0"),
    ("backup", "--keep", str(10**20)),
]


@pytest.mark.parametrize("args", EDGES, ids=" ".join)
def test_option_values_at_the_edges_are_invalid_not_a_crash(
    cli: Cli, snapshot: Any, args: tuple[str, ...]
) -> None:
    before = snapshot()
    error = _error(cli(*args, "--json"))
    assert error["code"] == "invalid"
    assert snapshot() == before


def test_plan_show_runs_out_of_range_is_invalid(cli: Cli, lineage: dict[str, str]) -> None:
    for value in ("-1", "1001", str(10**30)):
        result = cli("plan", "show", lineage["plan_version_id"], "--runs", value, "--json")
        assert "--runs must be between 0 and 1,000" in _error(result)["message"]


def test_runyard_toml_numbers_have_upper_bounds(tmp_path: Path) -> None:
    path = tmp_path / "y"
    runyard.init_yard(path)
    toml = path / "runyard.toml"
    original = toml.read_text()
    for line in (
        "keep_recent_minutes = 1000000000000000",
        "keep_last_runs = 100000000000",
    ):
        key = line.split(" ")[0]
        kept = [ln for ln in original.splitlines() if not ln.startswith(key + " ")]
        toml.write_text("\n".join([line, *kept]) + "\n")  # top level: before any [table]
        with pytest.raises(ConfigFileError, match=f"key `{key}`: Input should be less than"):
            runyard.open_yard(path)
    toml.write_text(original)
    runyard.open_yard(path).close()


_INTS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-3, max_value=1100),
    st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, 10**15, 10**100, -(2**63) - 1]),
)
_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e7),
    st.sampled_from([739_000.0, 739_999.0, 1e12, 1e308, 5e-324, -0.0]),
)
_OFFSETS = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
).map(lambda d: timezone(timedelta(minutes=d // timedelta(minutes=1))))
_DATES = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59),
        timezones=st.none() | _OFFSETS,
    ).map(datetime.isoformat),
    st.sampled_from(
        [
            "10000-01-01",
            "0000-01-01",
            "-0001-01-01",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2026-13-01",
            "",
            "2026-02-30",
            "99999",
        ]
    ),
)
# Every numeric and date option of the CLI (serve's --port and --workers belong to the web).
FUZZED: list[tuple[tuple[str, ...], str, st.SearchStrategy[Any]]] = [
    (("archive", "--all"), "--older-than", _FLOATS),
    (("archive", "--all"), "--keep-recent-minutes", _INTS),
    (("archive", "--all"), "--keep-last-runs", _INTS),
    (("purge",), "--older-than", _FLOATS),
    (("run", "list"), "--limit", _INTS),
    (("run", "list"), "--since", _DATES),
    (("run", "list"), "--until", _DATES),
    (("scenario", "list"), "--limit", _INTS),
    (("config", "list"), "--limit", _INTS),
    (("plan", "list"), "--limit", _INTS),
    (("plan", "show", "PLAN"), "--runs", _INTS),
    (("job", "list"), "--limit", _INTS),
    (("log",), "--limit", _INTS),
    (("worker", "--exit-when-idle"), "--concurrency", _INTS),
    (("worker", "--exit-when-idle"), "--grace", _FLOATS),
    (("backup",), "--keep", _INTS),
]
DOCUMENTED_EXITS = {0, 2, 3, 4, 5, 6, 7}  # docs/exit-codes.md; 1 is "unforeseen"


@pytest.mark.parametrize(("command", "option", "values"), FUZZED, ids=lambda v: str(v))
def test_every_numeric_and_date_option_answers_with_a_documented_exit(
    sqlite_yard: Path,
    command: tuple[str, ...],
    option: str,
    values: st.SearchStrategy[Any],
) -> None:
    cli = Cli(sqlite_yard)
    scenario = cli.ok("scenario", "add", "base")
    config = cli.ok("config", "add", "-", input="{}")
    plan = cli.ok(
        "plan",
        "create",
        "--scenario",
        scenario["scenario_id"],
        "--config",
        config["config_version_id"],
    )["plan_version_id"]
    argv = [plan if part == "PLAN" else part for part in command]

    @settings(
        max_examples=25 if command[0] in ("worker", "backup") else 60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(value=values)
    def check(value: Any) -> None:
        shown = value if isinstance(value, str) else repr(value)
        result = cli(*argv, f"{option}={shown}", "--json")  # catch_exceptions=False: no crash
        assert result.exit_code in DOCUMENTED_EXITS, (shown, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        if result.exit_code not in (0, 2):
            assert result.json["error"]["code"] == "invalid", (shown, result.stdout)

    check()


# --- errors name the right thing (issue 13, item 9) -----------------------------------------


def test_run_finish_on_a_finished_run_says_already_finished(
    cli: Cli, lineage: dict[str, str], snapshot: Any
) -> None:
    run_id = cli.ok("run", "start", "--plan", lineage["plan_version_id"])["run_id"]
    cli.ok("run", "finish", run_id, "--status", "succeeded")
    before = snapshot()
    result = cli("run", "finish", run_id, "--status", "failed", "--json")
    assert result.exit_code == 4
    assert result.json["error"]["code"] == "conflict"
    assert result.json["error"]["message"] == f"run {run_id} is already finished (succeeded)"
    assert snapshot() == before


def _archived(cli: Cli, lineage: dict[str, str], yard_path: Path) -> tuple[str, str]:
    """A finished run, archived alone: (run id, batch id)."""
    run_id = cli.ok("run", "start", "--plan", lineage["plan_version_id"])["run_id"]
    cli.ok("run", "finish", run_id, "--status", "succeeded")
    done = cli.ok(
        "archive",
        "--run-id",
        run_id,
        "--keep-recent-minutes",
        "0",
        "--keep-last-runs",
        "0",
        "--run",
    )
    assert [e["run_id"] for e in done["entries"]] == [run_id], done
    return run_id, done["batch_id"]


def test_restore_takes_a_batch_id_or_a_run_id_as_well_as_a_report(
    cli: Cli, lineage: dict[str, str], yard_path: Path
) -> None:
    run_id, batch_id = _archived(cli, lineage, yard_path)
    dry = cli.ok("restore", batch_id)
    assert [(e["run_id"], e["status"]) for e in dry["entries"]] == [(run_id, "pending")]
    assert cli.ok("run", "show", run_id)["location"] == "archived"  # a dry run moves nothing
    done = cli.ok("restore", "--batch", batch_id, "--run")
    assert done["restored"] == 1
    assert cli.ok("run", "show", run_id)["location"] == "active"

    run_id, batch_id = _archived(cli, lineage, yard_path)
    assert cli.ok("restore", "--run-id", run_id)["entries"][0]["status"] == "pending"
    done = cli.ok("restore", "--run-id", run_id, "--run")
    assert done["restored"] == 1 and Path(done["report_path"]).parent.name == batch_id
    assert cli.ok("run", "show", run_id)["location"] == "active"
    report = yard_path / "_archive" / batch_id / "archive_report.json"
    assert cli.ok("restore", "--report", str(report))["entries"][0]["status"] != "pending"


def test_restore_names_what_is_wrong(cli: Cli, lineage: dict[str, str], yard_path: Path) -> None:
    run_id, batch_id = _archived(cli, lineage, yard_path)
    report = str(yard_path / "_archive" / batch_id / "archive_report.json")
    for args in (
        (),
        (batch_id, "--report", report),
        ("--batch", batch_id, "--run-id", run_id),
        ("--run-id", run_id, "--only-run-id", run_id),
    ):
        result = cli("restore", *args, "--json")
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert "one way" in result.stderr or "--only-run-id" in result.stderr
    missing = cli("restore", "20990101T000000Z", "--json")
    assert missing.exit_code == 3 and missing.json["error"]["code"] == "not_found"
    as_path = cli("restore", report, "--json")
    assert as_path.exit_code == 5 and f"--report {report}" in as_path.json["error"]["hint"]
    active = cli.ok("run", "start", "--plan", lineage["plan_version_id"])["run_id"]
    refused = cli("restore", "--run-id", active, "--json")
    assert refused.exit_code == 4 and "not archived" in refused.json["error"]["message"]
    unknown = cli("restore", "--run-id", "no-such-run", "--json")
    assert unknown.exit_code == 3


# --- text options that are not UTF-8 (issue 13, item 1: --reason and other text) -----------

BAD = b"caf\xe9"  # Latin-1 "café": not UTF-8; Python sees "caf\udce9"


def _run_bytes(*argv: bytes, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable.encode(), b"-m", b"runyard", *argv],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_text_options_that_are_not_utf8_are_refused_before_anything_happens(
    sqlite_yard: Path, tmp_path: Path
) -> None:
    cli = Cli(sqlite_yard)
    cli.ok("scenario", "add", "base")
    config = cli.ok("config", "add", "-", input="{}")["config_version_id"]
    plan = cli.ok("plan", "create", "--scenario", "base", "--config", config)["plan_version_id"]
    run_id = cli.ok("run", "start", "--plan", plan)["run_id"]
    before = tree_snapshot(sqlite_yard), registry_snapshot(sqlite_yard)
    yard = (b"--yard", os.fsencode(sqlite_yard))
    p, c, r = plan.encode(), config.encode(), run_id.encode()
    cases: list[tuple[bytes, ...]] = [
        (b"archive", b"--all", b"--reason", BAD),
        (b"archive", b"--all", b"--reason", BAD, b"--run", b"--yes"),
        (b"archive", b"--group", BAD),
        (b"scenario", b"add", BAD),
        (b"scenario", b"add", b"s2", b"--description", BAD),
        (b"scenario", b"lock", b"base", b"--reason", BAD),
        (b"config", b"add", b"-", b"--name", BAD),
        (b"plan", b"create", b"--scenario", b"base", b"--config", c, b"--label", BAD),
        (b"plan", b"create", b"--scenario", b"base", b"--config", c, b"--param", b"k=" + BAD),
        (b"plan", b"create", b"--scenario", BAD, b"--config", c),
        (b"run", b"start", b"--plan", p, b"--group", BAD),
        (b"run", b"start", b"--plan", p, b"--tag", b"owner=" + BAD),
        (b"run", b"start", b"--plan", p, b"--tag", BAD + b"=x"),
        (b"run", b"finish", r, b"--status", b"failed", b"--error", BAD),
        (b"run", b"list", b"--group", BAD),
        (b"run", b"list", b"--scenario", BAD),
        (b"config", b"show", BAD),
        (b"job", b"list", b"--plan", BAD),
        (b"restore", BAD),
    ]
    for argv in cases:
        result = _run_bytes(*yard, *argv, b"--json")
        shown = b" ".join(argv)
        assert result.returncode == 5, (shown, result.stdout, result.stderr)
        assert b"Traceback" not in result.stderr, shown
        error = json.loads(result.stdout)["error"]
        assert error["code"] == "invalid" and "is not valid UTF-8 text" in error["message"]
        assert "caf\\xe9" in error["message"], error  # shown as \xNN, never as mojibake
    assert (tree_snapshot(sqlite_yard), registry_snapshot(sqlite_yard)) == before
    assert not list((sqlite_yard / "_archive").iterdir())  # not even an empty batch folder
    assert cli.ok("run", "show", run_id)["status"] == "running"


def test_a_yard_path_that_is_not_utf8_is_refused_not_a_crash(tmp_path: Path) -> None:
    target = os.fsencode(tmp_path) + b"/yard-" + BAD
    for argv in ((b"init", target), (b"demo", target), (b"--yard", target, b"run", b"list")):
        result = _run_bytes(*argv, b"--json", timeout=120)
        assert result.returncode == 5, (argv, result.stdout, result.stderr)
        assert "is not UTF-8 text" in json.loads(result.stdout)["error"]["message"]
    assert os.listdir(tmp_path) == []  # init and demo made nothing
    made = tmp_path / "ok"
    result = _run_bytes(b"init", os.fsencode(made), b"--db", b"/tmp/" + BAD + b".db", b"--json")
    assert result.returncode == 5 and b"--db" in result.stdout
    assert not made.exists()


def test_a_file_name_that_is_not_utf8_is_used_as_it_is(sqlite_yard: Path, tmp_path: Path) -> None:
    """Paths are exempt: their bytes are the name, read losslessly."""
    name = os.fsencode(tmp_path) + b"/conf-" + BAD + b".json"
    with open(name, "wb") as out:
        out.write(b'{"lot": 10}')
    result = _run_bytes(b"--yard", os.fsencode(sqlite_yard), b"config", b"add", name, b"--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["content"] == {"lot": 10}
