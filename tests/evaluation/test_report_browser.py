"""The HTML report's plots load in a real browser (headless Chromium via playwright).

Without Chromium (or playwright) these tests are skipped locally but fail when ``CI`` is set:
CI must run them (``.ci/run`` installs Debian's ``chromium``; playwright is a dev extra).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.figure import Figure as MplFigure

from mlsd.errors import BrowserNotFoundError, DataError
from mlsd.evaluation.report import Figure, Group, Report, Table, Text
from mlsd.evaluation.report.browser import check_report_in_browser, find_chromium

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        exe = find_chromium()
        import playwright.sync_api  # noqa: F401
    except (BrowserNotFoundError, ImportError) as e:
        msg = f"headless browser unavailable: {e}"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}; CI must run the browser tests (.ci/run installs chromium)")
        pytest.skip(f"{msg}; set CI=1 to turn this skip into a failure")
    return exe


def _figure(kind: str) -> MplFigure:
    fig = MplFigure(figsize=(4, 3))
    ax = fig.add_subplot()
    if kind == "bars":
        ax.bar(["MostPop", "EASE"], [0.10, 0.18])
        ax.set_ylabel("ndcg@20")
    else:
        ax.plot([1, 2, 3], [0.10, 0.12, 0.11], marker="o")
        ax.set_xlabel("fold")
    return fig


_PNG_1x1 = (  # a valid 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
    "60e6kgAAAABJRU5ErkJggg=="
)


def _broken_page(tmp_path: Path) -> Path:
    """One good image, one corrupt data URI, one missing file."""
    corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\nthis is not a png").decode()
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        f'<img alt="good" src="data:image/png;base64,{_PNG_1x1}">'
        f'<img alt="corrupt" src="data:image/png;base64,{corrupt}">'
        '<img alt="missing" src="no_such_dir/plot.png">'
        "</body></html>",
        encoding="utf-8",
    )
    return page


@pytest.mark.browser
def test_report_figures_load_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    report = Report("Browser check").add(
        Text("Two plots and a table."),
        Group("Step 5: evaluation").add(
            Table(["model", "ndcg@20"], [["MostPop", 0.10], ["EASE", 0.18]], title="Metrics"),
            Figure(_figure("bars"), "bars", title="ndcg@20 by model"),
        ),
        Figure(_figure("line"), "line", title="ndcg@20 by fold", caption="three folds"),
    )
    page = report.write(tmp_path)["html"]
    check = check_report_in_browser(page, chromium=chromium)
    assert check.n_images == 2, check.summary()
    assert check.ok and check.n_loaded == 2, check.summary()
    assert [img.alt for img in check.images] == ["ndcg@20 by model", "ndcg@20 by fold"]
    assert all(img.natural_width > 100 and img.natural_height > 100 for img in check.images)
    assert check.images[0].src.startswith("data:image/png;base64,...")
    assert "Chrom" in check.browser_version or check.browser_version[0].isdigit()


@pytest.mark.browser
def test_broken_images_are_reported_as_not_loaded(chromium: str, tmp_path: Path) -> None:
    check = check_report_in_browser(_broken_page(tmp_path), chromium=chromium)
    assert check.n_images == 3 and check.n_loaded == 1, check.summary()
    assert not check.ok
    assert [img.alt for img in check.broken] == ["corrupt", "missing"]
    assert "NOT LOADED: corrupt" in check.summary()


@pytest.mark.browser
def test_script_exits_nonzero_on_a_broken_image(chromium: str, tmp_path: Path) -> None:
    env = {**os.environ, "MLSD_CHROMIUM": chromium}
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_report.py"), str(_broken_page(tmp_path))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1/3 images loaded" in run.stdout and "2 image(s) did not load" in run.stderr


def test_missing_chromium_and_missing_file_raise_typed_errors(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    page.write_text("<html></html>", encoding="utf-8")
    with pytest.raises(BrowserNotFoundError, match="chromium argument"):
        check_report_in_browser(page, chromium=str(tmp_path / "no-such-chromium"))
    with pytest.raises(DataError, match="no such file"):
        check_report_in_browser(tmp_path / "absent.html", chromium="whatever")
