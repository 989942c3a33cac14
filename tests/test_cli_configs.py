"""runyard config …: content-addressed snapshots, show, list, diff, bad files."""

from __future__ import annotations

import json


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_same_content_same_id(cli, tmp_path):
    a = cli.ok(
        "config", "add", _write(tmp_path, "a.json", '{"b": 1.0, "a": [1, 2]}'), "--name", "first"
    )
    b = cli.ok("config", "add", _write(tmp_path, "b.json", '{\n  "a": [1,2],\n  "b": 1\n}'))
    assert next(iter(a)) == "config_version_id"
    assert a["created"] is True and b["created"] is False
    assert a["config_version_id"] == b["config_version_id"]
    assert b["name"] == "first"  # the stored snapshot keeps its first name
    assert len(cli.ok("config", "list")["items"]) == 1


def test_changed_value_new_id(cli, tmp_path):
    a = cli.ok("config", "add", _write(tmp_path, "a.json", '{"x": 1}'))
    b = cli.ok("config", "add", _write(tmp_path, "b.json", '{"x": 2}'))
    assert a["config_version_id"] != b["config_version_id"]


def test_show_returns_the_canonical_content(cli, tmp_path):
    added = cli.ok("config", "add", _write(tmp_path, "a.json", '{"z": {"y": 1.50}, "a": null}'))
    shown = cli.ok("config", "show", added["config_version_id"])
    assert shown["content"] == {"a": None, "z": {"y": 1.5}}
    assert shown["config_version_id"] == added["config_version_id"]


def test_add_from_stdin(cli):
    added = cli.ok("config", "add", "-", input='{"from": "stdin"}')
    assert added["content"] == {"from": "stdin"}


def test_diff(cli, tmp_path):
    a = cli.ok(
        "config",
        "add",
        _write(tmp_path, "a.json", json.dumps({"policy": {"ss": 2, "lot": 10}, "old": 1})),
    )
    b = cli.ok(
        "config",
        "add",
        _write(tmp_path, "b.json", json.dumps({"policy": {"ss": 3, "lot": 10}, "new": True})),
    )
    diff = cli.ok("config", "diff", a["config_version_id"], b["config_version_id"])
    changes = {c["path"]: c for c in diff["changes"]}
    assert changes["policy.ss"] == {"path": "policy.ss", "change": "changed", "old": 2, "new": 3}
    assert changes["old"]["change"] == "removed" and changes["new"]["change"] == "added"
    assert "policy.lot" not in changes
    assert diff["identical"] is False
    assert '-    "ss": 2' in diff["unified_diff"] and '+    "ss": 3' in diff["unified_diff"]
    human = cli("config", "diff", a["config_version_id"], b["config_version_id"]).stdout
    assert "policy.ss" in human and "changed" in human
    same = cli.ok("config", "diff", a["config_version_id"], a["config_version_id"])
    assert same["identical"] is True and same["changes"] == []


def test_bad_files_refused_and_nothing_changes(cli, tmp_path, snapshot):
    before = snapshot()
    cases = {
        "bad.json": ('{"a": 1,}', "line 1"),
        "list.json": ("[1, 2]", "JSON object"),
        "dup.json": ('{"a": 1, "a": 2}', "duplicate key"),
        "nan.json": ('{"a": NaN}', "NaN"),
    }
    for name, (text, expected) in cases.items():
        result = cli("config", "add", _write(tmp_path, name, text))
        assert result.exit_code == 5, name
        assert expected in result.stderr, (name, result.stderr)
    missing = cli("config", "add", str(tmp_path / "missing.json"))
    assert missing.exit_code == 5 and "no such file" in missing.stderr
    assert cli("config", "add", str(tmp_path)).exit_code == 5
    assert snapshot().rows == before.rows


def test_unknown_config(cli):
    result = cli("config", "show", "cfg-nope", "--json")
    assert result.exit_code == 3 and result.json["error"]["code"] == "not_found"
    assert cli("config", "diff", "cfg-a", "cfg-b").exit_code == 3
