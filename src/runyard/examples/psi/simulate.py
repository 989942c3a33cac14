"""The PSI simulation: an order-up-to production policy run period by period.

State is one vector per quantity (one entry per SKU); the loop runs over periods
only, so 1,000 SKUs cost about as much as one. Every step is a plain NumPy
operation, which makes the result deterministic for a given input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runyard.errors import Invalid
from runyard.examples.psi.model import FloatArray, IntArray, Policy, ScenarioData

# A shortfall is rounded to this many decimals before it is rounded up to whole lots,
# so that float noise (3 × 0.1 − 0.3 = 5.6e-17) never orders one spurious lot.
_SHORTFALL_DECIMALS = 9


@dataclass(frozen=True)
class PsiResult:
    """Per SKU and period (arrays of shape SKU × period); stock and backlog at period end."""

    demand: FloatArray
    production: FloatArray  # started in the period
    arrivals: FloatArray  # production that became available in the period
    sales: FloatArray
    inventory: FloatArray
    backlog: FloatArray
    initial_inventory: FloatArray  # per SKU, on hand before the first period
    lead_time: IntArray  # per SKU

    @property
    def backlog_in(self) -> FloatArray:
        """Backlog carried into each period (zero before the first)."""
        out = np.zeros_like(self.backlog)
        out[:, 1:] = self.backlog[:, :-1]
        return out

    @property
    def inventory_in(self) -> FloatArray:
        """On-hand stock carried into each period."""
        out = np.empty_like(self.inventory)
        out[:, 0] = self.initial_inventory
        out[:, 1:] = self.inventory[:, :-1]
        return out


def simulate(scenario: ScenarioData, policy: Policy, horizon: int | None = None) -> PsiResult:
    """Simulate the first ``horizon`` periods (all when None or larger than the scenario).

    The forecast is the average demand over all the scenario's periods, so a shorter
    horizon gives exactly the first periods of the full simulation.
    """
    demand_all, initial, capacity, lead = scenario.arrays()
    n_skus, n_periods = demand_all.shape
    if horizon is not None:
        if horizon < 1:
            raise Invalid(f"horizon must be at least 1 period, got {horizon}")
        n_periods = min(horizon, n_periods)
    demand = demand_all[:, :n_periods]
    # Order-up-to level per SKU: the forecast (average demand per period) over the lead
    # time plus the current period, plus the safety stock.
    target = demand_all.mean(axis=1) * (lead + 1 + policy.safety_stock_periods)
    lot = float(policy.lot_size)
    # The largest whole number of lots that fits the capacity: production never exceeds it.
    lot_capacity = np.floor(capacity / lot) * lot

    shape = (n_skus, n_periods)
    production = np.zeros(shape)
    arrivals = np.zeros(shape)
    sales = np.zeros(shape)
    inventory = np.zeros(shape)
    backlog = np.zeros(shape)

    rows = np.arange(n_skus)
    on_hand = initial.copy()
    waiting = np.zeros(n_skus)  # backlog carried in
    on_order = np.zeros(n_skus)  # started, not yet arrived
    for t in range(n_periods):
        position = on_hand + on_order - waiting
        shortfall = np.round(np.maximum(target - position, 0.0) / lot, _SHORTFALL_DECIMALS)
        started = np.minimum(np.ceil(shortfall) * lot, lot_capacity)
        production[:, t] = started
        on_order += started

        source = t - lead
        arrived = np.where(source >= 0, production[rows, np.maximum(source, 0)], 0.0)
        on_order -= arrived
        arrivals[:, t] = arrived

        available = on_hand + arrived
        wanted = waiting + demand[:, t]
        sold = np.minimum(wanted, available)
        on_hand = available - sold
        waiting = wanted - sold
        sales[:, t] = sold
        inventory[:, t] = on_hand
        backlog[:, t] = waiting

    return PsiResult(
        demand=demand.copy(),
        production=production,
        arrivals=arrivals,
        sales=sales,
        inventory=inventory,
        backlog=backlog,
        initial_inventory=initial,
        lead_time=lead,
    )
