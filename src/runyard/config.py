"""Settings: a yard's ``runyard.toml`` merged with ``RUNYARD_*`` environment variables.

One ``Settings`` object is built by ``load_settings`` and passed to whatever
needs it; nothing here is global. The file is validated strictly (unknown keys
and wrong types are refused, naming the file, the key and the reason) because a
typo in a guard setting would otherwise silently fall back to a default.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runyard.canonical import MAX_JSON_BYTES
from runyard.errors import ConfigFileError, Invalid, YardNotFound
from runyard.fsutil import read_regular_file
from runyard.limits import MAX_COUNT, MAX_KEEP_LAST_RUNS, MAX_KEEP_RECENT_MINUTES, MAX_SECONDS

if TYPE_CHECKING:
    from runyard.store.s3 import ObjectStore

__all__ = ["MAX_COUNT", "MAX_KEEP_LAST_RUNS", "MAX_KEEP_RECENT_MINUTES", "MAX_SECONDS"]

CONFIG_FILENAME = "runyard.toml"
DEFAULT_SQLITE_FILENAME = "registry.db"

PositiveInt = Annotated[int, Field(gt=0, le=MAX_COUNT)]
Seconds = Annotated[int, Field(gt=0, le=MAX_SECONDS)]


def _check_regex(value: str, key: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression for {key}: {value!r}: {exc}") from exc
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ReferenceRule(_Strict):
    """A file outside the runs that names a run: every file matching ``glob``,
    read as JSON, holds a run id at the dotted ``json_path``."""

    glob: str = Field(min_length=1)
    json_path: str = Field(min_length=1)


class DbSection(_Strict):
    url: str | None = None


class RetentionSection(_Strict):
    max_active_runs: PositiveInt | None = None


RUNNER_PLACEHOLDERS = {
    "run_dir": "the run's folder",
    "run_id": "the run's id",
    "config": "config.json in the run folder: the config version's snapshot",
    "params": "params.json in the run folder: the plan's parameters",
    "plan": "plan.json in the run folder: the plan version",
    "scenario_data": "the scenario's data (a JSON file), or an empty string if it has none",
    "python": "the Python that runs runyard (sys.executable)",
}
"""The ``{name}`` placeholders a command runner's argv may use."""

RUNNER_NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
_ENTRY_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class RunnerSection(_Strict):
    """``[runners.NAME]``: how a plan's runs are executed."""

    kind: Literal["command", "python"]
    argv: list[str] | None = None
    entry: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: Seconds = 3600

    @model_validator(mode="after")
    def _fits_its_kind(self) -> RunnerSection:
        if self.kind == "command":
            if not self.argv or self.entry is not None:
                raise ValueError("a command runner needs argv (a non-empty list) and no entry")
            for part in self.argv:
                for _, name, spec, conv in string.Formatter().parse(part):
                    if name is not None and (name not in RUNNER_PLACEHOLDERS or spec or conv):
                        known = ", ".join("{" + p + "}" for p in RUNNER_PLACEHOLDERS)
                        raise ValueError(f"unknown placeholder {{{name}}} in argv; use {known}")
        else:
            if self.entry is None or self.argv is not None:
                raise ValueError("a python runner needs entry ('module:function') and no argv")
            if not _ENTRY_RE.fullmatch(self.entry):
                raise ValueError(f"entry must be 'module:function', not {self.entry!r}")
        return self


DEFAULT_RUNNER = RunnerSection(kind="python", entry="runyard.examples.psi:run")
"""The runner a plan gets when runyard.toml has no ``[runners.default]``: the PSI example."""


class JobsSection(_Strict):
    max_attempts: Annotated[int, Field(gt=0, le=100)] = 1
    heartbeat_seconds: Annotated[int, Field(gt=0, le=3600)] = 2
    lost_after_seconds: Seconds = 30

    @model_validator(mode="after")
    def _lost_after_several_beats(self) -> JobsSection:
        if self.lost_after_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                "lost_after_seconds must be at least twice heartbeat_seconds, or the jobs "
                "of a worker that is alive would be taken for lost"
            )
        return self


KPI_NAME_MAX = 200
DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024**3


class WebSection(_Strict):
    """``[web]``: the server's access and upload rules (docs/remote.md)."""

    # With any token configured, reads need one too unless this is true.
    public_read: bool = False
    # The largest file one ``PUT /runs/{id}/files/...`` may write (413 above it).
    max_upload_bytes: Annotated[int, Field(gt=0, le=2**50)] = DEFAULT_MAX_UPLOAD_BYTES


_REGION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ArchiveSection(_Strict):
    """``[archive]``: where archive batches go. Without ``store``, into ``archive_root``;
    with it, into that bucket (docs/configuration.md). No credentials here: they come
    from the AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)."""

    store: str | None = None
    endpoint_url: str | None = None
    region: str | None = None

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from runyard.store.url import parse_store_url

        try:
            return str(parse_store_url(value))  # normalised: no trailing slash
        except Invalid as exc:
            raise ValueError(exc.message) from None

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValueError(f"endpoint_url {value!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint_url must be an http:// or https:// URL, not {value!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "endpoint_url may not hold credentials: they come from AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            )
        if parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError(f"endpoint_url is a scheme, a host and a port only, not {value!r}")
        return value.rstrip("/")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION_RE.fullmatch(value):
            raise ValueError(f"region {value!r}: letters, digits, '-', '_' and '.', 1 to 64")
        return value

    # endpoint_url and region without a store are fine: ``archive --to s3://…`` uses them
    # for one batch while the others stay in the archive root.


def archive_section(
    store: str | None, endpoint_url: str | None = None, region: str | None = None
) -> ArchiveSection:
    """An ``[archive]`` table from separate values (``runyard init --archive-store``);
    Invalid, saying why, when one is wrong."""
    try:
        return ArchiveSection(store=store, endpoint_url=endpoint_url, region=region)
    except ValidationError as exc:
        raise Invalid(
            "; ".join(err["msg"].removeprefix("Value error, ") for err in exc.errors())
        ) from None


class KpiSection(_Strict):
    """``[kpis.NAME]``: how to read one KPI (a numeric value of run summaries, dotted for
    nested keys). ``better`` says which way is good; ``label`` and ``unit`` are for people."""

    better: Literal["higher", "lower"] | None = None
    label: str | None = Field(default=None, min_length=1, max_length=200)
    unit: str | None = Field(default=None, min_length=1, max_length=50)


class YardFile(_Strict):
    """The contents of ``runyard.toml``; every key is documented in docs/configuration.md."""

    yard_id: str = Field(min_length=1)
    preset: Literal["planning", "video"] = "planning"
    runs_root: str = Field(default="runs", min_length=1)
    archive_root: str = Field(default="_archive", min_length=1)
    logs_dir: str = Field(default="logs", min_length=1)
    group_pattern: str | None = None
    legacy_patterns: list[str] = Field(default_factory=list)
    keep_recent_minutes: Annotated[int, Field(ge=0, le=MAX_KEEP_RECENT_MINUTES)] = 60
    keep_last_runs: Annotated[int, Field(ge=0, le=MAX_KEEP_LAST_RUNS)] = 2
    keep_marker: str = Field(default=".keep", min_length=1)
    references: list[ReferenceRule] = Field(default_factory=list)
    db: DbSection = Field(default_factory=DbSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    runners: dict[str, RunnerSection] = Field(default_factory=dict)
    jobs: JobsSection = Field(default_factory=JobsSection)
    kpis: dict[str, KpiSection] = Field(default_factory=dict)
    web: WebSection = Field(default_factory=WebSection)
    archive: ArchiveSection = Field(default_factory=ArchiveSection)

    @field_validator("kpis")
    @classmethod
    def _kpi_names(cls, value: dict[str, KpiSection]) -> dict[str, KpiSection]:
        for name in value:
            if not name or len(name) > KPI_NAME_MAX or not name.isprintable():
                raise ValueError(
                    f"invalid KPI name {name!r}: 1 to {KPI_NAME_MAX} printable characters"
                )
        return value

    @field_validator("runners")
    @classmethod
    def _runner_names(cls, value: dict[str, RunnerSection]) -> dict[str, RunnerSection]:
        for name in value:
            if not re.fullmatch(RUNNER_NAME_PATTERN, name):
                raise ValueError(f"invalid runner name {name!r}: letters, digits, '_', '.', '-'")
        return value

    @field_validator("group_pattern")
    @classmethod
    def _group_pattern_is_regex(cls, value: str | None) -> str | None:
        return None if value is None else _check_regex(value, "group_pattern")

    @field_validator("legacy_patterns")
    @classmethod
    def _legacy_patterns_are_regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _check_regex(pattern, "legacy_patterns")
        return value


class EnvOverrides(BaseModel):
    """``RUNYARD_*`` environment variables; each wins over the file.

    A plain model, filled by ``read_env_overrides`` only: a BaseSettings would also read
    the process environment, even when the caller passed its own ``environ``.
    """

    model_config = ConfigDict(extra="ignore")

    yard: str | None = None
    db: str | None = None
    max_runs: PositiveInt | None = None
    skip_simulation: bool = False
    token: str | None = None


ENV_VARIABLES = {
    "RUNYARD_YARD": "yard folder (instead of searching upward for runyard.toml)",
    "RUNYARD_DB": "registry database: SQLAlchemy URL or SQLite file path",
    "RUNYARD_MAX_RUNS": "cap on active runs (retention.max_active_runs)",
    "RUNYARD_SKIP_SIMULATION": "skip the runner of planning jobs (tests, CI)",
    "RUNYARD_TOKEN": "bootstrap admin token of the web server; the token a client sends",
    "RUNYARD_SERVER": "a runyard server's URL: the CLI and runyard.connect() work through it",
}


@dataclass(frozen=True)
class Settings:
    """A yard's resolved settings: absolute paths, compiled patterns, env applied."""

    yard_path: Path
    file: YardFile
    db_url: str
    db_url_source: str
    max_active_runs: int | None
    skip_simulation: bool
    token: str | None

    @property
    def config_file(self) -> Path:
        return self.yard_path / CONFIG_FILENAME

    @property
    def yard_id(self) -> str:
        return self.file.yard_id

    @property
    def runs_root(self) -> Path:
        return self._resolve(self.file.runs_root)

    @property
    def archive_root(self) -> Path:
        return self._resolve(self.file.archive_root)

    @property
    def logs_dir(self) -> Path:
        return self._resolve(self.file.logs_dir)

    @property
    def group_regex(self) -> re.Pattern[str] | None:
        pattern = self.file.group_pattern
        return re.compile(pattern) if pattern else None

    def batch_runs_dir(self, batch_id: str) -> Path:
        """Where a batch keeps its runs: ``<archive_root>/<batch_id>/<runs_root>``.

        The runs root's own path (relative to the yard) is kept inside the batch, as the
        seed's ``_archive/<timestamp>/.../runs/<run_id>`` layout does.
        """
        runs = Path(self.file.runs_root)
        inner = Path(runs.name) if runs.is_absolute() else runs
        return self.archive_root / batch_id / inner

    def run_dir(self, run_id: str, batch_id: str | None = None) -> Path:
        """The folder of a run: in the runs root, or in its archive batch."""
        if batch_id is None:
            return self.runs_root / run_id
        return self.batch_runs_dir(batch_id) / run_id

    def runner(self, name: str) -> RunnerSection:
        """The runner called ``name``; ``default`` is the PSI example unless configured."""
        found = self.file.runners.get(name)
        if found is None and name == "default":
            return DEFAULT_RUNNER
        if found is None:
            known = ", ".join(sorted({"default", *self.file.runners})) or "default"
            raise Invalid(
                f"no runner {name!r} in {self.config_file}",
                hint=f"add a [runners.{name}] table, or use one of: {known}",
            )
        return found

    @property
    def kpis(self) -> dict[str, KpiSection]:
        """The configured KPIs (``[kpis.NAME]``), in the order the file lists them."""
        return dict(self.file.kpis)

    @property
    def aggregates_dir(self) -> Path:
        return self.yard_path / "aggregates"

    @property
    def jobs_log_dir(self) -> Path:
        return self.logs_dir / "jobs"

    @property
    def scenario_data_dir(self) -> Path:
        """Scenario data as files, by digest, for runners to read."""
        return self.yard_path / "scenario_data"

    def object_store(self, **options: Any) -> ObjectStore | None:
        """The archive store of ``[archive] store`` (boto3 loaded now), or None when
        batches stay in ``archive_root``. ``options`` go to ``ObjectStore``."""
        archive = self.file.archive
        if archive.store is None:
            return None
        from runyard.store import open_store

        return open_store(
            archive.store, endpoint_url=archive.endpoint_url, region=archive.region, **options
        )

    def _resolve(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.yard_path / path


def _env_error(exc: ValidationError) -> Invalid:
    parts = []
    for err in exc.errors():
        name = "RUNYARD_" + str(err["loc"][0]).upper() if err["loc"] else "environment"
        parts.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
    return Invalid("bad environment variable: " + "; ".join(parts))


def read_env_overrides(environ: Mapping[str, str] | None = None) -> EnvOverrides:
    """Parse ``RUNYARD_*`` variables (from ``environ`` when given, else the process)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in EnvOverrides.model_fields:
        raw = env.get("RUNYARD_" + field.upper())
        if raw is not None and raw != "":
            values[field] = raw
    try:
        # Pass values explicitly so a caller-supplied environ is honoured.
        return EnvOverrides.model_validate(values)
    except ValidationError as exc:
        raise _env_error(exc) from None


def _format_file_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif err["type"] == "missing":
            reason = "missing required key"
        else:
            reason = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] != "value_error":
                reason += f" (got {err['input']!r})"
        lines.append(f"{path}: key `{key}`: {reason}")
    return "\n".join(lines)


def parse_yard_file(path: Path) -> YardFile:
    """Read and validate ``runyard.toml``; raise ConfigFileError naming file, key, reason."""
    try:
        # Never blocks: a FIFO or socket in its place is refused without being opened.
        raw = read_regular_file(path, str(path), MAX_JSON_BYTES)
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror}") from None
    except Invalid as exc:
        raise ConfigFileError(exc.message) from None
    if len(raw) > MAX_JSON_BYTES:
        raise ConfigFileError(f"{path}: larger than {MAX_JSON_BYTES} bytes; not a runyard.toml")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigFileError(f"{path}: invalid TOML: nested too deep") from None
    try:
        parsed = YardFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(_format_file_errors(path, exc)) from None
    _check_roots(path, parsed)
    return parsed


def _check_roots(path: Path, parsed: YardFile) -> None:
    # Both as absolute paths from the yard folder, so "." and absolute spellings compare too.
    runs = os.path.abspath(os.path.join(path.parent, parsed.runs_root))
    archive = os.path.abspath(os.path.join(path.parent, parsed.archive_root))
    if os.path.commonpath([runs, archive]) in (runs, archive):
        raise ConfigFileError(
            f"{path}: key `archive_root`: must not be the same as, inside, or around "
            f"runs_root ({parsed.runs_root!r} vs {parsed.archive_root!r})"
        )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def normalize_db_url(value: str, base: Path) -> str:
    """A SQLAlchemy URL from ``value``: URLs pass (``postgresql://`` gets the psycopg
    driver), anything else is a SQLite file path, relative to ``base``."""
    if "://" in value:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    return sqlite_url(path)


def check_yard_path(path: Path) -> Path:
    """``path``, or Invalid when it is not UTF-8 text: a yard's path goes into its SQLite
    URL, its reports and its pages as text, so it cannot hold bytes that are not UTF-8."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise Invalid(
            f"the yard path {shown} is not UTF-8 text",
            hint="runyard writes a yard's path into its registry URL and its reports as "
            "text: use (or rename to) a folder whose path is UTF-8",
        ) from None
    return path


def find_yard(
    start: Path | None = None, explicit: str | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """The yard folder: ``explicit`` (``--yard``), else ``RUNYARD_YARD``, else the nearest
    folder at or above ``start`` holding ``runyard.toml``."""
    env = os.environ if environ is None else environ
    chosen, source = explicit, "--yard"
    if not chosen and env.get("RUNYARD_YARD"):
        chosen, source = env["RUNYARD_YARD"], "RUNYARD_YARD"
    if chosen:
        path = check_yard_path(Path(chosen).expanduser().resolve())
        config_file = path / CONFIG_FILENAME
        if not config_file.is_file():
            if config_file.exists():  # a FIFO, socket, device or folder: said, never opened
                parse_yard_file(config_file)
            raise YardNotFound(
                f"no yard at {path} (from {source}): {CONFIG_FILENAME} is missing",
                hint=f"create one with `runyard init {chosen}`",
            )
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILENAME).is_file():
            return check_yard_path(folder)
    raise YardNotFound(
        f"no yard found: no {CONFIG_FILENAME} in {here} or any folder above it",
        hint="run `runyard init PATH` to create a yard, or pass --yard PATH / set RUNYARD_YARD",
    )


def load_settings(yard_path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings of the yard at ``yard_path`` (its ``runyard.toml`` plus the environment)."""
    yard_path = yard_path.resolve()
    file = parse_yard_file(yard_path / CONFIG_FILENAME)
    env = read_env_overrides(environ)
    if env.db:
        db_url, source = normalize_db_url(env.db, Path.cwd()), "RUNYARD_DB"
    elif file.db.url:
        db_url, source = normalize_db_url(file.db.url, yard_path), "runyard.toml db.url"
    else:
        db_url, source = sqlite_url(yard_path / DEFAULT_SQLITE_FILENAME), "default"
    max_runs = env.max_runs if env.max_runs is not None else file.retention.max_active_runs
    return Settings(
        yard_path=yard_path,
        file=file,
        db_url=db_url,
        db_url_source=source,
        max_active_runs=max_runs,
        skip_simulation=env.skip_simulation,
        token=env.token,
    )
