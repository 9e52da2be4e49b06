"""The gate report of a retraining run: Markdown and a self-contained HTML page (the plot of
champion vs challenger per evaluation window embedded as a PNG)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from mlsd.orchestration.run import Run

__all__ = ["write_report"]


def _plot(windows: list[dict[str, Any]], k: int) -> bytes | None:
    rows = [w for w in windows if "champion" in w]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    labels = [w["window"] for w in rows]
    x = range(len(rows))
    for ax, metric in zip(axes, (f"ndcg@{k}", f"recall@{k}"), strict=True):
        ax.bar([i - 0.2 for i in x], [w["champion"][metric] for w in rows], 0.4, label="champion")
        ax.bar(
            [i + 0.2 for i in x], [w["challenger"][metric] for w in rows], 0.4, label="challenger"
        )
        ax.set_xticks(list(x), labels)
        ax.set_title(metric)
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _lines(run: Run, stopped: str | None) -> list[str]:
    r, cfg = run.results, run.cfg
    out = [f"# Retraining run {run.run_id}: {cfg.name}", ""]
    out.append(f"- champion at the start: v{run.champion.version} ({run.champion.model_version})")
    if "collect" in r:
        out.append(f"- base data: {r['collect']['base']}")
        for name, n in r["collect"]["events"].items():
            out.append(f"- new: {name} ({n if n is not None else '?'} events)")
    if stopped:
        out += ["", f"**Stopped:** {stopped}", ""]
    if "validate" in r or run.path("quarantine.json").exists():
        out += [
            "",
            "## Validate",
            "",
            "| source | rows | quarantined | share | reasons |",
            "|---|---:|---:|---:|---|",
        ]
        import json

        for e in json.loads(run.path("quarantine.json").read_text()):
            reasons = "; ".join(f"{k}: {v:,}" for k, v in e["dropped"].items()) or "-"
            out.append(
                f"| {e['file']} | {e['rows']:,} | {e['bad_rows']:,} | "
                f"{e['bad_share']:.2%} | {reasons} |"
            )
            for p in e["problems"][:10]:
                out.append(
                    f"|  | | | | {p['file']}, column {p['column']}, row {p['row']}: "
                    f"{p['problem']} |"
                )
    if "train" in r:
        t = r["train"]
        out += [
            "",
            "## Train",
            "",
            f"challenger {t['model_version']} in {t['seconds']} s"
            + (f" (fault injected: {t['fault']})" if t["fault"] != "none" else ""),
        ]
    if "evaluate" in r:
        k = r["evaluate"]["k"]
        out += [
            "",
            "## Evaluate",
            "",
            f"| window | cut | users | champion NDCG@{k} | "
            f"challenger NDCG@{k} | champion Recall@{k} | challenger Recall@{k} |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for w in r["evaluate"]["windows"]:
            if "champion" not in w:
                out.append(f"| skipped | {w['cut']} | | {w['skipped']} | | | |")
                continue
            c, h = w["champion"], w["challenger"]
            out.append(
                f"| {w['window']} | {w['cut'][:16]} | {c['users']} | {c[f'ndcg@{k}']:.4f} "
                f"| {h[f'ndcg@{k}']:.4f} | {c[f'recall@{k}']:.4f} | "
                f"{h[f'recall@{k}']:.4f} |"
            )
    if "gates" in r:
        g = r["gates"]
        out += [
            "",
            "## Gates: "
            + ("passed" if g["passed"] else "**failed** (" + ", ".join(g["failed"]) + ")"),
            "",
            "| gate | result | value | limit | detail |",
            "|---|---|---:|---:|---|",
        ]
        for name, v in g["gates"].items():
            out.append(
                f"| {name} | {'pass' if v['passed'] else '**FAIL**'} | {v['value']:.4g} "
                f"| {v['limit']:.4g} | {v['detail']} |"
            )
    if "register" in r:
        out += ["", f"Registered as {cfg.name} v{r['register']['version']} (challenger)."]
    if "promote" in r:
        p = r["promote"]
        out.append(
            f"Promoted: v{p['champion']} is the champion."
            if p["promoted"]
            else f"Not promoted ({p['why']}); the champion stays v{p['champion']}."
        )
    return out


def write_report(run: Run, stopped: str | None = None) -> Path:
    """Write ``report.md`` and ``report.html`` into the run directory; returns the HTML path."""
    lines = _lines(run, stopped)
    md = run.path("report.md")
    md.write_text("\n".join(lines) + "\n")
    png = _plot(
        run.results.get("evaluate", {}).get("windows", []),
        run.results.get("evaluate", {}).get("k", 20),
    )
    body = []
    for line in lines:
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
            if line.startswith("## Evaluate") and png:
                b64 = base64.b64encode(png).decode()
                body.append(f'<img alt="champion vs challenger" src="data:image/png;base64,{b64}">')
        elif line.startswith("|---"):
            continue
        elif line.startswith("|"):
            cells = [html.escape(c.strip()).replace("**", "") for c in line.strip("|").split("|")]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            body.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    # consecutive rows form one table
    out, in_table = [], False
    for b in body:
        if b.startswith("<tr>") and not in_table:
            out.append("<table>")
            in_table = True
        elif not b.startswith("<tr>") and in_table:
            out.append("</table>")
            in_table = False
        out.append(b)
    if in_table:
        out.append("</table>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>mlsd retrain "
        f"{html.escape(run.run_id)}</title><style>body{{font-family:sans-serif;max-width:60em;"
        "margin:2em auto}}table{border-collapse:collapse}td{border:1px solid #ccc;"
        "padding:2px 6px}tr:first-child td{font-weight:bold}</style></head><body>"
        + "\n".join(out)
        + "</body></html>\n"
    )
    path = run.path("report.html")
    path.write_text(page)
    return path
