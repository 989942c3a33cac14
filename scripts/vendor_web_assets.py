#!/usr/bin/env python3
"""Vendor the assets of ``/docs`` (Swagger UI) and ``/redoc`` (Redoc) into
``src/runyard/web/static/``, so that both pages work with no internet at run time.

Each asset comes from its package's npm tarball at a pinned version, checked against
the tarball's pinned sha256 before anything is extracted; only the files listed below
are written (the code, its licence, and the licences of what the bundle includes).
The files are byte for byte those of the tarball but for one patch, listed in
``PATCHES``: Redoc 2 loads the Redocly logo of its sidebar from ``cdn.redoc.ly``, with
no option to turn that off, so its URL becomes an empty ``data:`` URL (Redoc hides an
image that fails to load; the "API docs by Redocly" link stays). A patch whose text is
not found exactly once stops the script, so an update cannot skip it silently.

Pinned: swagger-ui-dist 5.36.0 and redoc 2.5.4 (FastAPI's own defaults load
swagger-ui-dist@5 and redoc@2 from a CDN).

To update: change a version and its sha256 below (``npm view PKG@VERSION dist.tarball``
gives the tarball; ``sha256sum`` it), run ``python scripts/vendor_web_assets.py``, then
the tests (``tests/test_web_docs_offline.py``) and commit the script with the files.
``--check`` downloads the tarballs and only says whether the vendored files match them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
STATIC = Path(__file__).resolve().parent.parent / "src" / "runyard" / "web" / "static"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str  # of the npm tarball
    files: dict[str, str]  # path in the tarball -> name in web/static/

    @property
    def tarball_url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name}-{self.version}.tgz"


PACKAGES = [
    Package(
        name="swagger-ui-dist",
        version="5.36.0",
        sha256="685a2b38b5d6eab2dbc096a8596db11cc7409cdb671d2e3bec8f9b017d0d566b",
        files={
            "package/swagger-ui-bundle.js": "swagger-ui-bundle.js",
            "package/swagger-ui-bundle.js.LICENSE.txt": "swagger-ui-bundle.js.LICENSE.txt",
            "package/swagger-ui.css": "swagger-ui.css",
            "package/favicon-32x32.png": "swagger-ui-favicon-32x32.png",
            "package/LICENSE": "swagger-ui.LICENSE",
            "package/NOTICE": "swagger-ui.NOTICE",
        },
    ),
    Package(
        name="redoc",
        version="2.5.4",
        sha256="44922df4d0eb45c1b066c09ec251e6bd9bd7ded16bc69e87613337b9d911a56e",
        files={
            "package/bundles/redoc.standalone.js": "redoc.standalone.js",
            "package/bundles/redoc.standalone.js.LICENSE.txt": "redoc.standalone.js.LICENSE.txt",
            "package/LICENSE": "redoc.LICENSE",
        },
    ),
]


# name in static/ -> (text, replacement), each text found exactly once
PATCHES: dict[str, list[tuple[bytes, bytes]]] = {
    "redoc.standalone.js": [
        (b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'src:"data:,"'),
    ],
}


def download(package: Package) -> bytes:
    """The package's tarball, refused unless its sha256 is the pinned one."""
    with urllib.request.urlopen(package.tarball_url, timeout=60) as response:
        data: bytes = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != package.sha256:
        raise SystemExit(
            f"error: {package.tarball_url} has sha256 {digest}, not the pinned "
            f"{package.sha256}; nothing was written"
        )
    return data


def extract(package: Package, tarball: bytes) -> dict[str, bytes]:
    """The listed files of the tarball (regular files only), by their name in static/."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member_name, target in package.files.items():
            member = archive.getmember(member_name)
            handle = archive.extractfile(member) if member.isreg() else None
            if handle is None:
                raise SystemExit(f"error: {member_name} of {package.name} is not a file")
            out[target] = patch(target, handle.read())
    return out


def patch(name: str, data: bytes) -> bytes:
    """``data`` with the patches of ``name`` applied, each to its one occurrence."""
    for old, new in PATCHES.get(name, []):
        if data.count(old) != 1:
            raise SystemExit(
                f"error: {name} holds {data.count(old)} copies of {old.decode()!r}, not "
                "1: check the patch in PATCHES against this version; nothing was written"
            )
        data = data.replace(old, new)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="only compare the vendored files with the tarballs"
    )
    args = parser.parse_args(argv)
    wanted: dict[str, bytes] = {}
    for package in PACKAGES:
        files = extract(package, download(package))
        wanted.update(files)
        print(f"{package.name} {package.version}: sha256 {package.sha256} ok")
    differ = [
        name
        for name, data in wanted.items()
        if not (STATIC / name).is_file() or (STATIC / name).read_bytes() != data
    ]
    if args.check:
        for name in differ:
            print(f"differs: {name}")
        return 1 if differ else 0
    for name, data in wanted.items():
        partial = STATIC / f".{name}.partial"
        partial.write_bytes(data)
        partial.replace(STATIC / name)
        state = "written" if name in differ else "unchanged"
        print(f"{state}: {name} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
