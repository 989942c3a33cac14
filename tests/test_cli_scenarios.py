"""runyard scenario …: create, list, show, lock, unlock, and the bad inputs."""

from __future__ import annotations


def test_add_show_list(cli):
    created = cli.ok("scenario", "add", "weekly", "--description", "8 weeks")
    assert next(iter(created)) == "scenario_id"
    assert created["scenario_id"].startswith("sc-")
    assert created["name"] == "weekly" and created["locked"] is False
    assert cli.ok("scenario", "show", created["scenario_id"]) == created
    assert cli.ok("scenario", "show", "weekly") == created  # by name too
    page = cli.ok("scenario", "list")
    assert set(page) == {"items", "next_cursor"}
    assert [s["name"] for s in page["items"]] == ["weekly"]


def test_list_pages_by_name(cli):
    for name in ["c", "a", "b", "e", "d"]:
        cli.ok("scenario", "add", name)
    first = cli.ok("scenario", "list", "--limit", "2")
    assert [s["name"] for s in first["items"]] == ["a", "b"]
    second = cli.ok("scenario", "list", "--limit", "2", "--after", first["next_cursor"])
    third = cli.ok("scenario", "list", "--limit", "2", "--after", second["next_cursor"])
    assert [s["name"] for s in second["items"]] == ["c", "d"]
    assert [s["name"] for s in third["items"]] == ["e"] and third["next_cursor"] is None


def test_duplicate_name_refused_and_nothing_changes(cli, snapshot):
    cli.ok("scenario", "add", "weekly")
    before = snapshot()
    result = cli("scenario", "add", "weekly")
    assert result.exit_code == 4
    assert "already exists" in result.stderr
    assert snapshot() == before


def test_bad_names_refused(cli, snapshot):
    before = snapshot()
    for bad in ["", " padded ", "tab\there", "sc-looks-like-an-id", "x" * 201]:
        result = cli("scenario", "add", bad, "--json")
        assert result.exit_code == 5, bad
        assert result.json["error"]["code"] == "invalid"
    assert snapshot() == before


def test_unknown_scenario(cli):
    result = cli("scenario", "show", "nope", "--json")
    assert result.exit_code == 3
    assert result.json["error"]["code"] == "not_found"
    assert "nope" in result.json["error"]["message"]
    assert cli("scenario", "lock", "nope").exit_code == 3


def test_lock_and_unlock(cli):
    sid = cli.ok("scenario", "add", "weekly")["scenario_id"]
    locked = cli.ok("scenario", "lock", sid, "--reason", "audit in progress")
    assert locked["locked"] is True and locked["locked_reason"] == "audit in progress"
    assert cli.ok("scenario", "lock", sid)["locked"] is True  # idempotent
    unlocked = cli.ok("scenario", "unlock", "weekly")
    assert unlocked["locked"] is False and unlocked["locked_reason"] is None


def test_human_output_is_a_table(cli):
    cli.ok("scenario", "add", "weekly", "--description", "[bold]not markup[/bold]")
    out = cli("scenario", "list").stdout
    assert "weekly" in out and "scenario_id" in out
    assert "[bold]not markup[/bold]" in out  # user text is shown literally


def test_undecodable_text_refused(cli, snapshot):
    before = snapshot()
    result = cli("scenario", "add", "ok", "--description", "bad\udcff")
    assert result.exit_code == 5 and "not valid UTF-8 text" in result.stderr
    assert snapshot() == before


def test_locking_again_keeps_the_reason(cli):
    cli.ok("scenario", "add", "weekly")
    first = cli.ok("scenario", "lock", "weekly", "--reason", "audit")
    again = cli.ok("scenario", "lock", "weekly")
    assert again["locked_reason"] == "audit"
    assert again["locked_at"] == first["locked_at"]
    assert cli.ok("scenario", "lock", "weekly", "--reason", "new")["locked_reason"] == "new"
