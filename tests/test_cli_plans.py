"""runyard plan …: immutable plan versions on a base scenario and a config version."""

from __future__ import annotations


def test_create_and_show(cli, lineage):
    plan = cli.ok("plan", "show", lineage["plan_version_id"])
    assert next(iter(plan)) == "plan_version_id"
    assert plan["scenario_id"] == lineage["scenario_id"]
    assert plan["config_version_id"] == lineage["config_version_id"]
    assert plan["params"] == {"horizon": 52}
    assert plan["scenario"]["name"] == "base"
    assert plan["config_version"]["content"]["lot_size"] == 10
    assert plan["run_count"] == 0 and plan["runs"] == []
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    shown = cli.ok("plan", "show", lineage["plan_version_id"])
    assert shown["run_count"] == 1 and shown["runs"][0]["run_id"] == run["run_id"]


def test_params_are_json_when_they_parse(cli, lineage, yard_path):
    with open(yard_path / "runyard.toml", "a") as toml:
        toml.write('\n[runners.psi]\nkind = "python"\nentry = "runyard.examples.psi:run"\n')
    plan = cli.ok(
        "plan",
        "create",
        "--scenario",
        "base",
        "--config",
        lineage["config_version_id"],
        "--param",
        "n=3",
        "--param",
        "flag=true",
        "--param",
        "name=east",
        "--param",
        "weights=[1,2]",
        "--label",
        "try 2",
        "--runner",
        "psi",
    )
    assert plan["params"] == {"n": 3, "flag": True, "name": "east", "weights": [1, 2]}
    assert plan["label"] == "try 2" and plan["runner"] == "psi"


def test_a_runner_that_is_not_configured_is_refused(cli, lineage):
    before = cli.ok("plan", "list")["items"]
    result = cli(
        "plan",
        "create",
        "--scenario",
        "base",
        "--config",
        lineage["config_version_id"],
        "--runner",
        "nope",
        "--json",
    )
    assert result.exit_code == 5
    assert "no runner 'nope'" in result.json["error"]["message"]
    assert "[runners.nope]" in result.json["error"]["hint"]
    assert cli.ok("plan", "list")["items"] == before


def test_list_newest_first_and_filtered(cli, lineage):
    other = cli.ok("scenario", "add", "other")["scenario_id"]
    p2 = cli.ok("plan", "create", "--scenario", other, "--config", lineage["config_version_id"])
    listed = cli.ok("plan", "list")
    assert [p["plan_version_id"] for p in listed["items"]] == [
        p2["plan_version_id"],
        lineage["plan_version_id"],
    ]
    only = cli.ok("plan", "list", "--scenario", "base")
    assert [p["plan_version_id"] for p in only["items"]] == [lineage["plan_version_id"]]
    page1 = cli.ok("plan", "list", "--limit", "1")
    page2 = cli.ok("plan", "list", "--limit", "1", "--after", page1["next_cursor"])
    assert page2["items"][0]["plan_version_id"] == lineage["plan_version_id"]
    assert page2["next_cursor"] is None


def test_locked_scenario_refuses_plan(cli, lineage, snapshot):
    cli.ok("scenario", "lock", "base", "--reason", "frozen for audit")
    before = snapshot()
    result = cli(
        "plan", "create", "--scenario", "base", "--config", lineage["config_version_id"], "--json"
    )
    assert result.exit_code == 4
    assert result.json["error"]["code"] == "locked"
    assert "frozen for audit" in result.json["error"]["message"]
    assert snapshot() == before


def test_bad_plan_input(cli, lineage, snapshot):
    before = snapshot()
    cfg = lineage["config_version_id"]
    assert cli("plan", "create", "--scenario", "nope", "--config", cfg).exit_code == 3
    assert cli("plan", "create", "--scenario", "base", "--config", "cfg-nope").exit_code == 3
    bad_param = cli("plan", "create", "--scenario", "base", "--config", cfg, "--param", "novalue")
    assert bad_param.exit_code == 5 and "KEY=VALUE" in bad_param.stderr
    twice = cli(
        "plan", "create", "--scenario", "base", "--config", cfg, "--param", "a=1", "--param", "a=2"
    )
    assert twice.exit_code == 5
    assert (
        cli(
            "plan", "create", "--scenario", "base", "--config", cfg, "--runner", "bad/name"
        ).exit_code
        == 5
    )
    assert cli("plan", "create", "--scenario", "base").exit_code == 2  # usage: --config missing
    assert cli("plan", "show", "pv-nope").exit_code == 3
    assert snapshot() == before
