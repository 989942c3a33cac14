"""``python -m runyard.examples.psi [PATH]``: write large.json again (by default in place)."""

from __future__ import annotations

import sys
from pathlib import Path

from runyard.examples.psi.generate import write_large


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python -m runyard.examples.psi [PATH]", file=sys.stderr)
        return 2
    print(f"wrote {write_large(Path(argv[0]) if argv else None)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
