"""``/metrics``: Prometheus text, collected from the registry on every scrape.

A custom collector rather than process-local counters: every server process, and every
restart, reads the same registry, so two servers behind one address agree.

The one exception is the object store's traffic (``runyard_store_bytes_*_total``): bytes
sent and fetched are not in the registry, so they are this process's own counters
(``runyard.store.counters``), read at scrape time. Like any Prometheus counter they
start again at zero when the process does, and each server process reports its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from runyard.durability.backup import last_good_backup
from runyard.registry.metrics import read_figures
from runyard.store import counters as store_counters

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from runyard.yard import Yard


class RegistryCollector(Collector):
    def __init__(self, yard: Yard) -> None:
        self.yard = yard

    def collect(self) -> Iterator[Metric]:
        with self.yard.read() as conn:
            figures = read_figures(conn)
        runs = GaugeMetricFamily(
            "runyard_runs", "Runs in the registry by status", labels=["status"]
        )
        for status, count in sorted(figures.runs_by_status.items()):
            runs.add_metric([status], count)
        yield runs
        where = GaugeMetricFamily(
            "runyard_runs_by_location", "Runs by location", labels=["location"]
        )
        for location, count in sorted(figures.runs_by_location.items()):
            where.add_metric([location], count)
        yield where
        yield GaugeMetricFamily("runyard_active_runs", "Active runs", value=figures.active_runs)
        jobs = GaugeMetricFamily("runyard_jobs", "Jobs by status", labels=["status"])
        for status, count in sorted(figures.jobs_by_status.items()):
            jobs.add_metric([status], count)
        yield jobs
        durations = HistogramMetricFamily(
            "jobs_duration_seconds", "Durations of finished jobs", labels=["type"]
        )
        for job_type, histogram in sorted(figures.job_durations.items()):
            buckets = [
                ("+Inf" if bound == float("inf") else repr(bound), count)
                for bound, count in histogram.buckets
            ]
            durations.add_metric([job_type], buckets, histogram.total)
        yield durations
        executions = GaugeMetricFamily(
            "runyard_lifecycle_executions",
            "Executed archives, restores, recovers, retention passes and purges",
            labels=["kind", "status"],
        )
        moved = GaugeMetricFamily(
            "runyard_lifecycle_runs_moved", "Runs moved (or deleted) by them", labels=["kind"]
        )
        size = GaugeMetricFamily(
            "runyard_lifecycle_bytes", "Bytes moved (or deleted) by them", labels=["kind"]
        )
        totals: dict[str, tuple[int, int]] = {}
        for (kind, status), (count, runs_moved, size_moved) in sorted(figures.executions.items()):
            executions.add_metric([kind, status], count)
            before = totals.get(kind, (0, 0))
            totals[kind] = (before[0] + runs_moved, before[1] + size_moved)
        for kind, (runs_moved, size_moved) in sorted(totals.items()):
            moved.add_metric([kind], runs_moved)
            size.add_metric([kind], size_moved)
        yield executions
        yield moved
        yield size
        skipped = GaugeMetricFamily(
            "runyard_lifecycle_runs_skipped",
            "Runs kept by each guard, over every executed archive and retention pass",
            labels=["reason"],
        )
        for reason, count in sorted(figures.skipped_by_reason.items()):
            skipped.add_metric([reason], count)
        yield skipped
        backup = last_good_backup(self.yard.settings)
        if backup is not None:
            yield GaugeMetricFamily(
                "runyard_last_good_backup_timestamp_seconds",
                "When the newest verified registry backup was taken",
                value=backup.timestamp(),
            )


class StoreTrafficCollector(Collector):
    """Bytes this process moved to and from object stores (archives, restores, checks,
    in the server's own jobs and requests). Importing the counters loads no boto3."""

    def collect(self) -> Iterator[Metric]:
        # CounterMetricFamily adds the ``_total`` suffix to the sample's name.
        yield CounterMetricFamily(
            "runyard_store_bytes_sent",
            "Bytes of objects uploaded to archive stores by this process",
            value=store_counters.bytes_sent.value,
        )
        yield CounterMetricFamily(
            "runyard_store_bytes_fetched",
            "Bytes of objects downloaded from archive stores by this process",
            value=store_counters.bytes_fetched.value,
        )


def metrics_registry(yard: Yard) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RegistryCollector(yard))
    registry.register(StoreTrafficCollector())
    return registry
