"""Crash tests of archive and restore: SIGKILL at every kind of step, then ``recover``.

A source yard of at least 50 runs is built once per test (plan runs, imported legacy
runs, and folders the registry does not know yet; each a few files, an empty folder
now and then, one symlink). Every iteration copies that yard (its SQLite registry is
inside it, so the copy is independent), runs ``archive --run`` or ``restore --run``
and kills it: at the N-th crash point (``RUNYARD_TEST_CRASH_AT``, the test-only switch
of ``runyard.lifecycle.crashpoints``; a first, uncrashed run counts them), after a
random delay, or, across filesystems, while a large file is being copied. Then
``recover`` (itself killed once more in a few iterations) must settle it without an
alarm, and:

- every run exists exactly once, in the runs root or in one batch, never both or neither,
  and no ``.partial`` or ``.deleting`` folder is left;
- every tree is identical to the original (``scan_tree`` digest: type, mode, size,
  content, link text, mtime);
- the registry agrees with the disk (``run list --json``): ``archived`` with batch B
  exactly when the folder is in batch B, ``active`` exactly when it is in the runs root;
- no report is left ``in_progress``, and each says what the disk says;
- the same command run again completes, and the yard ends consistent.

The commands run as separate processes. Most are forked from a server that imported
runyard once (``tests/helpers/forkserver.py``; a ``python -m runyard`` spends ~0.6 s
of CPU importing, which would make a few hundred iterations too slow); a crash point
kills such a child exactly as it kills ``python -m runyard``. Forked children flush the
journal every ``JOURNAL_EVERY`` moves and never on a timer, and move one run at a time
(``runyard.lifecycle.movers``), so that the N-th crash point is the same step in every
run; ``python -m runyard`` copies several runs at once across filesystems, and the
timed kills of it cut such concurrent moves. A counting run, the first crash points (before any
move) and some timed kills use ``python -m runyard`` itself; the counting run checks
that it passes the same kinds of crash points.

The cross-filesystem tests (archive root on /dev/shm) kill at fewer points: each point
costs more there, and they are many more (every file copied is one).
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard.lifecycle.fsops import scan_tree
from tests.conftest import Cli

HELPER = Path(__file__).parent / "helpers" / "forkserver.py"
SEED = 20260611
WORKERS = min(6, (os.cpu_count() or 2) + 1)
OLD = time.time() - 3 * 86400
BIG_FILE = 32 << 20
"""The file added to one run of a copy to kill the copying of it: big enough that a poll
every fraction of a millisecond cannot miss the tens of milliseconds it takes."""

CRASH_ENV = ("RUNYARD_TEST_CRASH_AT", "RUNYARD_TEST_CRASH_LOG")
JOURNAL_EVERY = 8
"""Forked commands flush the registry and report after every 8 moves and never on a
timer (see the fork server): flushes mid-batch, at the same crash points in every run."""

REQUIRED_POINTS = {
    "archive": {"archive:report-written", "archive:entry-moving", "archive:entry-moved"},
    "restore": {"restore:report-written", "restore:entry-moving", "restore:entry-moved"},
    "same_fs": {"fsops.rename.before", "fsops.rename.after"},
    "cross_fs": {
        "fsops.copy.started",
        "fsops.copy.file",
        "fsops.copy.done",
        "fsops.verify.done",
        "fsops.partial.renamed",
        "fsops.src.tombstoned",
        "fsops.src.deleted",
    },
}
"""Crash points that must be among those a command passes. Every label it passes (the
registry and report updates too, whatever they are called) is killed at at least once."""


# --- running runyard ------------------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    points: list[str]  # the crash log: "N label" per point passed
    killed_by_runner: bool  # by a timer or a watch (kill_after, kill_when), not a crash point
    seconds: float
    first_point_seconds: float | None  # when the first crash point was passed (forked, log)
    cpu: float

    def json(self) -> Any:
        return json.loads(self.stdout)

    def last_point(self) -> str | None:
        return self.points[-1] if self.points else None


class _ForkServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HELPER),
                f"--journal-every={JOURNAL_EVERY}",
                "--move-threads=1",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit {self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Runner:
    """Runs ``runyard`` commands in separate processes: forked children of one of a few
    servers (one per worker thread at a time), or ``python -m runyard`` with ``real``."""

    def __init__(self, servers: int) -> None:
        self._servers: queue.Queue[_ForkServer] = queue.Queue()
        self._all = [_ForkServer() for _ in range(servers)]
        self.cpu: dict[str, float] = defaultdict(float)  # CPU seconds of the children, by name
        self._cpu_lock = threading.Lock()
        for server in self._all:
            self._servers.put(server)

    def close(self) -> None:
        for server in self._all:
            server.close()

    def __call__(
        self,
        argv: list[str],
        scratch: Path,
        name: str,
        *,
        crash_at: int | None = None,
        log: bool = False,
        kill_after: float | None = None,
        after_first_point: bool = False,
        kill_when: dict[str, Any] | None = None,
        real: bool = False,
    ) -> Outcome:
        scratch.mkdir(parents=True, exist_ok=True)
        out, err, crash_log = (scratch / f"{name}.{ext}" for ext in ("out", "err", "points"))
        env: dict[str, str | None] = dict.fromkeys(CRASH_ENV)
        if crash_at is not None:
            env["RUNYARD_TEST_CRASH_AT"] = str(crash_at)
        watch = log or after_first_point  # and time the first crash point
        if watch or crash_at is not None or kill_after is not None or kill_when is not None:
            env["RUNYARD_TEST_CRASH_LOG"] = str(crash_log)
        if real:
            assert kill_when is None
            reply = _run_real(argv, out, err, env, kill_after, crash_log if watch else None)
        else:
            server = self._servers.get()
            try:
                reply = server.call(
                    {
                        "argv": argv,
                        "env": env,
                        "stdout": str(out),
                        "stderr": str(err),
                        "kill_after": kill_after,
                        "kill_when": kill_when,
                        "watch": str(crash_log) if watch else None,
                    }
                )
            finally:
                self._servers.put(server)
        points = crash_log.read_text().splitlines() if crash_log.exists() else []
        with self._cpu_lock:
            self.cpu[name.split("-")[0]] += reply["cpu_seconds"]
        return Outcome(
            returncode=reply["returncode"],
            stdout=out.read_text(),
            stderr=err.read_text(),
            points=points,
            killed_by_runner=reply["killed_by_server"],
            seconds=reply["seconds"],
            first_point_seconds=reply.get("watch_seconds"),
            cpu=reply["cpu_seconds"],
        )


def _run_real(
    argv: list[str],
    out: Path,
    err: Path,
    env: dict[str, str | None],
    kill_after: float | None,
    watch: Path | None,
) -> dict[str, Any]:
    """``python -m runyard ARGV`` with Popen, SIGKILLed with os.kill ``kill_after``
    seconds after its start (or after ``watch`` appeared) if still running; the same
    reply as the fork server's."""
    environ = {k: v for k, v in os.environ.items() if k not in env}
    environ.update({k: v for k, v in env.items() if v is not None})
    started = time.monotonic()
    killed = False
    watch_seconds = None
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runyard", *argv],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=environ,
        )
        pidfd = os.pidfd_open(proc.pid)
        try:
            running = True
            if watch is not None:
                while running and not watch.exists():
                    running = not select.select([pidfd], [], [], 0.0005)[0]
                watch_seconds = time.monotonic() - started if running else None
            timeout = kill_after if running and kill_after is not None else None
            if timeout is not None and not select.select([pidfd], [], [], timeout)[0]:
                os.kill(proc.pid, signal.SIGKILL)  # not reaped yet: still this process
                killed = True
        finally:
            os.close(pidfd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": proc.returncode,
        "killed_by_server": killed,
        "seconds": time.monotonic() - started,
        "watch_seconds": watch_seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


@pytest.fixture
def runner() -> Iterator[Runner]:
    run = Runner(WORKERS)
    try:
        yield run
    finally:
        run.close()


@pytest.fixture
def shm_dir(tmp_path: Path) -> Iterator[Path]:
    """A per-test folder on /dev/shm (another filesystem than tmp_path), removed after."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("NO /dev/shm: the cross-filesystem crash tests did NOT run")
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem as tmp_path: cross-fs crash tests NOT run")
    path = Path(tempfile.mkdtemp(prefix="runyard-crash-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- the source yard ------------------------------------------------------------------------


@dataclass
class Source:
    """The yard built once per test, and how to make an independent copy of it."""

    yard: Path
    digests: dict[str, str]  # run id → scan_tree digest of its original tree
    unregistered: set[str]  # folders the registry does not know before the first archive
    big_run: str | None  # where a mid-file kill adds its big file
    shm: Path | None = None  # cross-filesystem: the folder holding each copy's archive root
    batch: str | None = None  # restore: the batch everything was archived in

    def materialize(self, where: Path, name: str) -> tuple[Path, Path]:
        """An independent copy of the yard in ``where``: (yard, its archive root)."""
        yard = where / "yard"
        _copy_exact(self.yard, yard)
        if self.shm is None:
            return yard, yard / "_archive"
        source_root = self.shm / "source"
        root = self.shm / name
        _copy_exact(source_root, root)
        _set_archive_root(yard, str(root))
        if self.batch is not None:  # the report names the (absolute) archive root in each dst
            report = root / self.batch / "archive_report.json"
            data = json.loads(report.read_text())
            for entry in data["entries"]:
                entry["dst"] = entry["dst"].replace(str(source_root), str(root), 1)
            report.write_text(json.dumps(data, indent=2))
        return yard, root


def _copy_exact(src: Path, dst: Path) -> None:
    """``cp -a``: fifos, hard links and extended attributes too (copytree refuses fifos)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--no-target-directory", str(src), str(dst)], check=True)


def _set_archive_root(yard: Path, value: str) -> None:
    toml = yard / "runyard.toml"
    line = f"archive_root = {json.dumps(value)}"
    toml.write_text(re.sub(r"(?m)^archive_root = .*$", line, toml.read_text()))


def _age(root: Path) -> None:
    """Every mtime under ``root`` three days back (links themselves, not followed)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (OLD, OLD), follow_symlinks=False)
    os.utime(root, (OLD, OLD))


def build_source(base: Path, n_runs: int, *, shm: Path | None = None) -> Source:
    """A yard of ``n_runs`` old, unscoped or grouped runs that ``archive --all`` moves;
    with ``shm``, its archive root is the absolute path ``<shm>/source``."""
    rng = random.Random(SEED)
    yard = base / "source"
    runyard.init_yard(yard)
    toml = yard / "runyard.toml"
    toml.write_text(re.sub(r"(?m)^keep_last_runs = .*$", "keep_last_runs = 0", toml.read_text()))
    if shm is not None:
        (shm / "source").mkdir()
        _set_archive_root(yard, str(shm / "source"))
    external = base / "external-project"
    external.mkdir()
    (external / "draft.json").write_text("{}")
    cli = Cli(yard)
    cli.ok("scenario", "add", "crash")
    cfg = base / "cfg.json"
    cfg.write_text('{"fps": 30}')
    cfg_id = cli.ok("config", "add", str(cfg))["config_version_id"]
    plan = cli.ok("plan", "create", "--scenario", "crash", "--config", cfg_id)["plan_version_id"]
    runs_root = yard / "runs"
    legacy: list[str] = []
    unregistered: list[str] = []
    big_run = f"run-{n_runs // 2:03d}" if shm is not None else None
    for i in range(n_runs):
        run_id = f"run-{i:03d}"
        folder = runs_root / run_id
        if i % 8 == 0:
            cli.ok("run", "start", "--plan", plan, "--run-id", run_id, "--group", f"G{i % 3}")
        else:
            folder.mkdir()
            (unregistered if i % 5 == 1 else legacy).append(run_id)
        (folder / "data.txt").write_text(f"run {run_id}\n" * rng.randint(1, 40))
        (folder / "sub").mkdir()
        (folder / "sub" / "result.bin").write_bytes(rng.randbytes(rng.randint(0, 4096)))
        if i % 4 == 0:
            (folder / "notes ü.txt").write_text("memo")
        if i % 7 == 0:
            (folder / "empty").mkdir()
        link = (
            ("latest", "sub/result.bin"),
            ("shared", "../../shared-assets"),
            ("capcut_draft", str(external)),
        )[i % 3]
        os.symlink(link[1], folder / link[0])
        # What real workspaces hold (issue 13): names and link texts that are not UTF-8,
        # a tool's fifo, a hard link, an extended attribute. A crash must spare them too.
        if i % 6 == 0:
            odd = os.fsdecode(b"take\xff\xfe")
            (folder / odd).write_bytes(b"odd name")
            os.symlink(os.fsdecode(b"/nonexistent/\xe9\xff"), folder / f"{odd}.lnk")
        if i % 9 == 0:
            os.mkfifo(folder / "progress.fifo")
        if i % 10 == 3:
            os.link(folder / "data.txt", folder / "sub" / "data-again.txt")
        if i % 11 == 0:
            os.setxattr(folder / "data.txt", "user.origin", b"camera-2")
        if i % 8 == 0:
            cli.ok("run", "finish", run_id, "--status", "succeeded")
    cli.ok("run", "import", *(str(runs_root / r) for r in legacy))
    _age(runs_root)
    digests = {p.name: scan_tree(p).digest for p in runs_root.iterdir()}
    assert len(digests) == n_runs
    return Source(
        yard=yard,
        digests=digests,
        unregistered=set(unregistered),
        big_run=big_run,
        shm=shm,
    )


# --- checking a yard ------------------------------------------------------------------------


def check_yard(
    source: Source,
    runner: Runner,
    yard: Path,
    archive_root: Path,
    scratch: Path,
    stage: str,
    final: str | None = None,
    digests: dict[str, str] | None = None,
) -> None:
    """Every run exactly once with its original tree, the registry and the reports
    agreeing, no journal left open, no temporary report file left (``recover`` removes
    those of a report write that was killed); with ``final``, every run is ``active``
    or ``archived``."""
    digests = digests or source.digests
    found: dict[str, list[str]] = defaultdict(list)
    strays: list[str] = []

    def look(folder: Path, place: str) -> None:
        for entry in os.scandir(folder):
            if entry.name in digests:
                found[entry.name].append(place)
            else:
                strays.append(entry.path)  # a .partial or .deleting left, or worse

    look(yard / "runs", "active")
    reports: dict[Path, dict[str, Any]] = {}
    litter: list[str] = []
    for batch in sorted(archive_root.iterdir()):
        if not batch.is_dir():
            continue
        if (batch / "runs").is_dir():
            look(batch / "runs", batch.name)
        for report_path in batch.glob("*.json"):
            reports[report_path] = json.loads(report_path.read_text())
        litter += [str(p) for p in batch.glob(".*.tmp")]
    assert not strays, f"{stage}: left over: {strays}"
    assert not litter, f"{stage}: temporary report files left: {litter}"
    wrong = {r: found.get(r, []) for r in digests if len(found.get(r, [])) != 1}
    assert not wrong, f"{stage}: runs not found exactly once: {wrong}"
    place_of = {run_id: places[0] for run_id, places in found.items()}
    for path, report in reports.items():
        assert report["status"] in ("complete", "recovered"), f"{stage}: {path} {report['status']}"
        _check_report(source, place_of, path, report, stage, again=final is not None)
    for run_id, digest in digests.items():
        place = place_of[run_id]
        parent = yard / "runs" if place == "active" else archive_root / place / "runs"
        scan = scan_tree(parent / run_id)
        assert scan.digest == digest, f"{stage}: {run_id} changed in {place}"
    listing = runner(
        ["--yard", str(yard), "run", "list", "--json", "--limit", "1000"], scratch, f"list-{stage}"
    )
    assert listing.returncode == 0, listing.stderr
    page = listing.json()
    assert page["next_cursor"] is None
    registry = {item["run_id"]: item for item in page["items"]}
    for run_id in digests:
        place = place_of[run_id]
        item = registry.get(run_id)
        if item is None:
            assert run_id in source.unregistered, f"{stage}: {run_id} fell out of the registry"
            assert place == "active", f"{stage}: {run_id} moved to {place} unregistered"
            continue
        expected = ("active", None) if place == "active" else ("archived", place)
        actual = (item["location"], item["archive_batch_id"])
        assert actual == expected, f"{stage}: {run_id} is in {place}; the registry says {actual}"
    if final is not None:
        assert set(registry) >= set(digests), f"{stage}: not every run is registered"
        where = {place_of[r] == "active" for r in digests}
        assert where == {final == "active"}, f"{stage}: not every run is {final}"


def _check_report(
    source: Source,
    place_of: dict[str, str],
    path: Path,
    report: dict[str, Any],
    stage: str,
    again: bool,
) -> None:
    """A settled report says what the disk says (``recover`` brings it in line); after
    the command ran ``again``, a recovered restore's other runs were restored since."""
    batch = path.parent.name
    status = {e["run_id"]: e["status"] for e in report["entries"]}
    if report["kind"] == "archive" and source.batch is None:  # archive tests
        moved = {r for r, s in status.items() if s == "moved"}
        assert moved == {r for r in status if place_of[r] == batch}, f"{stage}: {path} disagrees"
        assert set(status.values()) <= {"moved", "not_moved"}, f"{stage}: {path}: {status}"
    elif report["kind"] == "restore":
        restored = {r for r, s in status.items() if s == "restored"}
        assert all(place_of[r] == "active" for r in restored), f"{stage}: {path} disagrees"
        if report["status"] == "recovered" and not again:  # the others stayed archived
            assert all(place_of[r] == batch for r in set(status) - restored), f"{stage}: {path}"


# --- the crash loop -------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """How one iteration dies: at the N-th crash point, after a delay, or mid-file."""

    at: int | None = None
    after: float | None = None
    after_first_point: bool = False  # ``after`` counts from the first crash point
    mid_file: bool = False
    real: bool = False
    recover_at: int | None = None  # then kill the first ``recover`` at this crash point

    def __str__(self) -> str:
        how = "python -m runyard" if self.real else "forked"
        if self.at is not None:
            text = f"crash point {self.at} ({how})"
        elif self.after is not None:
            since = "the first crash point" if self.after_first_point else "start"
            text = f"SIGKILL {self.after:.3f}s after {since} ({how})"
        else:
            text = "SIGKILL mid-file"
        if self.recover_at is not None:
            text += f", then recover killed at its point {self.recover_at}"
        return text


@dataclass
class Result:
    """What happened in one iteration (all of it checked already)."""

    died: str  # "killed" or "finished first"
    last_point: str | None  # "N label" of the last crash point passed
    mid_file_hit: bool = False

    @property
    def label(self) -> str | None:
        return self.last_point.split(" ", 1)[1] if self.last_point else None


@dataclass
class Scenario:
    kind: str  # "archive" or "restore"
    source: Source
    runner: Runner
    base: Path
    labels: list[str] = field(default_factory=list)  # label of crash point N at [N - 1]
    seconds: float = 0.0  # an uncrashed forked run's duration
    first_point: float = 0.0  # when it passed its first crash point
    real_first_point: float = 0.0  # the same as python -m runyard (which imports first)

    @property
    def final(self) -> str:
        return "archived" if self.kind == "archive" else "active"

    def command(self, yard: Path, archive_root: Path) -> list[str]:
        if self.kind == "archive":
            return ["--yard", str(yard), "archive", "--all", "--run", "--yes", "--json"]
        assert self.source.batch is not None
        report = archive_root / self.source.batch / "archive_report.json"
        return ["--yard", str(yard), "restore", "--report", str(report), "--run", "--json"]

    def check_done(self, result: Outcome, what: str) -> None:
        assert result.returncode == 0, f"{what} exited {result.returncode}: {result.stderr}"
        doc = result.json()
        assert doc["recovered"] == [], f"{what}: recovered again: {doc['recovered']}"
        assert doc["status"] == "complete", f"{what}: {doc['status']}"
        done = ("moved", "restored", "not_archived")
        bad = [e for e in doc["entries"] if e["status"] not in done]
        assert not bad, f"{what}: {bad}"

    def mid_file_rule(self, yard: Path, archive_root: Path) -> dict[str, Any]:
        """A kill_when rule: SIGKILL while the big run's big file is being copied (created,
        not complete: a window of many chunk writes, hard for a poll to miss)."""
        assert self.source.big_run is not None
        partial = f".{self.source.big_run}.partial"
        if self.kind == "archive":
            pattern = archive_root / "*" / "runs" / partial / "big.bin"
        else:
            pattern = yard / "runs" / partial / "big.bin"
        return {"glob": str(pattern), "min": 0, "max": BIG_FILE - 1}

    def copy(self, name: str) -> tuple[Path, Path, Path]:
        where = self.base / name
        yard, archive_root = self.source.materialize(where, name)
        return where, yard, archive_root

    def discard(self, where: Path, archive_root: Path) -> None:
        shutil.rmtree(where)
        if self.source.shm is not None:
            shutil.rmtree(archive_root)

    def count(self, real_too: bool = True) -> None:
        """Run the command uncrashed, forked (and as ``python -m runyard``): the crash
        points it passes, and the yard it leaves (consistent). The forked run gives the
        map from N to label; ``python -m runyard`` passes the same labels (its journal
        also flushes on a timer, so not always at the same places)."""
        passes: list[list[str]] = []
        for real in (False, True) if real_too else (False,):
            where, yard, root = self.copy("count-real" if real else "count-forked")
            result = self.runner(self.command(yard, root), where, "count", log=True, real=real)
            self.check_done(result, "uncrashed run")
            check_yard(self.source, self.runner, yard, root, where, "uncrashed", self.final)
            passes.append([line.split(" ", 1)[1] for line in result.points])
            if real:
                self.real_first_point = result.first_point_seconds or 0.0
            else:
                self.seconds = result.seconds
                self.first_point = result.first_point_seconds or 0.0
            self.discard(where, root)
        assert all(set(p) == set(passes[0]) for p in passes), "python -m runyard differs"
        self.labels = passes[0]

    def add_big_file(self, yard: Path, archive_root: Path) -> dict[str, str]:
        """Put a big file into the big run of this copy; the digests to expect now."""
        run_id = self.source.big_run
        assert run_id is not None
        if self.kind == "archive":
            folder = yard / "runs" / run_id
        else:
            assert self.source.batch is not None
            folder = archive_root / self.source.batch / "runs" / run_id
        (folder / "big.bin").write_bytes(os.urandom(1 << 20) * (BIG_FILE >> 20))
        os.utime(folder / "big.bin", (OLD, OLD))
        os.utime(folder, (OLD, OLD))
        scan = scan_tree(folder)
        if self.kind == "restore":  # the archive report must describe the archived tree
            assert self.source.batch is not None
            report = archive_root / self.source.batch / "archive_report.json"
            data = json.loads(report.read_text())
            entry = next(e for e in data["entries"] if e["run_id"] == run_id)
            entry.update(digest=scan.digest, bytes=scan.bytes, files=scan.files)
            report.write_text(json.dumps(data, indent=2))
        return {**self.source.digests, run_id: scan.digest}

    def iteration(self, name: str, kill: Kill) -> Result:
        """One copy, one kill, recover, check, run again, check."""
        where, yard, root = self.copy(name)
        digests = self.add_big_file(yard, root) if kill.mid_file else self.source.digests
        command = self.command(yard, root)
        crashed = self.runner(
            command,
            where,
            "crash",
            crash_at=kill.at,
            kill_after=kill.after,
            after_first_point=kill.after_first_point,
            kill_when=self.mid_file_rule(yard, root) if kill.mid_file else None,
            real=kill.real,
        )
        if kill.at is not None:
            assert crashed.returncode == -signal.SIGKILL, (
                f"{kill}: exited {crashed.returncode}, not killed: {crashed.stderr}"
            )
            expected = f"{kill.at} {self.labels[kill.at - 1]}"
            if kill.real:  # its moves may run in threads: the N-th point, any step
                assert (crashed.last_point() or "").split(" ")[0] == str(kill.at), kill
            else:
                assert crashed.last_point() == expected, (
                    f"{kill}: died after {crashed.last_point()}, not {expected}: "
                    "the crash points must be the same steps in every run"
                )
        assert crashed.returncode in (0, -signal.SIGKILL), f"{kill}: {crashed.stderr}"
        if kill.recover_at is not None:
            argv = ["--yard", str(yard), "recover", "--json"]
            first = self.runner(argv, where, "recover-crash", crash_at=kill.recover_at)
            assert first.returncode == -signal.SIGKILL, f"{kill}: recover was not killed"
        recovered = self.runner(["--yard", str(yard), "recover", "--json"], where, "recover")
        assert recovered.returncode == 0, f"{kill}: recover exited {recovered.returncode}: " + (
            recovered.stdout + recovered.stderr
        )
        assert recovered.json()["alarms"] == [], f"{kill}: {recovered.stdout}"
        check_yard(self.source, self.runner, yard, root, where, f"{kill}, recovered", None, digests)
        again = self.runner(command, where, "again")
        self.check_done(again, f"{kill}, run again")
        stage = f"{kill}, run again"
        check_yard(self.source, self.runner, yard, root, where, stage, self.final, digests)
        self.discard(where, root)
        return Result(
            died="killed" if crashed.returncode == -signal.SIGKILL else "finished first",
            last_point=crashed.last_point(),
            mid_file_hit=kill.mid_file and crashed.killed_by_runner,
        )

    def run(self, kills: list[Kill]) -> list[Result]:
        """Every kill, the first alone (fail fast), the rest on worker threads."""
        results = [self.iteration("iter-000", kills[0])]
        failures: list[str] = []

        def one(index: int, kill: Kill) -> Result:
            try:
                return self.iteration(f"iter-{index:03d}", kill)
            except AssertionError as exc:
                failures.append(f"iter-{index:03d} {kill}: {exc}")
                return Result("failed", None)

        with ThreadPoolExecutor(WORKERS) as pool:
            results += pool.map(one, range(1, len(kills)), kills[1:])
        assert not failures, f"{len(failures)} of {len(kills)} kills failed:\n" + "\n".join(
            sorted(failures)[:10]
        )
        return results


def spread_points(labels: list[str], want: int) -> list[int]:
    """About ``want`` distinct crash points (1-based), never fewer, and at least one of
    every label: the middle one of each label, the first and last of all, the first and
    last of each label while fewer than ``want``, then evenly spread over the rest."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for n, label in enumerate(labels, start=1):
        by_label[label].append(n)
    chosen = {points[len(points) // 2] for points in by_label.values()}
    for extra in ((1, len(labels)), *((p[0], p[-1]) for p in by_label.values())):
        if len(chosen) >= want:
            break
        chosen.update(extra)
    rest = sorted(set(range(1, len(labels) + 1)) - chosen)
    missing = min(max(0, want - len(chosen)), len(rest))
    chosen.update(rest[(j * len(rest)) // missing] for j in range(missing))
    return sorted(chosen)


def crash_campaign(
    scenario: Scenario,
    *,
    points: int,
    forked_timers: int,
    real_timers: int,
    real_points: int = 2,
    mid_file: int = 0,
    recover_kills: int = 0,
    fs_kinds: str = "same_fs",
    real_count: bool = True,
) -> None:
    """Count the crash points, kill at about ``points`` of them spread over all (the first
    ``real_points`` as ``python -m runyard``), plus timed, mid-file and recover kills."""
    scenario.count(real_too=real_count)
    labels = scenario.labels
    required = REQUIRED_POINTS[scenario.kind] | REQUIRED_POINTS[fs_kinds]
    assert required <= set(labels), f"missing {required - set(labels)} in {sorted(set(labels))}"
    chosen = spread_points(labels, points)
    assert len(chosen) >= min(points, len(labels))
    assert {labels[n - 1] for n in chosen} == set(labels)
    rng = random.Random(SEED + len(labels))
    # python -m runyard flushes its journal on a timer too: its N-th point is the same
    # step as a forked child's only before the first move completes.
    first_move = labels.index(f"{scenario.kind}:entry-moved") + 1
    real = sorted(n for n in chosen if n < first_move)[:real_points]
    assert len(real) == real_points, f"only {real} of the points come before the first move"
    kills = [Kill(at=n, real=n in real) for n in chosen]
    # Half the timers run from the start (a kill while it recovers, plans, registers or
    # hashes), half from the first crash point (a kill while runs move).
    start, moving = scenario.first_point, scenario.seconds - scenario.first_point
    for i in range(forked_timers):
        if i % 2:
            kills.append(Kill(after=rng.uniform(0, 1.2) * moving, after_first_point=True))
        else:
            kills.append(Kill(after=rng.uniform(0.3, 1.2) * start))
    for i in range(real_timers):  # python -m runyard, killed by Popen's caller
        if i % 2:
            kills.append(
                Kill(after=rng.uniform(0, 1.2) * moving, after_first_point=True, real=True)
            )
        else:  # while it imports, opens the yard, recovers, plans or hashes
            kills.append(Kill(after=rng.uniform(0.3, 1.2) * scenario.real_first_point, real=True))
    kills += [Kill(mid_file=True) for _ in range(mid_file)]
    # A copy renamed into place, the source not yet deleted: recover deletes it, and is
    # killed itself doing so; the next recover must finish the job.
    both = [n for n in chosen if labels[n - 1] == "fsops.partial.renamed"]
    kills += [Kill(at=n, recover_at=1) for n in both[:recover_kills]]
    # The first kill runs alone (fail fast), at a crash point; the others in any order, so
    # that the timed kills meet every kind of load of the worker threads.
    rest = kills[1:]
    rng.shuffle(rest)
    kills = [kills[0], *rest]
    results = scenario.run(kills)
    assert {r.label for r in results} >= set(labels)
    timed = [r for k, r in zip(kills, results, strict=True) if k.at is None]
    mid_file_hits = sum(r.mid_file_hit for r in results)
    # The poll that kills mid-file can be starved on a loaded machine: one hit is enough.
    assert mid_file_hits >= min(1, mid_file), "no kill ever landed in the middle of a file"
    print(
        f"\n{scenario.kind}: {len(labels)} crash points of {len(set(labels))} labels, killed "
        f"at {len(set(chosen))} distinct ones; {len(timed)} timed kills ({mid_file_hits} of "
        f"{mid_file} mid-file ones in a file): "
        + ", ".join(f"{r.died} after {r.last_point or 'no point'}" for r in timed)
        + f"\nCPU seconds of the commands: {dict(scenario.runner.cpu)}"
        + f", of this process: {time.process_time():.1f}"
    )


def archived_source(source: Source, runner: Runner, scratch: Path) -> Source:
    """The source yard with every run archived (by ``python -m runyard``) in one batch."""
    result = runner(
        ["--yard", str(source.yard), "archive", "--all", "--run", "--yes", "--json"],
        scratch,
        "archive-all",
        real=True,
    )
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert [e["status"] for e in doc["entries"]] == ["moved"] * len(source.digests)
    source.batch = doc["batch_id"]
    source.unregistered = set()  # the archive registered them all
    return source


# --- the tests ------------------------------------------------------------------------------


def test_archive_crash_smoke(tmp_path: Path, runner: Runner) -> None:
    """Ten crash points on a small yard, one of each label at least, the first crash
    as python -m runyard, and one timed kill."""
    crash_campaign(
        Scenario("archive", build_source(tmp_path, 12), runner, tmp_path),
        points=10,
        forked_timers=1,
        real_timers=0,
        real_points=1,
        real_count=False,
    )


@pytest.mark.slow
def test_archive_crash_same_filesystem(tmp_path: Path, runner: Runner) -> None:
    source = build_source(tmp_path, 52)
    crash_campaign(
        Scenario("archive", source, runner, tmp_path), points=104, forked_timers=6, real_timers=2
    )


@pytest.mark.slow
def test_restore_crash_same_filesystem(tmp_path: Path, runner: Runner) -> None:
    source = archived_source(build_source(tmp_path, 52), runner, tmp_path / "setup")
    crash_campaign(
        Scenario("restore", source, runner, tmp_path), points=104, forked_timers=6, real_timers=2
    )


@pytest.mark.slow
def test_archive_crash_across_filesystems(tmp_path: Path, shm_dir: Path, runner: Runner) -> None:
    """The archive root is an absolute path on /dev/shm: every move is copy, verify,
    rename, delete; kills between files, in the middle of one, and in recover itself."""
    source = build_source(tmp_path, 52, shm=shm_dir)
    crash_campaign(
        Scenario("archive", source, runner, tmp_path),
        points=64,
        forked_timers=4,
        real_timers=1,
        mid_file=3,
        recover_kills=3,
        fs_kinds="cross_fs",
    )


@pytest.mark.slow
def test_restore_crash_across_filesystems(tmp_path: Path, shm_dir: Path, runner: Runner) -> None:
    source = archived_source(build_source(tmp_path, 52, shm=shm_dir), runner, tmp_path / "setup")
    crash_campaign(
        Scenario("restore", source, runner, tmp_path),
        points=64,
        forked_timers=4,
        real_timers=1,
        mid_file=3,
        recover_kills=3,
        fs_kinds="cross_fs",
    )
