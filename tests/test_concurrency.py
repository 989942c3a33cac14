"""Several processes writing at once never see "database is locked"."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

WRITER = textwrap.dedent("""
    import sys
    import runyard
    yard_path, plan, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with runyard.open_yard(yard_path) as yard:
        for i in range(n):
            with yard.start_run(plan_version_id=plan, tags={"writer": tag}) as run:
                run.log_summary({"i": i})
    print("done")
""")


@pytest.mark.parametrize("writers,per_writer", [(4, 40)])
def test_concurrent_writers(yard_path, lineage, cli, writers, per_writer):
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(yard_path),
                lineage["plan_version_id"],
                str(per_writer),
                f"w{k}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(writers)
    ]
    # Meanwhile the CLI keeps writing and reading too.
    for _ in range(10):
        cli.ok("run", "start", "--plan", lineage["plan_version_id"])
        cli.ok("run", "list", "--limit", "5")
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "locked" not in err
    total = 0
    cursor = None
    while True:
        page = cli.ok("run", "list", "--limit", "1000", *(["--after", cursor] if cursor else []))
        total += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert total == writers * per_writer + 10


@pytest.mark.slow
def test_many_concurrent_writers_stress(yard_path, lineage, cli):
    test_concurrent_writers(yard_path, lineage, cli, writers=8, per_writer=150)
