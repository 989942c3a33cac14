"""A run's files as the web shows them: names that are not UTF-8 in display form with
their exact bytes beside, and a file asked for by either form.

A run folder may hold names (and link targets) that are not UTF-8. The API and the
pages show each such name in its display form (``fsnames.shown``: each byte that is
not UTF-8 as ``\\xNN``) and give its exact bytes in a ``<field>_b64`` field beside it.
A file is asked for by its path in the URL; for a path that is not UTF-8, that is its
display form and the query parameter ``path_b64`` carries the exact bytes (the listing
gives both). A display form alone never names such a file: it holds a backslash, which
no artifact path may, so it is a clean 422 that says to send ``path_b64``.

A run folder that is a symlink (swapped behind runyard's back) is neither listed nor
served: its target may be anywhere (409, ``runyard check`` reports it).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from pydantic import Field

from runyard import fsnames
from runyard.artifacts import Artifact, list_artifacts, resolve_artifact
from runyard.errors import Invalid, Refused

B64_DESCRIPTION = "base64 of the exact bytes, present only when {field} is not UTF-8"


class ArtifactEntry(Artifact):
    """One entry of a run's folder, names in display form with their exact bytes."""

    path: str = Field(description="relative to the run; not UTF-8 bytes written as \\xNN")
    link_target: str | None = Field(
        default=None, description="a symlink's text, in the same display form"
    )
    path_b64: str | None = Field(default=None, description=B64_DESCRIPTION.format(field="path"))
    link_target_b64: str | None = Field(
        default=None, description=B64_DESCRIPTION.format(field="link_target")
    )


def entry_of(artifact: Artifact) -> ArtifactEntry:
    target = artifact.link_target
    return ArtifactEntry(
        **{
            **artifact.model_dump(),
            "path": fsnames.shown(artifact.path),
            "path_b64": fsnames.exact_b64(artifact.path),
            "link_target": fsnames.shown(target) if target is not None else None,
            "link_target_b64": fsnames.exact_b64(target) if target is not None else None,
        }
    )


def run_folder(run_dir: Path) -> Path:
    """The run's folder, refused when it is a symlink: a folder swapped for a link behind
    runyard's back would otherwise have its target (anywhere) listed and served."""
    if run_dir.is_symlink():
        raise Refused(
            f"the folder of run {fsnames.shown(run_dir.name)} is a symlink, not a folder: "
            "its files are not listed or served",
            hint="`runyard check` reports it; put the run's folder back in its place",
        )
    return run_dir


def artifact_entries(run_dir: Path, limit: int) -> tuple[list[ArtifactEntry], bool]:
    """The run folder's entries (``artifacts.list_artifacts``) as the web shows them."""
    items, truncated = list_artifacts(run_folder(run_dir), limit)
    return [entry_of(a) for a in items], truncated


def artifact_href(prefix: str, entry: ArtifactEntry, download: bool = False) -> str:
    """The URL of an entry under ``prefix`` (``/ui/runs/ID/artifacts``), exact for any name."""
    params = [("path_b64", entry.path_b64)] if entry.path_b64 else []
    if download:
        params.append(("download", "1"))
    url = f"{prefix}/{quote(entry.path)}"
    return url + ("?" + urlencode(params) if params else "")


def exact_path(path: str, path_b64: str | None) -> str:
    """The path a request names: ``path`` itself, or the bytes of ``path_b64``, whose
    display form must then be ``path`` (so the URL never says one file and means another).
    """
    if path_b64 is None:
        if "\\x" in path:
            raise Invalid(
                f"artifact path '{path}' is a display form (\\xNN stands for a byte that is "
                "not UTF-8)",
                hint="send the exact name as the path_b64 query parameter the listing gives",
            )
        return path
    exact = fsnames.from_b64(path_b64, "path_b64")
    if fsnames.shown(exact) != path:
        raise Invalid(
            f"path_b64 names {fsnames.shown(exact)!r}, not {path!r}",
            hint="send the path and its path_b64 as the listing gives them",
        )
    return exact


def resolve_requested(run_dir: Path, path: str, path_b64: str | None) -> Path:
    """The real path of the file a request names (see ``exact_path``), only inside the run."""
    return resolve_artifact(run_folder(run_dir), exact_path(path, path_b64))


def download_name(target: Path) -> str:
    """A file name for ``Content-Disposition``: the display form of the file's name."""
    return fsnames.shown(target.name)
