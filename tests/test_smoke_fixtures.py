def test_lineage_fixture_works(cli, lineage):
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    assert run["plan_version_id"] == lineage["plan_version_id"]
    assert run["scenario_id"] == lineage["scenario_id"]
