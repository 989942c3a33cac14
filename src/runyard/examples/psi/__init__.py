"""The PSI example: a production–sales–inventory simulation, run as ``runyard.examples.psi:run``.

See docs/psi.md for the data format, the policy, the equations and the outputs.
"""

from runyard.examples.psi.generate import generate_large
from runyard.examples.psi.model import Policy, RunParams, ScenarioData, load_policy, load_scenario
from runyard.examples.psi.outputs import kpis, write_outputs
from runyard.examples.psi.runner import RunnerContextLike, run
from runyard.examples.psi.shipped import example_path
from runyard.examples.psi.simulate import PsiResult, simulate

__all__ = [
    "Policy",
    "PsiResult",
    "RunParams",
    "RunnerContextLike",
    "ScenarioData",
    "example_path",
    "generate_large",
    "kpis",
    "load_policy",
    "load_scenario",
    "run",
    "simulate",
    "write_outputs",
]
