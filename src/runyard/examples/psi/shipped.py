"""The data files shipped with the example (scenarios and policy configs)."""

from __future__ import annotations

from pathlib import Path

from runyard.errors import NotFound

DATA_DIR = Path(__file__).resolve().parent / "data"


def example_names() -> list[str]:
    """The names of the shipped data files, sorted."""
    return sorted(p.name for p in DATA_DIR.glob("*.json"))


def example_path(name: str) -> Path:
    """The path of a shipped data file, e.g. ``example_path("small.json")``."""
    names = example_names()
    if name not in names:
        raise NotFound(
            f"the PSI example ships no data file {name!r}", hint=f"known: {', '.join(names)}"
        )
    return DATA_DIR / name
