#!/usr/bin/env python3
"""Open an HTML report in headless Chromium and check that every image loaded.

Usage::

    .venv/bin/python scripts/check_report.py runs/<run>/report.html [--chromium PATH]
        [--min-images N] [--timeout S]

Prints one line per ``<img>`` (loaded WIDTHxHEIGHT, or NOT LOADED) and exits 0 when every
image loaded (and there are at least ``--min-images``), 1 when one is broken or too few, 2
when Chromium or playwright is missing, the file does not exist or the browser fails.

Needs the ``playwright`` package (in the ``dev`` extra, so ``make test``/``make install``
installs it) and a system Chromium (Debian: ``apt-get install chromium``); set
``$MLSD_CHROMIUM`` or pass ``--chromium`` to use another binary. Playwright's own browser
download (``playwright install``) is not needed.
"""

from __future__ import annotations

import argparse
import sys

from mlsd.errors import MlsdError
from mlsd.evaluation.report.browser import check_report_in_browser


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="the HTML report, e.g. runs/<run>/report.html")
    ap.add_argument("--chromium", default=None, help="Chromium executable (default: search)")
    ap.add_argument("--min-images", type=int, default=1, help="fail with fewer images (1)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per browser step")
    args = ap.parse_args(argv)
    try:
        check = check_report_in_browser(args.path, chromium=args.chromium, timeout_s=args.timeout)
    except MlsdError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(check.summary())
    if not check.ok:
        print(f"FAIL: {len(check.broken)} image(s) did not load", file=sys.stderr)
        return 1
    if check.n_images < args.min_images:
        print(
            f"FAIL: {check.n_images} image(s); expected at least {args.min_images}", file=sys.stderr
        )
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
