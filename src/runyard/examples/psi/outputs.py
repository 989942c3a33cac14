"""What a PSI run leaves behind: the KPIs (summary.json) and the PSI table (psi.csv)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from runyard.errors import Invalid
from runyard.examples.psi.model import FloatArray, Policy, ScenarioData
from runyard.examples.psi.simulate import PsiResult
from runyard.fsutil import write_atomic

SUMMARY_SCHEMA_VERSION = 1
CSV_COLUMNS = ("sku", "period", "demand", "production", "arrivals", "sales", "inventory", "backlog")


def _units(value: Any) -> float:
    return round(float(value), 4)


def on_time_sales(result: PsiResult) -> FloatArray:
    """Units of each period's own demand sold in that period.

    Sales serve the oldest backlog first, so what a period sells beyond the backlog it
    carried in serves its own demand.
    """
    return np.maximum(result.sales - result.backlog_in, 0.0)


def kpis(result: PsiResult, policy: Policy) -> dict[str, Any]:
    """The run summary: volumes, fill rate, stockouts, inventory, turns and cost."""
    n_skus, n_periods = result.demand.shape
    demanded = float(result.demand.sum())
    fill_rate = 1.0 if demanded == 0 else float(on_time_sales(result).sum()) / demanded
    sold = float(result.sales.sum())
    stock_unit_periods = float(result.inventory.sum())
    backlog_unit_periods = float(result.backlog.sum())
    produced = float(result.production.sum())
    average_inventory = stock_unit_periods / n_periods
    turns = None if average_inventory == 0 else round(sold / average_inventory, 3)
    holding = policy.holding_cost * stock_unit_periods
    backorder = policy.backorder_cost * backlog_unit_periods
    production = policy.production_cost * produced
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "skus": n_skus,
        "periods": n_periods,
        "total_demand": _units(demanded),
        "total_sales": _units(sold),
        "total_production": _units(produced),
        "ending_inventory": _units(result.inventory[:, -1].sum()),
        "ending_backlog": _units(result.backlog[:, -1].sum()),
        "fill_rate": round(fill_rate, 4),
        "service_target": policy.service_target,
        "service_target_met": fill_rate >= policy.service_target,  # unrounded
        "stockout_periods": int(np.count_nonzero(result.backlog > 0)),
        "average_inventory": round(average_inventory, 2),
        "inventory_turns": turns,
        "cost": {
            "holding": round(holding, 2),
            "backorder": round(backorder, 2),
            "production": round(production, 2),
        },
        "total_cost": round(holding + backorder + production, 2),
    }


def _column(values: FloatArray) -> list[Any]:
    """Cells of one quantity, SKU-major; whole numbers are written without a decimal point."""
    flat = values.ravel()
    if np.array_equal(flat, np.floor(flat)):
        return flat.astype(np.int64).tolist()
    return flat.tolist()


def psi_csv(result: PsiResult, scenario: ScenarioData) -> bytes:
    """The PSI table as CSV: one row per SKU and period, SKU-major, in scenario order."""
    n_skus, n_periods = result.demand.shape
    if n_skus != len(scenario.skus) or n_periods > len(scenario.periods):
        raise Invalid(
            f"the result ({n_skus} SKUs × {n_periods} periods) does not belong to this "
            f"scenario ({len(scenario.skus)} SKUs × {len(scenario.periods)} periods)"
        )
    skus = [sku for sku in scenario.skus for _ in range(n_periods)]
    periods = scenario.periods[:n_periods] * n_skus
    quantities = (
        result.demand,
        result.production,
        result.arrivals,
        result.sales,
        result.inventory,
        result.backlog,
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(zip(skus, periods, *(_column(q) for q in quantities), strict=True))
    return out.getvalue().encode("utf-8")


def write_outputs(result: PsiResult, scenario: ScenarioData, run_dir: Path) -> None:
    """Write ``psi.csv`` into ``run_dir`` (atomically)."""
    write_atomic(run_dir / "psi.csv", psi_csv(result, scenario))


def write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    """Write ``summary.json`` into ``run_dir`` (atomically)."""
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_atomic(run_dir / "summary.json", text.encode("utf-8"))
