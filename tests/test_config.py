"""runyard.config: runyard.toml is validated strictly, RUNYARD_* variables win over it,
and the yard is found the way git finds .git."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import runyard
import runyard.cli.main
from runyard.config import (
    CONFIG_FILENAME,
    ReferenceRule,
    find_yard,
    load_settings,
    normalize_db_url,
    parse_yard_file,
    read_env_overrides,
)
from runyard.errors import ConfigFileError, Conflict, Invalid, YardNotFound


def run_cli(*args: str):
    return CliRunner().invoke(runyard.cli.main.app, list(args))


def make_yard(tmp_path: Path, preset: str = "planning") -> Path:
    path = tmp_path / "y"
    runyard.init_yard(path, preset=preset)
    return path


def rewrite(path: Path, old: str, new: str) -> None:
    toml = path / CONFIG_FILENAME
    text = toml.read_text()
    assert old in text, f"{old!r} not in runyard.toml"
    toml.write_text(text.replace(old, new, 1))


# --- runyard.toml validation ---------------------------------------------------------------

# (old text, new text, key the message must name, reason it must give)
CORRUPTIONS = {
    "unknown top-level key": (
        'preset = "planning"',
        'preset = "planning"\nkeep_lst_runs = 3',
        "keep_lst_runs",
        "unknown key",
    ),
    "unknown key in [db]": ("[db]", '[db]\nurll = "sqlite:///x.db"', "db.urll", "unknown key"),
    "unknown key in [retention]": (
        "[retention]",
        "[retention]\nmax_runs = 5",
        "retention.max_runs",
        "unknown key",
    ),
    "unknown key in [[references]]": (
        "[retention]",
        '[[references]]\nglob = "a/*.json"\njson_path = "run"\npath = "x"\n\n[retention]',
        "references.0.path",
        "unknown key",
    ),
    "references entry missing json_path": (
        "[retention]",
        '[[references]]\nglob = "a/*.json"\n\n[retention]',
        "references.0.json_path",
        "missing required key",
    ),
    "keep_last_runs as a string": (
        "keep_last_runs = 2",
        'keep_last_runs = "2"',
        "keep_last_runs",
        "valid integer",
    ),
    "keep_last_runs as a bool": (
        "keep_last_runs = 2",
        "keep_last_runs = true",
        "keep_last_runs",
        "valid integer",
    ),
    "negative keep_recent_minutes": (
        "keep_recent_minutes = 60",
        "keep_recent_minutes = -1",
        "keep_recent_minutes",
        "greater than or equal to 0",
    ),
    "legacy_patterns as a string": (
        "legacy_patterns = []",
        'legacy_patterns = "x"',
        "legacy_patterns",
        "valid list",
    ),
    "zero max_active_runs": (
        "[retention]",
        "[retention]\nmax_active_runs = 0",
        "retention.max_active_runs",
        "greater than 0",
    ),
    "db.url as a number": ("[db]", "[db]\nurl = 5", "db.url", "valid string"),
    "unknown preset": ('preset = "planning"', 'preset = "films"', "preset", "'planning'"),
    "empty runs_root": ('runs_root = "runs"', 'runs_root = ""', "runs_root", "at least 1"),
    "bad group_pattern regex": (
        "legacy_patterns = []",
        "legacy_patterns = []\ngroup_pattern = '^(?P<ch>CH[0-9]+'",
        "group_pattern",
        "not a valid regular expression",
    ),
    "bad legacy_patterns regex": (
        "legacy_patterns = []",
        "legacy_patterns = ['^ok', '[a-']",
        "legacy_patterns",
        "not a valid regular expression",
    ),
    "bad legacy_patterns regex is named": (
        "legacy_patterns = []",
        "legacy_patterns = ['^ok', '[a-']",
        "legacy_patterns",
        "'[a-'",
    ),
    "archive_root equal to runs_root": (
        'archive_root = "_archive"',
        'archive_root = "runs"',
        "archive_root",
        "runs_root",
    ),
    "archive_root equal, spelled differently": (
        'archive_root = "_archive"',
        'archive_root = "./runs/"',
        "archive_root",
        "runs_root",
    ),
    "archive_root inside runs_root": (
        'archive_root = "_archive"',
        'archive_root = "runs/old"',
        "archive_root",
        "runs_root",
    ),
    "runs_root inside archive_root": (
        'runs_root = "runs"',
        'runs_root = "_archive/runs"',
        "archive_root",
        "runs_root",
    ),
    "runs_root is the yard itself": (
        'runs_root = "runs"',
        'runs_root = "."',
        "archive_root",
        "runs_root",
    ),
    "archive_root inside runs_root, absolute": (
        'archive_root = "_archive"',
        'archive_root = "{yard}/runs/old"',
        "archive_root",
        "runs_root",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_bad_config_file_is_refused_naming_file_key_and_reason(tmp_path, case):
    old, new, key, reason = CORRUPTIONS[case]
    path = make_yard(tmp_path)
    rewrite(path, old, new.replace("{yard}", str(path)))
    with pytest.raises(ConfigFileError) as caught:
        runyard.open_yard(path)
    message = caught.value.message
    assert str(path / CONFIG_FILENAME) in message
    assert f"`{key}`" in message
    assert reason in message
    assert caught.value.exit_code == 5 and caught.value.code == "bad_config_file"


def test_invalid_toml_syntax_is_refused_with_its_line(tmp_path):
    path = make_yard(tmp_path)
    rewrite(path, "keep_last_runs = 2", "keep_last_runs = = 2")
    with pytest.raises(ConfigFileError) as caught:
        runyard.open_yard(path)
    message = caught.value.message
    line = next(
        i
        for i, text in enumerate((path / CONFIG_FILENAME).read_text().splitlines(), 1)
        if text.startswith("keep_last_runs")
    )
    assert message.startswith(f"{path / CONFIG_FILENAME}: invalid TOML")
    assert re.search(rf"line {line}\b", message), message


def test_config_file_that_is_not_utf8_is_refused(tmp_path):
    path = make_yard(tmp_path)
    toml = path / CONFIG_FILENAME
    toml.write_bytes(toml.read_bytes().replace(b'"runs"', b'"r\xffns"'))
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        runyard.open_yard(path)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = make_yard(tmp_path)
    rewrite(path, "keep_last_runs = 2", 'keep_last_runs = "2"\nbogus = 1')
    rewrite(path, "keep_recent_minutes = 60", "keep_recent_minutes = -5")
    with pytest.raises(ConfigFileError) as caught:
        runyard.open_yard(path)
    message = caught.value.message
    for key in ("keep_last_runs", "bogus", "keep_recent_minutes"):
        assert f"`{key}`" in message


def test_a_valid_file_reads_back_as_written(tmp_path):
    path = make_yard(tmp_path)
    rewrite(
        path,
        "legacy_patterns = []",
        "legacy_patterns = ['^old']\ngroup_pattern = '^(?P<ch>CH[0-9]+)-(?P<ep>[0-9]+)'",
    )
    rewrite(path, "[retention]", "[retention]\nmax_active_runs = 50")
    settings = load_settings(path, environ={})
    assert settings.file.legacy_patterns == ["^old"]
    assert settings.group_regex is not None
    assert settings.group_regex.match("CH01-003").groupdict() == {"ch": "CH01", "ep": "003"}
    assert settings.max_active_runs == 50
    assert settings.runs_root == path.resolve() / "runs"
    assert settings.archive_root == path.resolve() / "_archive"
    with runyard.open_yard(path) as yard:
        assert yard.settings.file == settings.file


@pytest.mark.parametrize("json_flag", [False, True])
def test_cli_refuses_a_bad_config_file_and_changes_nothing(tmp_path, json_flag):
    path = make_yard(tmp_path)
    rewrite(path, "[db]", "[db]\nurll = 1")
    toml_before = (path / CONFIG_FILENAME).read_bytes()
    db_before = (path / "registry.db").read_bytes()
    files_before = sorted(p.name for p in path.iterdir())

    result = run_cli("--yard", str(path), "scenario", "list", *(["--json"] if json_flag else []))

    assert result.exit_code == 5
    if json_flag:
        error = json.loads(result.stdout)["error"]
        assert error["code"] == "bad_config_file"
        message = error["message"]
    else:
        assert result.stdout == ""
        message = result.stderr
        assert message.startswith("error: ")
    assert str(path / CONFIG_FILENAME) in message
    assert "`db.urll`" in message and "unknown key" in message
    assert (path / CONFIG_FILENAME).read_bytes() == toml_before
    assert (path / "registry.db").read_bytes() == db_before
    assert sorted(p.name for p in path.iterdir()) == files_before  # no -wal/-journal left


def test_cli_reports_invalid_toml(tmp_path):
    path = make_yard(tmp_path)
    rewrite(path, 'runs_root = "runs"', 'runs_root = "runs')
    result = run_cli("--yard", str(path), "scenario", "list")
    assert result.exit_code == 5
    assert "invalid TOML" in result.stderr and str(path / CONFIG_FILENAME) in result.stderr


# --- environment overrides -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "2 runs"])
def test_bad_max_runs_is_refused_naming_the_variable(tmp_path, monkeypatch, value):
    path = make_yard(tmp_path)
    with pytest.raises(Invalid, match="RUNYARD_MAX_RUNS") as caught:
        load_settings(path, environ={"RUNYARD_MAX_RUNS": value})
    assert repr(value) in caught.value.message

    monkeypatch.setenv("RUNYARD_MAX_RUNS", value)
    with pytest.raises(Invalid, match="RUNYARD_MAX_RUNS"):
        runyard.open_yard(path)
    result = run_cli("--yard", str(path), "scenario", "list")
    assert result.exit_code == 5
    assert "RUNYARD_MAX_RUNS" in result.stderr


def test_max_runs_from_the_environment_wins_over_the_file(tmp_path, monkeypatch):
    path = make_yard(tmp_path)
    assert load_settings(path, environ={}).max_active_runs is None
    rewrite(path, "[retention]", "[retention]\nmax_active_runs = 50")
    assert load_settings(path, environ={}).max_active_runs == 50
    assert load_settings(path, environ={"RUNYARD_MAX_RUNS": "200"}).max_active_runs == 200
    assert load_settings(path, environ={"RUNYARD_MAX_RUNS": ""}).max_active_runs == 50
    monkeypatch.setenv("RUNYARD_MAX_RUNS", "200")
    assert load_settings(path).max_active_runs == 200
    with runyard.open_yard(path) as yard:
        assert yard.settings.max_active_runs == 200


def test_environ_argument_is_honoured_over_the_process(monkeypatch):
    monkeypatch.setenv("RUNYARD_MAX_RUNS", "abc")
    assert read_env_overrides({"RUNYARD_MAX_RUNS": "7"}).max_runs == 7
    assert read_env_overrides({}).max_runs is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u:pw@h/db", "postgresql+psycopg://u:pw@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db?options=-c%3Dx", "postgresql+psycopg://u@h/db?options=-c%3Dx"),
        ("sqlite:////abs/reg.db", "sqlite:////abs/reg.db"),
        ("registry.db", "sqlite:////base/dir/registry.db"),
        ("sub/reg.db", "sqlite:////base/dir/sub/reg.db"),
        ("/abs/reg.db", "sqlite:////abs/reg.db"),
    ],
)
def test_normalize_db_url(value, expected):
    assert normalize_db_url(value, Path("/base/dir")) == expected


def test_normalize_db_url_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert normalize_db_url("~/reg.db", Path("/elsewhere")) == f"sqlite:///{tmp_path}/reg.db"


def test_db_url_sources(tmp_path, monkeypatch):
    path = make_yard(tmp_path)
    yard = path.resolve()
    settings = load_settings(path, environ={})
    assert settings.db_url == f"sqlite:///{yard}/registry.db"
    assert settings.db_url_source == "default"

    rewrite(path, '# url = "postgresql+psycopg://user@host/dbname"', 'url = "data/reg.db"')
    settings = load_settings(path, environ={})
    assert settings.db_url == f"sqlite:///{yard}/data/reg.db"  # relative to the yard
    assert settings.db_url_source == "runyard.toml db.url"

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(path, environ={"RUNYARD_DB": "other.db"})
    assert settings.db_url == f"sqlite:///{elsewhere}/other.db"  # relative to where you are
    assert settings.db_url_source == "RUNYARD_DB"
    settings = load_settings(path, environ={"RUNYARD_DB": "postgresql://u@h/db"})
    assert settings.db_url == "postgresql+psycopg://u@h/db"


# --- finding the yard ----------------------------------------------------------------------


@pytest.fixture
def nowhere(tmp_path: Path) -> Path:
    """A folder with no runyard.toml in it or in any folder above it."""
    folder = tmp_path / "empty" / "deeper"
    folder.mkdir(parents=True)
    above = [p for p in (folder, *folder.parents) if (p / CONFIG_FILENAME).exists()]
    assert not above, f"a {CONFIG_FILENAME} above the test folder spoils this test: {above}"
    return folder


def test_yard_is_found_upward_from_a_nested_folder(tmp_path, monkeypatch):
    path = make_yard(tmp_path)
    nested = path / "runs" / "a" / "b"
    nested.mkdir(parents=True)
    assert find_yard(start=nested, environ={}) == path.resolve()
    assert find_yard(start=path, environ={}) == path.resolve()
    monkeypatch.chdir(nested)
    assert find_yard(environ={}) == path.resolve()
    with runyard.open_yard() as yard:
        assert yard.path == path.resolve()
    result = run_cli("scenario", "list", "--json")
    assert result.exit_code == 0, result.stderr


def test_the_nearest_yard_wins(tmp_path):
    outer = make_yard(tmp_path)
    inner = outer / "sub" / "inner"
    runyard.init_yard(inner)
    (inner / "x").mkdir()
    assert find_yard(start=inner / "x", environ={}) == inner.resolve()
    assert find_yard(start=outer / "sub", environ={}) == outer.resolve()


def test_runyard_yard_is_used_when_set(tmp_path, monkeypatch):
    here = make_yard(tmp_path)
    other = tmp_path / "other"
    runyard.init_yard(other)
    monkeypatch.chdir(here)
    assert find_yard(environ={"RUNYARD_YARD": str(other)}) == other.resolve()
    monkeypatch.setenv("RUNYARD_YARD", str(other))
    assert find_yard() == other.resolve()
    with runyard.open_yard() as yard:
        assert yard.path == other.resolve()


def test_explicit_path_wins_over_runyard_yard(tmp_path, monkeypatch):
    one = make_yard(tmp_path)
    two = tmp_path / "two"
    runyard.init_yard(two)
    monkeypatch.setenv("RUNYARD_YARD", str(two))
    assert find_yard(explicit=str(one)) == one.resolve()
    with runyard.open_yard(one) as yard:
        assert yard.path == one.resolve()
    # Even when RUNYARD_YARD names no yard at all.
    monkeypatch.setenv("RUNYARD_YARD", str(tmp_path / "missing"))
    assert find_yard(explicit=str(one)) == one.resolve()
    assert run_cli("--yard", str(one), "scenario", "list", "--json").exit_code == 0


def test_runyard_yard_naming_no_yard_is_refused(tmp_path, monkeypatch, nowhere):
    monkeypatch.setenv("RUNYARD_YARD", str(nowhere))
    with pytest.raises(YardNotFound) as caught:
        find_yard()
    assert "RUNYARD_YARD" in caught.value.message and str(nowhere) in caught.value.message
    assert "runyard init" in caught.value.hint


def test_explicit_path_with_no_yard_is_refused(nowhere):
    with pytest.raises(YardNotFound) as caught:
        runyard.open_yard(nowhere)
    assert "--yard" in caught.value.message
    assert "runyard init" in caught.value.hint


def test_no_yard_anywhere(monkeypatch, nowhere):
    with pytest.raises(YardNotFound) as caught:
        find_yard(start=nowhere, environ={})
    assert str(nowhere) in caught.value.message
    assert "runyard init" in caught.value.hint

    monkeypatch.chdir(nowhere)
    with pytest.raises(YardNotFound):
        runyard.open_yard()
    result = run_cli("scenario", "list")
    assert result.exit_code == 3
    assert "no yard found" in result.stderr and "runyard init" in result.stderr
    assert list(nowhere.iterdir()) == []  # nothing created on the way


# --- runyard init --------------------------------------------------------------------------


def test_init_on_an_existing_yard_is_refused(tmp_path):
    path = make_yard(tmp_path)
    toml_before = (path / CONFIG_FILENAME).read_bytes()
    db_before = (path / "registry.db").read_bytes()
    with pytest.raises(Conflict):
        runyard.init_yard(path)
    result = run_cli("init", str(path))
    assert result.exit_code == 4
    assert "already exists" in result.stderr
    result = run_cli("init", str(path), "--preset", "video")
    assert result.exit_code == 4
    assert (path / CONFIG_FILENAME).read_bytes() == toml_before
    assert (path / "registry.db").read_bytes() == db_before
    assert not (path / "video").exists()


VIDEO_LEGACY = ["192", "api_x", "jinsei_1", "CH01-foo"]
NOT_LEGACY = ["20261121T000000.000000Z-abcdef", "CH1-foo", "x192", "myapi_x", "CH01foo"]


def test_init_video_preset(tmp_path):
    path = tmp_path / "ws"
    result = run_cli("init", str(path), "--preset", "video", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["preset"] == "video"

    data = tomllib.loads((path / CONFIG_FILENAME).read_text())
    assert data["preset"] == "video"
    assert data["runs_root"] == "video/runs"
    assert data["archive_root"] == "video/_archive"
    assert data["logs_dir"] == "logs/regression"
    assert data["keep_recent_minutes"] == 1440
    assert data["keep_last_runs"] == 2
    assert data["references"] == [
        {"glob": "scripts/*/*/status.json", "json_path": "metadata.video_run_id"}
    ]
    for folder in ("video/runs", "video/_archive", "logs/regression"):
        assert (path / folder).is_dir()

    settings = load_settings(path, environ={})
    assert settings.file.references == [
        ReferenceRule(glob="scripts/*/*/status.json", json_path="metadata.video_run_id")
    ]
    patterns = [re.compile(p) for p in settings.file.legacy_patterns]
    for run_id in VIDEO_LEGACY:
        assert any(p.search(run_id) for p in patterns), run_id
    for run_id in NOT_LEGACY:
        assert not any(p.search(run_id) for p in patterns), run_id


def test_init_video_preset_keeps_an_existing_workspace(tmp_path):
    ws = tmp_path / "workspaces"
    run = ws / "video" / "runs" / "192"
    run.mkdir(parents=True)
    (run / "final.mp4").write_bytes(b"\x00mp4" * 64)
    (ws / "video" / "runs" / ".keep").write_text("")
    status = ws / "scripts" / "CH01" / "003" / "status.json"
    status.parent.mkdir(parents=True)
    status.write_text('{"metadata": {"video_run_id": "192"}}')
    before = {
        str(p.relative_to(ws)): (p.read_bytes() if p.is_file() else None) for p in ws.rglob("*")
    }

    result = runyard.init_yard(ws, preset="video")

    assert "video/runs" in result.existing
    assert "video/runs" not in result.created
    after = {
        str(p.relative_to(ws)): (p.read_bytes() if p.is_file() else None) for p in ws.rglob("*")
    }
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) >= {CONFIG_FILENAME, "registry.db", "video/_archive"}
    with runyard.open_yard(ws) as yard:
        assert yard.settings.runs_root == ws.resolve() / "video" / "runs"


def test_parse_yard_file_reports_an_unreadable_file(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read"):
        parse_yard_file(tmp_path / CONFIG_FILENAME)
