"""runyard.lifecycle.guards: scope selection and every archive guard.

A workspace of the video preset's shape is built on disk (runs with old and fresh
trees, a ``.keep`` marker, a ``capcut_draft`` link, episode ``status.json`` files, one
of them broken); the facts the archive command would gather from the registry are
written here as a table. Guards are then checked one by one and all together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runyard.config import ReferenceRule, YardFile
from runyard.errors import Invalid
from runyard.lifecycle.guards import (
    CandidateFacts,
    GuardSettings,
    Scope,
    ScopeFacts,
    SkipCode,
    SkipReason,
    evaluate,
    evaluate_candidates,
    keep_last_runs_per_group,
    select_candidates,
)
from runyard.lifecycle.references import ReferenceScan, effective_group, scan_references
from runyard.models import RunStatus

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
VIDEO_RULE = ReferenceRule(glob="scripts/*/*/status.json", json_path="metadata.video_run_id")
LEGACY = ["^[0-9]+$", "^api_", "^jinsei", "^CH[0-9]{2}-"]  # the video preset's patterns


@dataclass(frozen=True)
class Spec:
    """One run of the workspace, as the registry (or a disk scan) would describe it."""

    run_id: str
    group: str | None  # the group the registry knows (manifest or group_pattern)
    age_days: float  # started this long before NOW
    status: str = "succeeded"
    pinned: bool = False
    keep: bool = False
    touched_seconds_ago: float | None = None  # a file changed recently
    registered: bool = True


RUNS = [
    # CH01/001: four runs; status.json adopts a2; a3 has .keep.
    Spec("a1", "CH01/001", 30),
    Spec("a2", "CH01/001", 20),
    Spec("a3", "CH01/001", 10, keep=True),
    Spec("a4", "CH01/001", 2),
    # CH01/002: only two runs, so both are the newest two.
    Spec("b1", "CH01/002", 40),
    Spec("b2", "CH01/002", 1),
    # CH01/003: its status.json cannot be parsed, so every run of it is protected.
    Spec("c1", "CH01/003", 50),
    Spec("c2", "CH01/003", 40),
    Spec("c3", "CH01/003", 30),
    # CH02/001: status.json without metadata.video_run_id (no run adopted, no problem).
    Spec("d1", "CH02/001", 60, touched_seconds_ago=60),
    Spec("d2", "CH02/001", 50, status="running"),
    Spec("d3", "CH02/001", 45, pinned=True, touched_seconds_ago=120),
    Spec("d4", "CH02/001", 3),
    Spec("d5", "CH02/001", 2),
    Spec("d6", "CH02/001", 70, status="queued"),
    # CH02/002: e1 has no known group; status.json adopting it gives it CH02/002.
    Spec("e0", "CH02/002", 70),
    Spec("e1", None, 25),
    Spec("e2", "CH02/002", 35),
    # CH02/003: status.json names an invalid run id: the group is protected.
    Spec("f1", "CH02/003", 80),
    # Legacy runs found on disk, unknown to the registry; CH02-foo got a group from a
    # group_pattern; misc-render is group-less but not legacy-named.
    Spec("192", None, 200, status="unknown", registered=False),
    Spec("api_upload_1", None, 150, status="unknown", registered=False),
    Spec("jinsei_x", None, 100, status="unknown", keep=True, registered=False),
    Spec("CH02-foo", "CH02/foo", 90, status="unknown", registered=False),
    Spec("misc-render", None, 70),
]
SPECS = {spec.run_id: spec for spec in RUNS}


def _set_times(path: Path, when: datetime) -> None:
    stamp = when.timestamp()
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _build_run(runs_root: Path, spec: Spec, outside: Path) -> None:
    run = runs_root / spec.run_id
    (run / "frames").mkdir(parents=True)
    (run / "frames" / "0001.png").write_bytes(b"\x89PNG fake")
    (run / "run.json").write_text(json.dumps({"run_id": spec.run_id, "group": spec.group}))
    (run / "capcut_draft").symlink_to(outside / "capcut" / spec.run_id)  # dangling is fine
    if spec.keep:
        (run / ".keep").write_text("")
    written = NOW - timedelta(days=spec.age_days) + timedelta(hours=1)
    for path in [*sorted(run.rglob("*"), reverse=True), run]:
        _set_times(path, written)
    if spec.touched_seconds_ago is not None:
        _set_times(run / "frames" / "0001.png", NOW - timedelta(seconds=spec.touched_seconds_ago))


def newest_mtime_ns(run: Path) -> int:
    """What the archive command measures: the newest lstat mtime in the tree."""
    newest = run.lstat().st_mtime_ns
    for folder, dirs, files in os.walk(run):
        for name in dirs + files:
            newest = max(newest, (Path(folder) / name).lstat().st_mtime_ns)
    return newest


@dataclass
class Workspace:
    yard: Path
    references: ReferenceScan
    facts: dict[str, CandidateFacts]

    @property
    def all_facts(self) -> list[CandidateFacts]:
        return list(self.facts.values())


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    yard = tmp_path / "yard"
    runs_root = yard / "video" / "runs"
    runs_root.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    for spec in RUNS:
        _build_run(runs_root, spec, outside)

    def status(episode: str, text: str) -> None:
        path = yard / "scripts" / episode / "status.json"
        path.parent.mkdir(parents=True)
        path.write_text(text)

    status("CH01/001", json.dumps({"metadata": {"video_run_id": "a2"}}))
    status("CH01/002", json.dumps({"metadata": {"video_run_id": None}}))
    status("CH01/003", '{"metadata": {"video_run_id": "c')
    status("CH02/001", json.dumps({"metadata": {}}))
    status("CH02/002", json.dumps({"metadata": {"video_run_id": "e1"}}))
    status("CH02/003", json.dumps({"metadata": {"video_run_id": "f1/../../x"}}))
    references = scan_references(yard, [VIDEO_RULE])
    facts = {
        spec.run_id: CandidateFacts(
            run_id=spec.run_id,
            group=spec.group,
            status=RunStatus(spec.status),
            pinned=spec.pinned,
            legacy=not spec.registered,
            registered=spec.registered,
            started_at=NOW - timedelta(days=spec.age_days),
            newest_mtime_ns=newest_mtime_ns(runs_root / spec.run_id),
            has_keep_marker=(runs_root / spec.run_id / ".keep").exists(),
        )
        for spec in RUNS
    }
    return Workspace(yard, references, facts)


def _settings(**overrides: int) -> GuardSettings:
    values = {"keep_recent_minutes": 1440, "keep_last_runs": 2} | overrides
    return GuardSettings(now=NOW, keep_marker=".keep", **values)


def _codes(reasons: Sequence[SkipReason]) -> list[str]:
    return [str(r.code) for r in reasons]


def _plan(
    ws: Workspace, candidates: list[CandidateFacts], **overrides: int
) -> dict[str, list[str]]:
    """run id → skip codes, as the archive would decide for these candidates."""
    result = evaluate_candidates(candidates, ws.all_facts, _settings(**overrides), ws.references)
    return {run_id: _codes(reasons) for run_id, reasons in result.items()}


# --- the whole yard at once -------------------------------------------------------------


def test_every_run_of_the_workspace_gets_every_reason_it_must_stay(ws: Workspace) -> None:
    assert _plan(ws, ws.all_facts) == {
        "a1": [],
        "a2": ["adopted"],
        "a3": ["keep_marker", "keep_last_runs"],
        "a4": ["keep_last_runs"],
        "b1": ["keep_last_runs"],
        "b2": ["recent_change", "keep_last_runs"],  # started a day ago: changed < 1440 min
        "c1": ["reference_unreadable"],
        "c2": ["reference_unreadable", "keep_last_runs"],
        "c3": ["reference_unreadable", "keep_last_runs"],
        "d1": ["recent_change"],
        "d2": ["in_progress"],
        "d3": ["pinned", "recent_change"],
        "d4": ["keep_last_runs"],
        "d5": ["keep_last_runs"],
        "d6": ["in_progress"],
        "e0": [],
        "e1": ["adopted", "keep_last_runs"],  # its group comes from the reference
        "e2": ["keep_last_runs"],
        "f1": ["reference_unreadable", "keep_last_runs"],
        "192": [],
        "api_upload_1": [],
        "jinsei_x": ["keep_marker"],
        "CH02-foo": ["keep_last_runs"],  # the only run of its group
        "misc-render": [],
    }


def test_messages_say_what_and_why(ws: Workspace) -> None:
    kept = keep_last_runs_per_group(
        (
            (f.run_id, effective_group(f.run_id, f.group, ws.references), f.started_at)
            for f in ws.all_facts
        ),
        2,
    )
    settings = _settings()

    def messages(run_id: str) -> dict[str, str]:
        reasons = evaluate(ws.facts[run_id], settings, kept, ws.references)
        return {str(r.code): r.message for r in reasons}

    assert messages("d1") == {"recent_change": "changed 1 minute ago (keep_recent_minutes = 1440)"}
    assert messages("d3") == {
        "pinned": "pinned",
        "recent_change": "changed 2 minutes ago (keep_recent_minutes = 1440)",
    }
    assert messages("d2") == {"in_progress": "still running"}
    assert messages("d6") == {"in_progress": "still queued"}
    assert messages("jinsei_x") == {"keep_marker": "has a .keep marker"}
    assert messages("a2") == {"adopted": "adopted by scripts/CH01/001/status.json"}
    assert messages("a4") == {"keep_last_runs": "one of the newest 2 runs of group CH01/001"}
    assert messages("e1")["keep_last_runs"] == "one of the newest 2 runs of group CH02/002"
    unreadable = messages("c1")["reference_unreadable"]
    assert unreadable.startswith(
        "group CH01/003 is protected: its reference file scripts/CH01/003/status.json "
        "cannot be parsed (not JSON: "
    )
    assert messages("f1")["reference_unreadable"].startswith(
        "group CH02/003 is protected: its reference file scripts/CH02/003/status.json "
        'names an invalid run id "f1/../../x"'
    )


def test_keep_last_runs_one_frees_the_second_newest(ws: Workspace) -> None:
    plan = _plan(ws, ws.all_facts, keep_last_runs=1)
    assert plan["a3"] == ["keep_marker"] and plan["a4"] == ["keep_last_runs"]
    assert plan["b1"] == [] and plan["d4"] == []
    kept = evaluate_candidates(
        [ws.facts["a4"]], ws.all_facts, _settings(keep_last_runs=1), ws.references
    )
    assert kept["a4"][0].message == "the newest run of group CH01/001"


def test_guards_that_are_numbers_can_be_turned_off(ws: Workspace) -> None:
    plan = _plan(ws, ws.all_facts, keep_last_runs=0, keep_recent_minutes=0)
    assert plan["b2"] == [] and plan["d1"] == [] and plan["a4"] == []
    assert plan["d3"] == ["pinned"]
    assert plan["a3"] == ["keep_marker"] and plan["c2"] == ["reference_unreadable"]


# --- keep the newest runs of each group --------------------------------------------------


def test_keep_last_runs_is_computed_over_all_runs_not_the_candidates(ws: Workspace) -> None:
    # A scoped, filtered archive: CH01/001 runs older than 5 days are a1, a2, a3.
    candidates = select_candidates(
        ws.all_facts, Scope(groups=["CH01/001"], older_than_days=5), LEGACY, NOW, ws.references
    )
    assert [c.run_id for c in candidates] == ["a1", "a2", "a3"]
    plan = _plan(ws, candidates)
    # The newest two of the group are a4 and a3, whatever the selection: a2 is only adopted.
    assert plan == {"a1": [], "a2": ["adopted"], "a3": ["keep_marker", "keep_last_runs"]}
    # Computed over the candidates alone, a2 would wrongly count as one of the newest two.
    wrong = evaluate_candidates(candidates, candidates, _settings(), ws.references)
    assert _codes(wrong["a2"]) == ["adopted", "keep_last_runs"]


def test_keep_last_runs_orders_by_start_then_run_id_and_ignores_group_less_runs() -> None:
    t = NOW - timedelta(days=1)
    runs = [
        ("x1", "G", t - timedelta(hours=1)),
        ("x2", "G", t),
        ("x3", "G", t),  # same instant as x2: the greater run id is the newer
        ("y1", "H", t - timedelta(days=9)),
        ("z1", None, t + timedelta(hours=5)),
        ("z2", None, t + timedelta(hours=6)),
    ]
    assert keep_last_runs_per_group(runs, 1) == {"x3", "y1"}
    assert keep_last_runs_per_group(runs, 2) == {"x3", "x2", "y1"}
    assert keep_last_runs_per_group(runs, 5) == {"x1", "x2", "x3", "y1"}
    assert keep_last_runs_per_group(runs, 0) == set()
    with pytest.raises(Invalid):
        keep_last_runs_per_group(runs, -1)


def test_naive_start_times_are_taken_as_utc() -> None:
    aware = datetime(2026, 1, 1, 12, tzinfo=UTC)
    naive = datetime(2026, 1, 1, 11, 30)
    runs = [("aware", "G", aware), ("naive", "G", naive)]
    assert keep_last_runs_per_group(runs, 1) == {"aware"}


# --- each guard alone --------------------------------------------------------------------


def _lone(**changes: Any) -> CandidateFacts:
    """A run that passes every guard, changed as told."""
    base = CandidateFacts(
        run_id="r1",
        group=None,
        status=RunStatus.succeeded,
        pinned=False,
        legacy=False,
        registered=True,
        started_at=NOW - timedelta(days=10),
        newest_mtime_ns=int((NOW - timedelta(days=10)).timestamp()) * 10**9,
        has_keep_marker=False,
    )
    return replace(base, **changes)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 10**6) * 1000


def _alone(facts: CandidateFacts, references: ReferenceScan | None = None, **kw: int) -> list[str]:
    return _codes(evaluate(facts, _settings(**kw), set(), references or ReferenceScan()))


def test_a_run_with_nothing_against_it_may_be_archived() -> None:
    assert _alone(_lone()) == []


@pytest.mark.parametrize(
    ("status", "blocked"),
    [
        (RunStatus.queued, True),
        (RunStatus.running, True),
        ("running", True),
        (RunStatus.succeeded, False),
        (RunStatus.failed, False),
        (RunStatus.cancelled, False),
        (RunStatus.unknown, False),
        ("unknown", False),
    ],
)
def test_in_progress(status: RunStatus | str, blocked: bool) -> None:
    assert _alone(_lone(status=status)) == (["in_progress"] if blocked else [])


def test_pinned_and_keep_marker() -> None:
    assert _alone(_lone(pinned=True)) == ["pinned"]
    assert _alone(_lone(has_keep_marker=True)) == ["keep_marker"]
    settings = replace(_settings(), keep_marker=".do-not-archive")
    reasons = evaluate(_lone(has_keep_marker=True), settings, set(), ReferenceScan())
    assert reasons[0].message == "has a .do-not-archive marker"


def test_recent_change_window_edges() -> None:
    window = timedelta(minutes=60)
    just_inside = _lone(newest_mtime_ns=_ns(NOW - window) + 1)
    at_edge = _lone(newest_mtime_ns=_ns(NOW - window))
    assert _alone(just_inside, keep_recent_minutes=60) == ["recent_change"]
    assert _alone(at_edge, keep_recent_minutes=60) == []
    assert _alone(_lone(newest_mtime_ns=_ns(NOW)), keep_recent_minutes=0) == []


@pytest.mark.parametrize(
    ("ago", "message"),
    [
        (timedelta(seconds=5), "changed less than a minute ago (keep_recent_minutes = 60)"),
        (timedelta(seconds=61), "changed 1 minute ago (keep_recent_minutes = 60)"),
        (timedelta(minutes=12, seconds=59), "changed 12 minutes ago (keep_recent_minutes = 60)"),
        (
            -timedelta(minutes=30),
            "changed in the future, 30 minutes from now (clock skew?) (keep_recent_minutes = 60)",
        ),
        (
            -timedelta(seconds=2),
            "changed in the future, less than a minute from now (clock skew?) "
            "(keep_recent_minutes = 60)",
        ),
    ],
)
def test_recent_change_message(ago: timedelta, message: str) -> None:
    facts = _lone(newest_mtime_ns=_ns(NOW - ago))
    reasons = evaluate(facts, _settings(keep_recent_minutes=60), set(), ReferenceScan())
    assert [(r.code, r.message) for r in reasons] == [(SkipCode.recent_change, message)]


def test_a_naive_now_is_taken_as_utc() -> None:
    naive = GuardSettings(now=NOW.replace(tzinfo=None), keep_recent_minutes=60, keep_last_runs=2)
    assert naive.now == NOW
    facts = _lone(newest_mtime_ns=_ns(NOW - timedelta(minutes=59)))
    assert _codes(evaluate(facts, naive, set(), ReferenceScan())) == ["recent_change"]


def test_adopted_lists_every_referrer(tmp_path: Path) -> None:
    for episode in ("CH01/001", "CH02/009"):
        path = tmp_path / "scripts" / episode / "status.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"metadata": {"video_run_id": "r1"}}))
    references = scan_references(tmp_path, [VIDEO_RULE])
    reasons = evaluate(_lone(), _settings(), set(), references)
    assert [(r.code, r.message) for r in reasons] == [
        (
            SkipCode.adopted,
            "adopted by scripts/CH01/001/status.json, scripts/CH02/009/status.json",
        )
    ]


def test_reference_unreadable_protects_runs_of_the_group_only() -> None:
    references = ReferenceScan(protected_groups={"CH01/003": "its reference file x is broken"})
    assert _alone(_lone(group="CH01/003"), references) == ["reference_unreadable"]
    assert _alone(_lone(group="CH01/004"), references) == []
    assert _alone(_lone(group=None), references) == []


def test_keep_last_runs_alone_names_the_group() -> None:
    reasons = evaluate(_lone(group="G"), _settings(keep_last_runs=3), {"r1"}, ReferenceScan())
    assert [(r.code, r.message) for r in reasons] == [
        (SkipCode.keep_last_runs, "one of the newest 3 runs of group G")
    ]


def test_every_guard_at_once_in_the_documented_order(tmp_path: Path) -> None:
    path = tmp_path / "scripts" / "CH01" / "003" / "status.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"metadata": {"video_run_id": "r1"}}))
    references = scan_references(tmp_path, [VIDEO_RULE])
    references.protected_groups["CH01/003"] = "its reference file y cannot be parsed (test)"
    facts = _lone(
        group="CH01/003",
        status=RunStatus.running,
        pinned=True,
        has_keep_marker=True,
        newest_mtime_ns=_ns(NOW),
    )
    assert _codes(evaluate(facts, _settings(), {"r1"}, references)) == [
        "in_progress",
        "pinned",
        "keep_marker",
        "recent_change",
        "adopted",
        "reference_unreadable",
        "keep_last_runs",
    ]


def test_settings_from_the_yard_file_with_flag_overrides() -> None:
    file = YardFile(yard_id="y", keep_recent_minutes=1440, keep_last_runs=2, keep_marker=".pin")
    assert GuardSettings.from_yard_file(file, NOW) == GuardSettings(NOW, 1440, 2, ".pin")
    flagged = GuardSettings.from_yard_file(file, NOW, keep_recent_minutes=0, keep_last_runs=5)
    assert (flagged.keep_recent_minutes, flagged.keep_last_runs) == (0, 5)
    with pytest.raises(Invalid, match="keep_recent_minutes cannot be negative"):
        GuardSettings.from_yard_file(file, NOW, keep_recent_minutes=-1)
    with pytest.raises(Invalid, match="keep_last_runs cannot be negative"):
        GuardSettings(NOW, 10, -2)


# --- scope -------------------------------------------------------------------------------


def _selected(ws: Workspace, **scope: Any) -> list[str]:
    chosen = select_candidates(ws.all_facts, Scope(**scope), LEGACY, NOW, ws.references)
    return sorted(c.run_id for c in chosen)


def test_scope_all_selects_every_run_in_order(ws: Workspace) -> None:
    chosen = select_candidates(ws.all_facts, Scope(all=True), LEGACY, NOW, ws.references)
    assert [c.run_id for c in chosen] == [spec.run_id for spec in RUNS]


def test_scope_groups_match_exactly_with_reference_groups(ws: Workspace) -> None:
    assert _selected(ws, groups=["CH01/001"]) == ["a1", "a2", "a3", "a4"]
    assert _selected(ws, groups=["CH01/001", "CH01/002"]) == ["a1", "a2", "a3", "a4", "b1", "b2"]
    assert _selected(ws, groups=["CH02/002"]) == ["e0", "e1", "e2"]  # e1 through status.json
    assert _selected(ws, groups=["CH01"]) == []  # no prefix matching
    assert _selected(ws, groups=["CH09/999"]) == []


def test_scope_unscoped_only_excludes_grouped_and_adopted_runs(ws: Workspace) -> None:
    assert _selected(ws, all=True, unscoped_only=True) == [
        "192",
        "api_upload_1",
        "jinsei_x",
        "misc-render",
    ]


def test_scope_legacy_only_matches_the_patterns(ws: Workspace) -> None:
    assert _selected(ws, all=True, legacy=True) == ["192", "CH02-foo", "api_upload_1", "jinsei_x"]
    assert _selected(ws, groups=["CH02/foo"], legacy=True) == ["CH02-foo"]
    assert _selected(ws, groups=["CH01/001"], legacy=True) == []


def test_scope_unscoped_and_legacy_together_is_the_union(ws: Workspace) -> None:
    # The seed's bulk sweep: runs not tied to an episode, legacy names included even when
    # a group_pattern gave one (CH02-foo); adopted e1 stays out.
    assert _selected(ws, all=True, unscoped_only=True, legacy=True) == [
        "192",
        "CH02-foo",
        "api_upload_1",
        "jinsei_x",
        "misc-render",
    ]


def test_scope_older_than_narrows_every_selection(ws: Workspace) -> None:
    assert _selected(ws, all=True, older_than_days=100) == ["192", "api_upload_1"]
    assert _selected(ws, all=True, unscoped_only=True, legacy=True, older_than_days=80) == [
        "192",
        "CH02-foo",
        "api_upload_1",
        "jinsei_x",
    ]
    assert _selected(ws, groups=["CH01/001"], older_than_days=15) == ["a1", "a2"]
    assert len(_selected(ws, all=True, older_than_days=0)) == len(RUNS)
    with pytest.raises(Invalid, match="reaches before the year 1"):  # beyond the calendar
        _selected(ws, all=True, older_than_days=10**9)


def test_the_seed_bulk_archive_end_to_end(ws: Workspace) -> None:
    """--all --unscoped-only --legacy --keep-recent-minutes 1440, as in the seed's 4.2."""
    chosen = select_candidates(
        ws.all_facts, Scope(all=True, unscoped_only=True, legacy=True), LEGACY, NOW, ws.references
    )
    plan = _plan(ws, chosen)
    archived = sorted(run_id for run_id, codes in plan.items() if not codes)
    assert archived == ["192", "api_upload_1", "misc-render"]
    assert plan["jinsei_x"] == ["keep_marker"]
    assert plan["CH02-foo"] == ["keep_last_runs"]


def test_scope_accepts_plain_scope_facts() -> None:
    runs = [ScopeFacts("r1", None, NOW), ScopeFacts("r2", "G", NOW)]
    chosen = select_candidates(runs, Scope(all=True, unscoped_only=True), [], NOW, ReferenceScan())
    assert chosen == [runs[0]]


@pytest.mark.parametrize(
    ("scope", "fragment"),
    [
        ({}, "exactly one of --group G (repeatable), --run-id ID (repeatable) or --all"),
        ({"groups": []}, "exactly one of --group"),
        ({"groups": ["G"], "all": True}, "more than one was given"),
        ({"run_ids": ["r1"], "all": True}, "more than one was given"),
        ({"run_ids": ["../x"]}, "invalid run id"),
        ({"groups": ["G"], "unscoped_only": True}, "cannot be combined with --group"),
        ({"groups": [""]}, "cannot be empty"),
        ({"groups": [" G"]}, "padded with spaces"),
        ({"all": True, "older_than_days": -1}, "--older-than must be"),
        ({"all": True, "older_than_days": float("nan")}, "--older-than must be"),
        ({"all": True, "older_than_days": float("inf")}, "--older-than must be"),
    ],
)
def test_bad_scopes_are_refused_with_a_clear_message(scope: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Invalid) as caught:
        Scope(**scope)
    assert fragment in caught.value.message


def test_run_ids_select_only_the_named_runs() -> None:
    runs = [ScopeFacts("r1", None, NOW), ScopeFacts("r2", "G", NOW), ScopeFacts("r3", "G", NOW)]
    scope = Scope(run_ids=["r3", "r1", "r3"])
    assert scope.run_ids == ("r3", "r1")
    assert select_candidates(runs, scope, [], NOW, ReferenceScan()) == [runs[0], runs[2]]


def test_legacy_without_patterns_is_refused(ws: Workspace) -> None:
    with pytest.raises(Invalid, match=r"runyard\.toml has none"):
        select_candidates(ws.all_facts, Scope(all=True, legacy=True), [], NOW, ws.references)
    with pytest.raises(Invalid, match="not a valid regular expression"):
        select_candidates(ws.all_facts, Scope(all=True, legacy=True), ["(oops"], NOW, ws.references)


def test_scope_describe() -> None:
    assert Scope(all=True, unscoped_only=True, legacy=True).describe() == (
        "all runs; unscoped or legacy-named"
    )
    assert Scope(groups=["CH01/003", "CH01/004"], older_than_days=7).describe() == (
        "groups CH01/003, CH01/004; started more than 7 days ago"
    )


def test_guard_values_past_their_bounds_are_invalid_at_every_entrance() -> None:
    """The web and Python reach GuardSettings without the CLI's checks (issue 13)."""
    with pytest.raises(Invalid, match="keep_recent_minutes is at most"):
        GuardSettings(now=NOW, keep_recent_minutes=10**15, keep_last_runs=2)
    with pytest.raises(Invalid, match="keep_last_runs is at most"):
        GuardSettings(now=NOW, keep_recent_minutes=0, keep_last_runs=10**12)
