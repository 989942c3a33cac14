"""runyard: a registry of pipeline runs with plan lineage, and a safe lifecycle for run folders.

The public Python API::

    import runyard

    with runyard.open_yard() as yard:
        with yard.start_run(plan_version_id="pv-…", group="CH01/003") as run:
            (run.path / "out.txt").write_text("…")
            run.log_summary({"fill_rate": 0.97})
"""

from runyard.errors import RunyardError
from runyard.models import Run, RunStatus
from runyard.tracking import RunHandle
from runyard.yard import Yard, init_yard, open_yard

__all__ = ["Run", "RunHandle", "RunStatus", "RunyardError", "Yard", "init_yard", "open_yard"]
__version__ = "0.1.0"
