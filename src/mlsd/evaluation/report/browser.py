"""Check that an HTML report's images really load in a browser (headless Chromium).

:func:`check_report_in_browser` opens a report page (``file://``) in headless Chromium driven
by the ``playwright`` package (a dev extra), waits for the page and every ``<img>`` to finish
loading, and returns one :class:`ImageStatus` per image: loaded means ``complete`` and a
``naturalWidth`` above 0, i.e. the browser decoded it (a corrupt data URI or a missing file
gives ``naturalWidth`` 0).

Playwright's own browser download is not used: it drives the system's Chromium (Debian:
``apt-get install chromium``) through ``executable_path``. :func:`find_chromium` looks for it:
the ``chromium`` argument, else ``$MLSD_CHROMIUM``, else ``chromium``, ``chromium-browser``,
``google-chrome`` or ``google-chrome-stable`` on ``PATH``. Without a binary or without
playwright it raises :class:`~mlsd.errors.BrowserNotFoundError`.

``scripts/check_report.py PATH`` wraps this for the command line.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlsd.errors import BrowserError, BrowserNotFoundError, DataError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ENV_VAR = "MLSD_CHROMIUM"

# Waits for every image to settle (load or error), then reads its state. Lazy images are made
# eager first, so that ones below the fold are fetched too.
_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { if (img.loading === "lazy") img.loading = "eager"; }
  await Promise.all(imgs.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done, {once: true});
    img.addEventListener("error", done, {once: true});
  })));
  return imgs.map((img) => ({
    src: img.getAttribute("src") || "",
    alt: img.getAttribute("alt") || "",
    complete: img.complete,
    width: img.naturalWidth,
    height: img.naturalHeight,
  }));
}
"""


@dataclass(frozen=True)
class ImageStatus:
    """One ``<img>``: its ``src`` (data URIs shortened), ``alt``, and what the browser made of
    it; ``loaded`` is ``complete and natural_width > 0``."""

    src: str
    alt: str
    complete: bool
    natural_width: int
    natural_height: int

    @property
    def loaded(self) -> bool:
        return self.complete and self.natural_width > 0

    def __str__(self) -> str:
        state = (
            f"loaded {self.natural_width}x{self.natural_height}" if self.loaded else "NOT LOADED"
        )
        return f"{state}: {self.alt or '(no alt)'} <{self.src}>"


@dataclass(frozen=True)
class BrowserCheck:
    """The result of :func:`check_report_in_browser` for one page."""

    path: Path
    browser: str  # the executable used
    browser_version: str
    images: tuple[ImageStatus, ...]

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_loaded(self) -> int:
        return sum(img.loaded for img in self.images)

    @property
    def broken(self) -> tuple[ImageStatus, ...]:
        return tuple(img for img in self.images if not img.loaded)

    @property
    def ok(self) -> bool:
        """True when no image is broken (a page without images is ok: check ``n_images``)."""
        return not self.broken

    def summary(self) -> str:
        lines = [
            f"{self.path}: {self.n_loaded}/{self.n_images} images loaded "
            f"in Chromium {self.browser_version} ({self.browser})"
        ]
        lines += [f"  {img}" for img in self.images]
        return "\n".join(lines)


def _short_src(src: str) -> str:
    if src.startswith("data:"):
        head = src.split(",", 1)[0]
        return f"{head},... ({len(src):,} chars)"
    return src if len(src) <= 200 else src[:197] + "..."


def find_chromium(chromium: str | os.PathLike[str] | None = None) -> str:
    """The Chromium executable to use (see the module docstring for the search order)."""
    given = chromium if chromium is not None else os.environ.get(ENV_VAR) or None
    if given is not None:
        found = shutil.which(os.fspath(given))
        if found is None:
            origin = "chromium argument" if chromium is not None else f"${ENV_VAR}"
            raise BrowserNotFoundError(
                f"{origin} {os.fspath(given)!r}: not an executable file or a program on PATH"
            )
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    raise BrowserNotFoundError(
        f"no Chromium found on PATH (looked for {', '.join(CHROMIUM_NAMES)}); install it "
        f"(Debian: apt-get install chromium) or set ${ENV_VAR} to its path"
    )


def check_report_in_browser(
    html_path: str | os.PathLike[str],
    *,
    chromium: str | os.PathLike[str] | None = None,
    timeout_s: float = 30,
) -> BrowserCheck:
    """Open ``html_path`` in headless Chromium and report, for every ``<img>``, whether it
    loaded. Raises :class:`~mlsd.errors.BrowserNotFoundError` when Chromium or playwright is
    missing, :class:`~mlsd.errors.BrowserError` when the browser fails or times out (each
    step gets ``timeout_s``), :class:`~mlsd.errors.DataError` when the file does not exist."""
    path = Path(html_path).resolve()
    if not path.is_file():
        raise DataError(f"{html_path}: no such file; expected an HTML report")
    exe = find_chromium(chromium)
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise BrowserNotFoundError(
            "the playwright package is not installed (pip install -e '.[dev]' installs it); "
            "it drives Chromium"
        ) from e
    ms = timeout_s * 1000
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, timeout=ms)
            try:
                page = browser.new_page()
                page.set_default_timeout(ms)
                page.goto(path.as_uri(), wait_until="load", timeout=ms)
                raw = page.evaluate(_IMAGES_JS)
                version = browser.version
            finally:
                browser.close()
    except PlaywrightError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BrowserError(f"{path}: headless Chromium ({exe}) failed: {first}") from e
    images = tuple(
        ImageStatus(
            src=_short_src(str(r["src"])),
            alt=str(r["alt"]),
            complete=bool(r["complete"]),
            natural_width=int(r["width"]),
            natural_height=int(r["height"]),
        )
        for r in raw
    )
    return BrowserCheck(path=path, browser=exe, browser_version=version, images=images)
