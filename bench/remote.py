"""Recording over HTTP: how many runs a second a real ``runyard serve`` takes from
pipelines on other hosts, beside recording into the yard directly in the same run.

Usage::

    .venv/bin/python bench/remote.py            # the full run (about 2 minutes)
    .venv/bin/python bench/remote.py --quick    # smaller numbers (about 30 seconds)
    .venv/bin/python bench/remote.py --workers 2 --dir /mnt/fast

A fresh SQLite yard in a temporary folder, served by ``runyard serve`` on loopback (its
own process, ``--workers N``, a token required), driven by ``runyard.connect``:

(a) one client; each run is start + summary + one 10 KiB file + finish;
(b) 8 client processes doing the same at once: runs/s, latency p50/p99 of a whole run,
    errors, and the server's RSS (all its processes) sampled meanwhile;
(c) ``record_runs`` over HTTP in batches of 1,000, beside local ``record_runs``;
(d) uploading a 1 GiB folder (64 files of 16 MiB) against ``cp -r`` of the same folder
    on the server's disk.

Local ``start_run`` (same run shape, the file copied with ``run.upload``) is measured in the
same run, so the share HTTP costs is visible. Targets (issue 15): (a) ≥ 150 runs/s,
(b) ≥ 300 runs/s with p99 ≤ 150 ms and 0 errors, (c) ≥ 80% of local, (d) ≥ 50% of cp,
server RSS ≤ 200 MB under (b).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import runyard

TOKEN = "bench-remote-token"
TARGETS = {
    "a": 150.0,
    "b": 300.0,
    "b_p99_ms": 150.0,
    "c_share": 0.80,
    "d_share": 0.50,
    "rss_mb": 200.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runyard_argv() -> list[str]:
    found = Path(sys.executable).with_name("runyard")
    return [str(found)] if found.exists() else [sys.executable, "-m", "runyard"]


def make_yard(work: Path) -> tuple[Path, str]:
    """A fresh yard with one scenario, config and plan; the plan's id."""
    yard_path = work / "yard"
    runyard.init_yard(yard_path)
    with runyard.open_yard(yard_path) as yard:
        from runyard.registry.configs import add_config
        from runyard.registry.plans import create_plan_in_yard
        from runyard.registry.scenarios import add_scenario

        with yard.write() as conn:
            scenario = add_scenario(conn, "bench")
            config = add_config(conn, '{"size": 1}')
        plan = create_plan_in_yard(yard, scenario.scenario_id, config.config_version_id, {})
        return yard_path, plan.plan_version_id


class Server:
    """``runyard serve`` in its own process group, on a free loopback port."""

    def __init__(self, yard_path: Path, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
        env["RUNYARD_TOKEN"] = TOKEN
        argv = [*runyard_argv(), "--yard", str(yard_path), "serve", "--port", str(self.port)]
        argv += ["--workers", str(workers), "--no-worker"]
        self.process = subprocess.Popen(
            argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("runyard serve exited before answering") from None
                time.sleep(0.1)
        raise RuntimeError("runyard serve did not answer within 30 s")

    def rss_bytes(self) -> int:
        """The resident memory of the server and all its child processes."""
        total = 0
        for pid in [self.process.pid, *children(self.process.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            for child in map(int, text):
                found += [child, *children(child)]
    except OSError:
        pass
    return found


def one_run(yard: Any, plan_id: str, payload: Path, i: int) -> None:
    """The measured unit: start, a summary, one 10 KiB file, finish."""
    with yard.start_run(plan_version_id=plan_id, tags={"bench": "remote"}) as run:
        run.log_summary({"i": i, "fill_rate": (i % 100) / 100})
        run.upload(payload, dest="out.bin")


def timed_runs(yard: Any, plan_id: str, payload: Path, n: int) -> tuple[float, list[float]]:
    latencies = []
    began = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        one_run(yard, plan_id, payload, i)
        latencies.append((time.perf_counter() - t) * 1000)
    return time.perf_counter() - began, latencies


def client_process(
    url: str, plan_id: str, payload: str, n: int, start: Any, out: Any
) -> None:  # pragma: no cover - runs in a child process
    yard = runyard.connect(url, token=TOKEN)
    latencies, errors = [], 0
    start.wait()
    for i in range(n):
        t = time.perf_counter()
        try:
            one_run(yard, plan_id, Path(payload), i)
        except Exception:  # counted, reported
            errors += 1
        latencies.append((time.perf_counter() - t) * 1000)
    yard.close()
    out.put((latencies, errors))


def concurrent_runs(
    url: str, plan_id: str, payload: Path, clients: int, per_client: int, server: Server
) -> tuple[float, list[float], int, int]:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=client_process, args=(url, plan_id, str(payload), per_client, start, out)
        )
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    time.sleep(1.5)  # let every client import runyard and connect
    peak = [server.rss_bytes()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_bytes())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    start.set()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        lat, err = out.get(timeout=600)
        latencies += lat
        errors += err
    elapsed = time.perf_counter() - began
    stop.set()
    sampler.join()
    for p in procs:
        p.join()
    return elapsed, latencies, errors, peak[0]


def records(plan_id: str, n: int, offset: int) -> list[dict[str, Any]]:
    return [
        {
            "plan_version_id": plan_id,
            "summary": {"i": offset + i, "fill_rate": (i % 100) / 100},
            "tags": {"bench": "batch"},
        }
        for i in range(n)
    ]


def batches(record_runs: Callable[[list[dict[str, Any]]], Any], plan_id: str, total: int) -> float:
    began = time.perf_counter()
    for offset in range(0, total, 1000):
        record_runs(records(plan_id, min(1000, total - offset), offset))
    return time.perf_counter() - began


def make_folder(root: Path, files: int, size: int) -> Path:
    folder = root / "upload-src"
    folder.mkdir()
    chunk = os.urandom(1 << 20)
    for i in range(files):
        with open(folder / f"part-{i:03d}.bin", "wb") as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
    return folder


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller numbers")
    parser.add_argument("--workers", type=int, default=2, help="server processes (default 2)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary yard goes")
    args = parser.parse_args(argv)
    n_single = 150 if args.quick else 600
    n_each = 40 if args.quick else 150
    n_batch = 5_000 if args.quick else 20_000
    upload_files = 16 if args.quick else 64  # of 16 MiB: 256 MiB or 1 GiB

    out = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="runyard-bench-remote-", dir=args.dir) as tmp:
        work = Path(tmp)
        yard_path, plan_id = make_yard(work)
        payload = work / "payload.bin"
        payload.write_bytes(os.urandom(10 * 1024))
        server = Server(yard_path, args.workers)
        rows: list[tuple[str, str, str, str]] = []
        try:
            remote = runyard.connect(server.url, token=TOKEN)
            one_run(remote, plan_id, payload, -1)  # warm: connection, first imports
            elapsed, lat = timed_runs(remote, plan_id, payload, n_single)
            a_rate = n_single / elapsed
            with runyard.open_yard(yard_path) as local:
                l_elapsed, l_lat = timed_runs(local, plan_id, payload, n_single)
            local_rate = n_single / l_elapsed
            rows.append(
                (
                    f"(a) 1 client: start + summary + 10 KiB file + finish, {n_single} runs",
                    f"{a_rate:,.0f} runs/s (p50 {pct(lat, 0.5):.1f} ms)",
                    f"≥ {TARGETS['a']:.0f}",
                    verdict(a_rate >= TARGETS["a"]),
                )
            )
            rows.append(
                (
                    "    local start_run, same runs, same process",
                    f"{local_rate:,.0f} runs/s (p50 {pct(l_lat, 0.5):.1f} ms)",
                    "",
                    "",
                )
            )
            b_elapsed, b_lat, b_errors, peak = concurrent_runs(
                server.url, plan_id, payload, args.clients, n_each, server
            )
            b_rate = args.clients * n_each / b_elapsed
            p99 = pct(b_lat, 0.99)
            rows.append(
                (
                    f"(b) {args.clients} client processes × {n_each} runs",
                    f"{b_rate:,.0f} runs/s, p50 {pct(b_lat, 0.5):.0f} ms, p99 {p99:.0f} ms, "
                    f"{b_errors} errors",
                    f"≥ {TARGETS['b']:.0f}, p99 ≤ {TARGETS['b_p99_ms']:.0f} ms, 0 errors",
                    verdict(b_rate >= TARGETS["b"] and p99 <= TARGETS["b_p99_ms"] and not b_errors),
                )
            )
            rss_mb = peak / 1e6
            rows.append(
                (
                    f"    server RSS under (b), {args.workers} worker process(es), peak",
                    f"{rss_mb:,.0f} MB",
                    f"≤ {TARGETS['rss_mb']:.0f} MB",
                    verdict(rss_mb <= TARGETS["rss_mb"]),
                )
            )
            c_remote = n_batch / batches(remote.record_runs, plan_id, n_batch)
            with runyard.open_yard(yard_path) as local:
                c_local = n_batch / batches(local.record_runs, plan_id, n_batch)
            rows.append(
                (
                    f"(c) record_runs over HTTP, batches of 1,000, {n_batch:,} runs",
                    f"{c_remote:,.0f} runs/s = {c_remote / c_local:.0%} of local",
                    f"≥ {TARGETS['c_share']:.0%} of local",
                    verdict(c_remote >= TARGETS["c_share"] * c_local),
                )
            )
            rows.append(("    local record_runs, same batches", f"{c_local:,.0f} runs/s", "", ""))
            folder = make_folder(work, upload_files, 16 << 20)
            size = upload_files * (16 << 20)
            with remote.start_run(plan_version_id=plan_id, tags={"bench": "upload"}) as run:
                began = time.perf_counter()
                run.upload(folder, dest="folder")
                up = time.perf_counter() - began
            os.sync()
            began = time.perf_counter()
            subprocess.run(["cp", "-r", str(folder), str(work / "cp-copy")], check=True)
            os.sync()
            cp = time.perf_counter() - began
            up_rate, cp_rate = size / up / 1e6, size / cp / 1e6
            rows.append(
                (
                    f"(d) upload a {size / 2**30:.2g} GiB folder ({upload_files} × 16 MiB)",
                    f"{up_rate:,.0f} MB/s = {up_rate / cp_rate:.0%} of cp",
                    f"≥ {TARGETS['d_share']:.0%} of cp",
                    verdict(up_rate >= TARGETS["d_share"] * cp_rate),
                )
            )
            rows.append(
                (
                    "    cp -r of the same folder on the server's disk",
                    f"{cp_rate:,.0f} MB/s",
                    "",
                    "",
                )
            )
            remote.close()
        finally:
            server.stop()
            shutil.rmtree(work / "cp-copy", ignore_errors=True)
    table = Table(
        title=f"Recording over HTTP (runyard serve --workers {args.workers}, SQLite, loopback)"
    )
    for column in ("case", "measured", "target", "meets"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)
    out.print(
        f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
        f"MLflow's REST client, for scale: ~20 runs/s single calls, ~50 with log_batch"
    )
    return 0


def verdict(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]NO[/red]"


if __name__ == "__main__":
    sys.exit(main())
