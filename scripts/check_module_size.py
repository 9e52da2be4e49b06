"""Fail when a module under ``src/`` is longer than the house allows (docs/architecture.md):
a file that long has absorbed a second concern and wants splitting.

Usage: ``python scripts/check_module_size.py [ROOT] [--max-lines N]`` (defaults: ``src``, 500).
Exits 1 listing every offending file with its line count, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MAX_LINES = 500


def oversized(root: Path, max_lines: int = MAX_LINES) -> list[tuple[Path, int]]:
    """``(path, lines)`` of every ``*.py`` file under ``root`` with more than ``max_lines``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > max_lines:
            out.append((path, n))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default="src", type=Path)
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"{args.root}: not a directory", file=sys.stderr)
        return 2
    bad = oversized(args.root, args.max_lines)
    for path, n in bad:
        print(f"{path}: {n} lines; at most {args.max_lines} (split it by concern)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
