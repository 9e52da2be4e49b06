"""Renderer of the model-lifecycle block (``lifecycle.py``'s results): the retrain on
``small`` (time, evaluation, gates, the refused shuffled-label challenger) and the rollback
under load."""

from __future__ import annotations

from _render import Doc, Missing, Results, checks_verdict, measured_on, ms


def _retrain(d: Doc) -> list[str]:
    rows = []
    for label, run in d["runs"].items():
        latest = next(w for w in run["windows"] if "champion" in w)
        verdict = "gates passed" if run["passed"] else "refused: " + ", ".join(run["failed"])
        rows.append(
            f"| {label} | {run['seconds']:.0f} s | NDCG@20 {latest['champion']['ndcg@20']:.4f} -> "
            f"{latest['challenger']['ndcg@20']:.4f} | {verdict}; champion "
            f"v{run['champion_before']} -> v{run['champion_after']} | {checks_verdict(d)} |"
        )
    return rows


def _rollback(d: Doc) -> str:
    lat = d["latency_ms"]
    return (
        f"| rollback under {d['settings']['rate']:g} rps | served "
        f"{d['rollback_served_after_command_s']:.1f} s after the command | "
        f"{d['requests']:,} requests, p99 {ms(lat['p99'])} | "
        f"{sum(v for k, v in d['status'].items() if k != '200')} errors | {checks_verdict(d)} |"
    )


def lifecycle(r: Results) -> str:
    rows = ["| run | time | figures | outcome | Must-show checks |", "|---|---:|---|---|---|"]
    docs = []
    for name, render in (("lifecycle_retrain", _retrain), ("lifecycle_rollback", _rollback)):
        try:
            d = r.get(name)
        except Missing:
            continue
        docs.append(d)
        got = render(d)
        rows += got if isinstance(got, list) else [got]
    if not docs:
        raise Missing("lifecycle_retrain")
    latest = max(docs, key=lambda d: d.get("measured_at", ""))
    return "\n".join(rows) + "\n\n" + measured_on(latest)
