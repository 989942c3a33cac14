"""The inputs of the PSI example: scenario data, the policy (config) and run params.

Each is a strict pydantic model (no coercion of strings or booleans into numbers)
whose loader turns every validation problem into one ``Invalid`` that names the
field, so a bad JSON file is reported in terms its author can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from runyard.errors import Invalid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_LEAD_TIME = 1000  # periods; keeps lead times far inside int64


def _integral_decimal(value: Any) -> Any:
    """Accept ``Decimal("4")`` where an int is expected (canonical JSON parses numbers so)."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


def _periods(value: Any, where: str) -> Any:
    value = _integral_decimal(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected a whole number of periods, got {value!r}")
    if not 0 <= value <= MAX_LEAD_TIME:
        raise ValueError(f"{where}: expected 0 to {MAX_LEAD_TIME} periods, got {value}")
    return value


def _lead_time(value: Any) -> Any:
    """One lead time for every SKU, or a mapping SKU → lead time; clear errors for both."""
    if isinstance(value, Mapping):
        return {sku: _periods(v, f"lead_time[{sku!r}]") for sku, v in value.items()}
    return _periods(value, "lead_time")


Quantity = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ScenarioData(_Strict):
    """One scenario: SKUs, period labels and per-SKU demand, stock, capacity, lead time."""

    description: str = ""
    skus: list[str] = Field(min_length=1)
    periods: list[str] = Field(min_length=1)
    demand: dict[str, list[Quantity]]
    initial_inventory: dict[str, Quantity]
    capacity: dict[str, Quantity]
    lead_time: Annotated[int | dict[str, int], BeforeValidator(_lead_time)]

    @model_validator(mode="after")
    def _shapes_agree(self) -> Self:
        _unique(self.skus, "skus", "SKU")
        _unique(self.periods, "periods", "period label")
        _one_per_sku(self.demand, self.skus, "demand", f"a list of {len(self.periods)} numbers")
        for sku in self.skus:
            row = self.demand[sku]
            if len(row) != len(self.periods):
                raise ValueError(
                    f"demand[{sku!r}]: expected {len(self.periods)} values "
                    f"(one per entry of `periods`), got {len(row)}"
                )
        _one_per_sku(self.initial_inventory, self.skus, "initial_inventory", "a number")
        _one_per_sku(self.capacity, self.skus, "capacity", "a number")
        if isinstance(self.lead_time, dict):
            _one_per_sku(self.lead_time, self.skus, "lead_time", "an integer")
        return self

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
        """Demand (SKU × period), initial inventory, capacity and lead time, in ``skus`` order."""
        demand = np.array([self.demand[s] for s in self.skus], dtype=np.float64)
        demand = demand.reshape(len(self.skus), len(self.periods))
        initial = np.array([self.initial_inventory[s] for s in self.skus], dtype=np.float64)
        capacity = np.array([self.capacity[s] for s in self.skus], dtype=np.float64)
        if isinstance(self.lead_time, dict):
            lead = np.array([self.lead_time[s] for s in self.skus], dtype=np.int64)
        else:
            lead = np.full(len(self.skus), self.lead_time, dtype=np.int64)
        return demand, initial, capacity, lead


class Policy(_Strict):
    """The planning policy and cost rates; every field has a default."""

    safety_stock_periods: Quantity = 1.0
    lot_size: Annotated[int, BeforeValidator(_integral_decimal), Field(ge=1)] = 1
    service_target: Annotated[float, Field(ge=0, le=1)] = 0.95
    holding_cost: Quantity = 1.0
    backorder_cost: Quantity = 5.0
    production_cost: Quantity = 0.0


class RunParams(_Strict):
    """Plan parameters the runner understands."""

    horizon: Annotated[int, BeforeValidator(_integral_decimal), Field(ge=1)] | None = None


def _unique(values: list[str], field: str, what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if not value:
            raise ValueError(f"{field}: a {what} cannot be empty")
        if value in seen:
            raise ValueError(f"{field}: {what} {value!r} appears twice")
        seen.add(value)


def _one_per_sku(mapping: Mapping[str, Any], skus: list[str], field: str, each: str) -> None:
    missing = [s for s in skus if s not in mapping]
    known = set(skus)
    extra = [s for s in mapping if s not in known]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing {_names(missing)}")
        if extra:
            problems.append(f"unknown {_names(extra)}")
        raise ValueError(
            f"{field}: expected one entry per SKU in `skus` ({len(skus)} entries, "
            f"each {each}); {' and '.join(problems)}"
        )


def _names(values: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"SKU {shown}{more}" if len(values) == 1 else f"SKUs {shown}{more}"


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f"[{part!r}]"
        else:
            out = part
    return out


def _describe(exc: ValidationError, what: str, known: list[str] | None = None) -> Invalid:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] == "value_error":
            problems.append(str(error["ctx"]["error"]))
        elif error["type"] == "extra_forbidden" and known is not None:
            problems.append(f"unknown key {loc[-1]!r} (known keys: {', '.join(known)})")
        else:
            where = _location(loc) or what
            problems.append(f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}")
    shown = "; ".join(problems[:5])
    if len(problems) > 5:
        shown += f"; and {len(problems) - 5} more problems"
    return Invalid(f"{what} is invalid: {shown}")


def _as_dict(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise Invalid(f"{what} must be a JSON object, not {type(data).__name__}")
    return dict(data)


def load_scenario(data: Mapping[str, Any]) -> ScenarioData:
    """Validate scenario data (a parsed JSON object); ``Invalid`` names each bad field."""
    try:
        return ScenarioData.model_validate(_as_dict(data, "scenario data"))
    except ValidationError as exc:
        raise _describe(exc, "scenario data") from None


def load_policy(config: Mapping[str, Any]) -> Policy:
    """Validate a policy config; missing keys take their defaults, unknown keys are refused."""
    try:
        return Policy.model_validate(_as_dict(config, "config"))
    except ValidationError as exc:
        raise _describe(exc, "config", known=list(Policy.model_fields)) from None


def load_params(params: Mapping[str, Any]) -> RunParams:
    """Validate plan params; unknown keys are refused."""
    try:
        return RunParams.model_validate(_as_dict(params, "params"))
    except ValidationError as exc:
        raise _describe(exc, "params", known=list(RunParams.model_fields)) from None
