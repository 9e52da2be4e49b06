"""A monitor run for people: Markdown (a pull request, a terminal) and one self-contained
HTML page (no script, no external asset: it opens from a mail or an artifact store).

The page's chart puts every column on one scale, :attr:`ColumnDrift.severity` (1 at its
method's threshold, above 1 drifted), since p-values and distances point opposite ways; the
tables give each statistic and threshold as computed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from .drift import ColumnDrift, DatasetDrift
from .quality import QualityIssue

__all__ = ["drift_html", "drift_markdown"]

SEVERITY_CAP = 3.0  # the chart's bars stop at 3x the threshold


def _rows(drift: DatasetDrift, prediction: ColumnDrift | None) -> list[ColumnDrift]:
    return [*drift.columns, *([prediction] if prediction is not None else [])]


def _cells(c: ColumnDrift) -> list[str]:
    rule = "<" if c.is_test else ">="
    return [
        c.name,
        c.kind,
        c.method,
        f"{c.statistic:.4g}",
        f"{rule} {c.threshold:g}",
        "**yes**" if c.drifted else "no",
        f"{c.psi:.3f}",
        f"{c.n_reference:,}",
        f"{c.n_current:,}",
    ]


HEADER = [
    "column",
    "kind",
    "method",
    "statistic",
    "drift when",
    "drifted",
    "PSI",
    "reference rows",
    "current rows",
]
QUALITY_HEADER = ["column", "check", "value", "threshold", "detail"]


def _verdict(drift: DatasetDrift, prediction: ColumnDrift | None) -> str:
    s = (
        f"{drift.n_drifted} of {len(drift.columns)} columns drifted "
        f"({drift.drifted_share:.0%}; dataset drift at {drift.share_threshold:.0%}): "
        f"dataset drift {'DETECTED' if drift.drifted else 'not detected'}."
    )
    if prediction is not None:
        s += f" Prediction drift {'DETECTED' if prediction.drifted else 'not detected'}."
    return s


def drift_markdown(
    dataset_drift: DatasetDrift,
    quality: Sequence[QualityIssue],
    title: str = "Drift report",
    prediction: ColumnDrift | None = None,
) -> str:
    """The run as Markdown: the verdict, a table of the columns (and the prediction), the
    data-quality issues or a line saying there are none."""

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        clean = [[v.replace("|", "\\|") for v in r] for r in rows]
        return [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in clean),
        ]

    out = [f"# {title}", "", _verdict(dataset_drift, prediction), "", "## Drift", ""]
    out += table(HEADER, [_cells(c) for c in _rows(dataset_drift, prediction)])
    out += ["", "## Data quality", ""]
    if quality:
        out += table(
            QUALITY_HEADER,
            [
                [q.column, q.check, f"{q.value:.4g}", f"{q.threshold:.4g}", q.detail]
                for q in quality
            ],
        )
    else:
        out.append("No data-quality issues.")
    return "\n".join(out) + "\n"


def _svg(rows: list[ColumnDrift]) -> str:
    """A horizontal bar per column: its severity (capped), a line at the threshold (1)."""
    label_w, bar_w, row_h, top = 220, 420, 22, 24
    h = top + row_h * len(rows) + 8
    x1 = label_w + bar_w / SEVERITY_CAP  # where severity 1 falls
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" '
        f'height="{h}" role="img" aria-label="drift severity per column">',
        f'<text x="{x1:.0f}" y="14" font-size="11" text-anchor="middle">threshold</text>',
    ]
    for i, c in enumerate(rows):
        y = top + i * row_h
        sev = c.severity
        w = bar_w * min(sev, SEVERITY_CAP) / SEVERITY_CAP
        colour = "#d62728" if c.drifted else "#2ca02c"
        name = html.escape(f"{c.name} ({c.method})")
        parts += [
            f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end">{name}</text>',
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{colour}"><title>{name}: {c.statistic:.4g}</title></rect>',
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="11">{sev:.2f}</text>',
        ]
    parts.append(
        f'<line x1="{x1:.1f}" y1="{top - 4}" x2="{x1:.1f}" y2="{h - 4}" '
        'stroke="#333" stroke-dasharray="4 3"/>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:left}th{background:#f3f3f3}.drift{color:#d62728;font-weight:bold}"
)


def drift_html(
    dataset_drift: DatasetDrift,
    quality: Sequence[QualityIssue],
    title: str = "Drift report",
    prediction: ColumnDrift | None = None,
) -> str:
    """The run as one self-contained HTML page: the verdict, an inline SVG chart of each
    column's drift severity against its threshold, the tables of :func:`drift_markdown`."""
    rows = _rows(dataset_drift, prediction)
    cells = [[v.replace("**", "") for v in _cells(c)] for c in rows]
    verdict = html.escape(_verdict(dataset_drift, prediction))
    flagged = dataset_drift.drifted or (prediction is not None and prediction.drifted)
    issues = (
        _html_table(
            QUALITY_HEADER,
            [
                [q.column, q.check, f"{q.value:.4g}", f"{q.threshold:.4g}", q.detail]
                for q in quality
            ],
        )
        if quality
        else "<p>No data-quality issues.</p>"
    )
    t = html.escape(title)
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                f'<html lang="en"><head><meta charset="utf-8"><title>{t}</title>',
                f"<style>{STYLE}</style></head><body>",
                f"<h1>{t}</h1>",
                f"<p{' class=drift' if flagged else ''}>{verdict}</p>",
                "<h2>Drift</h2>",
                "<p>Severity: 1 at the method's threshold, above 1 drifted (bars stop at "
                f"{SEVERITY_CAP:g}).</p>",
                _svg(rows),
                _html_table(HEADER, cells),
                "<h2>Data quality</h2>",
                issues,
                "</body></html>",
            ]
        )
        + "\n"
    )
