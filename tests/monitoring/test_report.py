"""The reports say the verdict and show every column; the HTML page is well-formed and
self-contained."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np

from mlsd.monitoring import (
    column_drift,
    data_quality,
    dataset_drift,
    drift_html,
    drift_markdown,
)

VOID = {"meta", "br", "img", "hr", "input", "link"}


class _Tags(HTMLParser):
    """Checks that every element is closed in order (void ones excepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)  # <line/> in the SVG

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _run() -> tuple:
    rng = np.random.default_rng(0)
    n = 600
    ref = {
        "watch_s": rng.normal(size=n),
        "device": rng.choice(["web", "ios"], n),
        "a<b": rng.normal(size=n),
    }
    cur = {
        "watch_s": rng.normal(1, 1, n),
        "device": rng.choice(["web", "ios"], n),
        "a<b": np.r_[rng.normal(size=n - 60), [np.nan] * 60],
    }
    kinds = {"watch_s": "num", "device": "cat", "a<b": "num"}
    pred = column_drift("prediction", ref["watch_s"], cur["watch_s"], "num")
    return dataset_drift(ref, cur, kinds), data_quality(ref, cur, kinds), pred


def test_markdown_has_the_verdict_columns_and_issues() -> None:
    drift, quality, pred = _run()
    md = drift_markdown(drift, quality, "Window 2024-05-01", prediction=pred)
    assert md.startswith("# Window 2024-05-01\n")
    assert "1 of 3 columns drifted" in md and "Prediction drift DETECTED" in md
    for name in ("watch_s", "device", "a<b", "prediction"):
        assert f"| {name} |" in md
    assert "| a<b | nulls |" in md
    assert "No data-quality issues." in drift_markdown(drift, [], "t")


def test_html_is_well_formed_self_contained_and_names_every_column() -> None:
    drift, quality, pred = _run()
    page = drift_html(drift, quality, "Drift <today>", prediction=pred)
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert {"svg", "rect", "table", "line"} <= parser.seen
    assert "<title>Drift &lt;today&gt;</title>" in page
    for name in ("watch_s", "device", "a&lt;b", "prediction"):
        assert name in page
    assert "a<b" not in page  # escaped everywhere
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
