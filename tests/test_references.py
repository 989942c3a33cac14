"""runyard.lifecycle.references: which runs reference files adopt, and the fail-safe.

The workspace has the video preset's shape (``scripts/<CH>/<NNN>/status.json`` →
``metadata.video_run_id``) and is deliberately broken in every way a reference file
can be: bad JSON, the wrong shapes, invalid ids, links out of the yard, loops.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from runyard.config import ReferenceRule
from runyard.errors import Invalid
from runyard.lifecycle import references
from runyard.lifecycle.references import (
    AdoptedBy,
    ReferenceScan,
    effective_group,
    reference_rule_problem,
    scan_references,
)

VIDEO_RULE = ReferenceRule(glob="scripts/*/*/status.json", json_path="metadata.video_run_id")


def _status(yard: Path, episode: str, content: Any) -> Path:
    path = yard / "scripts" / episode / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))
    return path


def _adopting(run_id: Any) -> dict[str, Any]:
    return {"title": "an episode", "metadata": {"video_run_id": run_id, "stage": "done"}}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A video-preset yard with good, empty and broken status files, and links out."""
    yard = tmp_path / "yard"
    (yard / "video" / "runs").mkdir(parents=True)
    # Good: one run adopted per episode; CH02/006 adopts the same run as CH01/003.
    _status(yard, "CH01/001", _adopting("run-ch01-001-b"))
    _status(yard, "CH01/002", _adopting("run-ch01-002-a"))
    _status(yard, "CH01/003", _adopting("run-ch01-003-c"))
    _status(yard, "CH02/006", _adopting("run-ch01-003-c"))
    # Nothing adopted, and nothing wrong.
    _status(yard, "CH01/005", {"metadata": {"stage": "script"}})
    _status(yard, "CH01/006", _adopting(None))
    _status(yard, "CH01/007", {"metadata": None})
    _status(yard, "CH01/008", _adopting(""))
    _status(yard, "CH01/009", {"title": "no metadata yet"})
    # Broken: each protects its own group.
    _status(yard, "CH01/004", '{"metadata": {"video_run_id": "run-x"')  # truncated
    _status(yard, "CH02/001", _adopting(192))
    _status(yard, "CH02/002", _adopting("../../etc"))
    _status(yard, "CH02/004", [1, 2, 3])
    _status(yard, "CH02/005", {"metadata": "run-ch02-005"})
    _status(yard, "CH02/007", b"\xff\xfe\x00 not text")
    (yard / "scripts/CH04/001/status.json").mkdir(parents=True)  # a folder, not a file
    (yard / "scripts/CH04/002").mkdir(parents=True)
    (yard / "scripts/CH04/002/status.json").symlink_to(yard / "scripts/CH04/002/gone.json")
    (yard / "scripts/CH04/003").mkdir(parents=True)
    loop = yard / "scripts/CH04/003/status.json"
    loop.symlink_to(loop)
    # Links out of the yard: a file, and a whole channel folder.
    outside = tmp_path / "outside"
    (outside / "ch03" / "001").mkdir(parents=True)
    (outside / "stolen.json").write_text(json.dumps(_adopting("run-stolen")))
    (outside / "ch03" / "001" / "status.json").write_text(json.dumps(_adopting("run-far")))
    (yard / "scripts/CH02/003").mkdir(parents=True)
    (yard / "scripts/CH02/003/status.json").symlink_to(outside / "stolen.json")
    (yard / "scripts/CH03").symlink_to(outside / "ch03", target_is_directory=True)
    # A link that stays inside the yard is followed like a file.
    shared = yard / "shared" / "ep.json"
    shared.parent.mkdir()
    shared.write_text(json.dumps(_adopting("run-ch05-001")))
    (yard / "scripts/CH05/001").mkdir(parents=True)
    (yard / "scripts/CH05/001/status.json").symlink_to(Path("../../../shared/ep.json"))
    # Not matched by the glob at all.
    (yard / "scripts/README.md").write_text("# scripts")
    (yard / "scripts/CH01/notes.txt").write_text("a file where an episode folder could be")
    _status(yard, "CH01/001/extra", _adopting("run-too-deep"))
    return yard


@pytest.fixture
def scan(workspace: Path) -> ReferenceScan:
    return scan_references(workspace, [VIDEO_RULE])


def _problem(scan: ReferenceScan, group: str) -> references.ReferenceProblem:
    found = [p for p in scan.problems if p.group == group]
    assert len(found) == 1, (group, scan.problems)
    return found[0]


def test_each_good_status_file_adopts_its_run_for_its_episode_group(scan: ReferenceScan) -> None:
    assert scan.adopters("run-ch01-001-b") == [
        AdoptedBy(group="CH01/001", path="scripts/CH01/001/status.json", rule=VIDEO_RULE)
    ]
    assert scan.reference_group("run-ch01-002-a") == "CH01/002"
    assert scan.is_adopted("run-ch05-001")  # through a link that stays inside the yard
    assert scan.adopters("run-ch05-001")[0].path == "scripts/CH05/001/status.json"
    assert set(scan.adopted) == {
        "run-ch01-001-b",
        "run-ch01-002-a",
        "run-ch01-003-c",
        "run-ch05-001",
    }


def test_two_files_adopting_one_run_are_both_kept_in_path_order(scan: ReferenceScan) -> None:
    assert [(a.group, a.path) for a in scan.adopters("run-ch01-003-c")] == [
        ("CH01/003", "scripts/CH01/003/status.json"),
        ("CH02/006", "scripts/CH02/006/status.json"),
    ]


@pytest.mark.parametrize("episode", ["CH01/005", "CH01/006", "CH01/007", "CH01/008", "CH01/009"])
def test_no_run_named_is_not_a_problem(scan: ReferenceScan, episode: str) -> None:
    assert episode in scan.groups_with_reference
    assert episode not in scan.protected_groups
    assert all(p.group != episode for p in scan.problems)


@pytest.mark.parametrize(
    ("group", "code", "fragment"),
    [
        ("CH01/004", "not_json", "cannot be parsed (not JSON"),
        ("CH02/001", "not_a_string", "metadata.video_run_id is a number 192, not a string"),
        ("CH02/002", "invalid_run_id", 'invalid run id "../../etc"'),
        ("CH02/003", "outside_yard", "resolves outside the yard"),
        ("CH02/004", "not_an_object", "its top level is a list, not an object"),
        ("CH02/005", "bad_json_path", "metadata is a string, not an object"),
        ("CH02/007", "not_json", "not JSON"),
        ("CH03/001", "outside_yard", "it is not read"),
        ("CH04/001", "unreadable", "cannot be read"),
        ("CH04/002", "unreadable", "No such file"),
        ("CH04/003", "unreadable", "cannot be read"),
    ],
)
def test_every_unusable_reference_is_reported_and_protects_its_group(
    scan: ReferenceScan, group: str, code: str, fragment: str
) -> None:
    problem = _problem(scan, group)
    assert problem.code == code
    assert problem.path == f"scripts/{group}/status.json"
    assert fragment in problem.message
    assert scan.protected_groups[group] == f"its reference file {problem.path} {problem.message}"
    assert group in scan.groups_with_reference


def test_protection_is_per_group_and_only_for_broken_files(scan: ReferenceScan) -> None:
    assert set(scan.protected_groups) == {
        "CH01/004",
        "CH02/001",
        "CH02/002",
        "CH02/003",
        "CH02/004",
        "CH02/005",
        "CH02/007",
        "CH03/001",
        "CH04/001",
        "CH04/002",
        "CH04/003",
    }
    # A broken file adopts nothing: neither what it tried to name nor the file behind a link.
    assert not {"run-x", "192", "run-stolen", "run-far", "run-ch02-005"} & set(scan.adopted)


def test_groups_with_reference_are_exactly_the_matched_episodes(scan: ReferenceScan) -> None:
    assert scan.groups_with_reference == (
        {f"CH01/00{i}" for i in range(1, 10)}
        | {f"CH02/00{i}" for i in range(1, 8)}
        | {"CH03/001", "CH04/001", "CH04/002", "CH04/003", "CH05/001"}
    )
    assert "run-too-deep" not in scan.adopted  # scripts/CH01/001/extra/status.json: too deep


def test_a_file_outside_the_yard_is_never_opened(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = os.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("os.open", spy)  # reference files are opened with os.open (O_NONBLOCK)
    scan_references(workspace, [VIDEO_RULE])
    outside = str(workspace.parent / "outside")
    assert opened and not [p for p in opened if p.startswith(outside)]


def test_a_yard_reached_through_a_symlink_still_reads_its_own_files(
    workspace: Path, tmp_path: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(workspace, target_is_directory=True)
    scan = scan_references(alias, [VIDEO_RULE])
    assert "run-ch01-001-b" in scan.adopted
    assert "CH02/003" in scan.protected_groups  # still outside the (resolved) yard


def test_a_missing_scripts_folder_gives_an_empty_scan(tmp_path: Path) -> None:
    scan = scan_references(tmp_path, [VIDEO_RULE])
    assert scan == ReferenceScan()


def test_a_too_large_file_protects_its_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(references, "MAX_REFERENCE_BYTES", 100)
    _status(tmp_path, "CH01/001", {"metadata": {"video_run_id": "r1", "pad": "x" * 200}})
    scan = scan_references(tmp_path, [VIDEO_RULE])
    assert _problem(scan, "CH01/001").code == "too_large"
    assert not scan.adopted


def test_deeply_nested_json_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    _status(tmp_path, "CH01/001", "[" * 100_000)
    assert _problem(scan_references(tmp_path, [VIDEO_RULE]), "CH01/001").code == "not_json"


def test_an_unreadable_file_protects_its_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _status(tmp_path, "CH01/001", _adopting("r1"))
    _status(tmp_path, "CH01/002", _adopting("r2"))
    real_open = os.open

    def deny(file: Any, *args: Any, **kwargs: Any) -> Any:
        # chmod 000 would not stop root, so refuse this one file the way the OS would.
        if Path(file) == path.resolve():
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("os.open", deny)
    scan = scan_references(tmp_path, [VIDEO_RULE])
    problem = _problem(scan, "CH01/001")
    assert (problem.code, problem.message) == ("unreadable", "cannot be read (Permission denied)")
    assert set(scan.adopted) == {"r2"}
    assert set(scan.protected_groups) == {"CH01/001"}


def test_the_group_is_every_wildcard_segment_whole_including_the_file_name(
    tmp_path: Path,
) -> None:
    (tmp_path / "refs" / "ch1").mkdir(parents=True)
    (tmp_path / "refs" / "ch1" / "ep-7.json").write_text(json.dumps({"run": "r7"}))
    (tmp_path / "refs" / "ch1" / "other.json").write_text(json.dumps({"run": "r8"}))
    rule = ReferenceRule(glob="refs/ch?/ep-[0-9].json", json_path="run")
    scan = scan_references(tmp_path, [rule])
    assert scan.adopters("r7") == [AdoptedBy("ch1/ep-7.json", "refs/ch1/ep-7.json", rule)]
    assert "r8" not in scan.adopted


def test_several_rules_are_all_read(workspace: Path) -> None:
    (workspace / "jobs" / "j1").mkdir(parents=True)
    (workspace / "jobs" / "j1" / "job.json").write_text(json.dumps({"run_id": "run-job"}))
    job_rule = ReferenceRule(glob="jobs/*/job.json", json_path="run_id")
    scan = scan_references(workspace, [VIDEO_RULE, job_rule])
    assert scan.adopters("run-job") == [AdoptedBy("j1", "jobs/j1/job.json", job_rule)]
    assert "run-ch01-001-b" in scan.adopted


def test_effective_group_prefers_the_known_group_then_the_reference(scan: ReferenceScan) -> None:
    assert effective_group("run-ch01-001-b", "CH09/999", scan) == "CH09/999"
    assert effective_group("run-ch01-001-b", None, scan) == "CH01/001"
    assert effective_group("run-ch01-003-c", None, scan) == "CH01/003"  # first by path
    assert effective_group("192", None, scan) is None


@pytest.mark.parametrize(
    ("glob", "json_path", "fragment"),
    [
        ("scripts/**/status.json", "metadata.video_run_id", "'**' is not supported"),
        ("scripts/a**/status.json", "metadata.video_run_id", "'**' is not supported"),
        ("scripts/CH01/001/status.json", "metadata.video_run_id", "has no wildcard part"),
        ("/etc/*/status.json", "metadata.video_run_id", "must be relative"),
        ("scripts/../*/status.json", "metadata.video_run_id", "'..' segment"),
        ("scripts//*/status.json", "metadata.video_run_id", "empty"),
        ("scripts/*/*/status.json", "metadata..video_run_id", "json_path"),
        ("scripts/*/*/status.json", "metadata.", "json_path"),
    ],
)
def test_unusable_rules_are_refused_before_any_file_is_read(
    workspace: Path, glob: str, json_path: str, fragment: str
) -> None:
    rule = ReferenceRule(glob=glob, json_path=json_path)
    problem = reference_rule_problem(rule)
    assert problem is not None and fragment in problem
    with pytest.raises(Invalid, match=r"reference rule in runyard\.toml") as caught:
        scan_references(workspace, [VIDEO_RULE, rule])
    assert fragment in caught.value.message


def test_the_video_preset_rule_is_usable() -> None:
    assert reference_rule_problem(VIDEO_RULE) is None
