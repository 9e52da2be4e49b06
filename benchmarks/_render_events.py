"""Renderer of the event-ingestion block (``events.py``'s results): one row per scenario with
its key figures and whether its Must-show checks passed, naming the ones that did not."""

from __future__ import annotations

from collections.abc import Callable

from _render import Doc, Missing, Results, checks_verdict, measured_on, ms

SCENARIOS = ("mixed", "kill9", "visibility", "redis_outage", "sighup")


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _mixed(d: Doc) -> str:
    parts = []
    for c in d["configs"]:
        w, r = c["writes"], c["reads"]
        shed = f", {w['shed']:,} shed (max {ms(w['shed_latency_ms']['max'])})" if w["shed"] else ""
        parts.append(
            f"{c['write_batch']}×{c['write_rate']:g}/s: read p99 {ms(r['latency_ms']['p99'])}, "
            f"{w['accepted_events_per_s']:,.0f} events/s accepted{shed}"
        )
    return "; ".join(parts)


def _kill9(d: Doc) -> str:
    runs = d["runs"]
    ready = [r["restart_to_ready_s"] for r in runs if r["restart_to_ready_s"] is not None]
    return (
        f"{len(runs)} kills ({d['settings']['backend']} log): "
        f"{sum(r['acked_events'] for r in runs):,} events acknowledged, "
        f"{sum(r['duplicates_seen'] for r in runs):,} retried duplicates, "
        f"kill to ready ≤ {_s(max(ready) if ready else None)}"
    )


def _visibility(d: Doc) -> str:
    seen = [u["visible_s"] for u in d["users"]]
    worst = None if not seen or None in seen else max(seen)
    return f"every worker warm ≤ {_s(worst)} after the ack ({len(seen)} new users)"


def _outage(d: Doc) -> str:
    r, z = d["reads"], d["readyz"]
    return (
        f"{100 * r['degraded_share']:.1f}% of reads degraded, repopulated "
        f"{_s(z['repopulate_s'])} after the restart, "
        f"{d['probes']['different']} probes differ from a replay"
    )


def _sighup(d: Doc) -> str:
    lat, sw = d["latency_ms"], d["switch"]
    return (
        f"new version {_s(sw.get('switch_after_sighup_s'))} after SIGHUP, "
        f"p99 {ms(lat['p99'])} / max {ms(lat['max'])} with connect"
    )


SUMMARY: dict[str, Callable[[Doc], str]] = {
    "mixed": _mixed,
    "kill9": _kill9,
    "visibility": _visibility,
    "redis_outage": _outage,
    "sighup": _sighup,
}


def events(r: Results) -> str:
    """The table; scenarios without a results file say so. Raises :class:`Missing` when no
    scenario has results."""
    rows = ["| scenario | figures | Must-show checks |", "|---|---|---|"]
    docs = []
    for name in SCENARIOS:
        try:
            d = r.get(f"events_{name}")
        except Missing:
            rows.append(f"| `{name}` | not run yet | - |")
            continue
        docs.append(d)
        rows.append(f"| `{name}` | {SUMMARY[name](d)} | {checks_verdict(d)} |")
    if not docs:
        raise Missing("events_mixed")
    latest = max(docs, key=lambda d: d.get("measured_at", ""))
    return "\n".join(rows) + "\n\n" + measured_on(latest)
