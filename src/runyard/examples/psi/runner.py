"""The runner entry point ``runyard.examples.psi:run``: a plan in, psi.csv and summary.json out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from runyard.errors import Invalid
from runyard.examples.psi.model import load_params, load_policy, load_scenario
from runyard.examples.psi.outputs import kpis, write_outputs, write_summary
from runyard.examples.psi.simulate import simulate


class RunnerContextLike(Protocol):
    """What a runner is handed: where to write, and the plan's config, data and params."""

    @property
    def run_dir(self) -> Path: ...

    @property
    def config(self) -> Mapping[str, Any]: ...

    @property
    def scenario_data(self) -> Mapping[str, Any] | None: ...

    @property
    def params(self) -> Mapping[str, Any]: ...


def run(context: RunnerContextLike) -> dict[str, Any]:
    """Simulate the plan; write ``psi.csv`` and ``summary.json`` to the run dir; the summary."""
    if context.scenario_data is None:
        raise Invalid(
            "this plan's scenario has no data; add it with `runyard scenario add NAME --data FILE`"
        )
    scenario = load_scenario(context.scenario_data)
    policy = load_policy(context.config)
    params = load_params(context.params)
    result = simulate(scenario, policy, horizon=params.horizon)
    summary = kpis(result, policy)
    write_outputs(result, scenario, context.run_dir)
    write_summary(summary, context.run_dir)
    return summary
