"""The one exception tree of runyard.

Core code raises these; only adapters (the CLI, later the web API) map them to
exit codes or HTTP statuses, through ``exit_code`` and ``code``::

    RunyardError                    exit 1   "error"
    ├── NotFound                    exit 3   "not_found"     unknown id, no yard here
    │   └── YardNotFound
    ├── Refused                     exit 4   "refused"       the input is fine, the state says no
    │   ├── Conflict                         "conflict"      exists already, bad status move
    │   ├── Locked                           "locked"        the scenario is locked
    │   ├── LegacyPathClosed                 "legacy_path_closed"  a run without a plan
    │   ├── Unauthorized                     "unauthorized"  a web write without the token (401)
    │   └── Forbidden                        "forbidden"     a web write failing CSRF/Origin (403)
    ├── Invalid                     exit 5   "invalid"       the input itself is wrong
    │   ├── ConfigFileError                  "bad_config_file"     runyard.toml
    │   └── ManifestError                    "bad_manifest"        a run.json
    ├── RegistryStateError          exit 6   "registry_state"  the database needs attention
    │   ├── SchemaOutdated                   "schema_outdated"     run `runyard db upgrade`
    │   ├── NotARegistry                     "not_a_registry"
    │   ├── ForeignRegistry                  "other_yard"          another yard's registry
    │   └── CheckFailed                      "check_failed"        `runyard check` found mismatches
    └── JobFailed                   exit 7   "job_failed"    a job waited for did not succeed

Exit code 2 is reserved for usage errors (unknown option, missing argument),
which the command-line parser reports itself.
"""

from __future__ import annotations


class RunyardError(Exception):
    """Base of every error runyard raises on purpose."""

    exit_code = 1
    code = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class NotFound(RunyardError):
    exit_code = 3
    code = "not_found"


class YardNotFound(NotFound):
    code = "yard_not_found"


class Refused(RunyardError):
    exit_code = 4
    code = "refused"


class Conflict(Refused):
    code = "conflict"


class Locked(Refused):
    code = "locked"


class LegacyPathClosed(Refused):
    code = "legacy_path_closed"


class Unauthorized(Refused):
    """A web write without ``RUNYARD_TOKEN`` (HTTP 401)."""

    code = "unauthorized"


class Forbidden(Refused):
    """A web write whose CSRF token or ``Origin`` does not check out (HTTP 403)."""

    code = "forbidden"


class Invalid(RunyardError):
    exit_code = 5
    code = "invalid"


class ConfigFileError(Invalid):
    code = "bad_config_file"


class ManifestError(Invalid):
    code = "bad_manifest"


class RegistryStateError(RunyardError):
    exit_code = 6
    code = "registry_state"


class SchemaOutdated(RegistryStateError):
    code = "schema_outdated"


class NotARegistry(RegistryStateError):
    code = "not_a_registry"


class ForeignRegistry(RegistryStateError):
    code = "other_yard"


class JobFailed(RunyardError):
    """A job the command waited for (``--wait``) ended failed or cancelled."""

    exit_code = 7
    code = "job_failed"


class CheckFailed(RegistryStateError):
    """``runyard check`` found the registry and the disk disagreeing (it lists how)."""

    code = "check_failed"
