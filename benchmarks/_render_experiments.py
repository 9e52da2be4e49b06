"""Renderers of the online-experiment blocks (``experiments.py`` and ``monitoring.py``
results): A/A error rates, SRM, CUPED, the A/B through the HTTP service, the offline-vs-online
table, and the monitoring drills."""

from __future__ import annotations

from _render import Missing, Results, checks_verdict, measured_on


def _pct(e: dict, digits: int = 1) -> str:
    return (f"{100 * e['value']:+.{digits}f}% [{100 * e['low']:+.{digits}f}%, "
            f"{100 * e['high']:+.{digits}f}%]")  # fmt: skip


def experiments(r: Results) -> str:
    rows = ["| run | figures | Must-show checks |", "|---|---|---|"]
    docs = []
    try:
        d = r.get("experiments_aa")
        docs.append(d)
        aa, srm, c = d["aa"], d["srm"], d["cuped"]
        rows.append(
            f"| A/A: {aa['experiments']} splits of one {aa['days']}-day loop on `small` "
            f"({d['visitors']:,} users) | false positives at alpha 0.05: fixed horizon "
            f"{aa['fixed_horizon_fpr']:.3f}, mSPRT peeked daily {aa['sequential_fpr']:.3f}; SRM: "
            f"{srm['detected_of_100']}/100 losses of 5% of one arm's users' exposures detected "
            f"({srm['visitors']:,} visitors), {srm['aa_alarms_users_world']} A/A alarms; CUPED: "
            f"variance -{100 * c['variance_reduction']:.0f}%, CI width {c['ci_width_raw']:.2f} -> "
            f"{c['ci_width_cuped']:.2f} | {checks_verdict(d)} |"
        )
    except Missing:
        pass
    try:
        d = r.get("experiments_ab")
        docs.append(d)
        a = d["analysis"]
        arm = a["arms"][1]
        lift = a["metrics"]["valid_watches"]["vs_control"][arm]["lift"]
        cup = a.get("cuped", {}).get("vs_control", {}).get(arm)
        cuped = (f"; CUPED CI width {cup['ci_width_raw']:.2f} -> {cup['ci_width_cuped']:.2f}"
                 if cup else "")  # fmt: skip
        rows.append(
            f"| A/B through `mlsd serve --experiment` (HTTP), {a['days']} days: {arm} vs "
            f"{a['arms'][0]} | valid watches per user {_pct(lift)}; SRM p = "
            f"{a['srm']['p_value']:.3f} ({a['srm']['counts'][0]:,} vs "
            f"{a['srm']['counts'][1]:,} users){cuped}; {a['http']['requests']:,} requests and "
            f"{a['http']['events_sent']:,} events over HTTP in {d['seconds']['loop']:.0f} s | "
            f"{checks_verdict(d)} |"
        )
    except Missing:
        pass
    if not docs:
        raise Missing("experiments_aa")
    return "\n".join(rows) + "\n\n" + measured_on(max(docs, key=lambda d: d["measured_at"]))


def experiments_pairs(r: Results) -> str:
    d = r.get("experiments_pairs")
    rows = [
        "| pair (b vs a) | offline NDCG@20 a -> b | offline relative | online lift in valid "
        "watches per user [95% CI] |",
        "|---|---|---:|---|",
    ]
    for p in d["pairs"]:
        a, b = p["offline_ndcg_a"], p["offline_ndcg_b"]
        rows.append(f"| {p['b']} vs {p['a']} | {a:.4f} -> {b:.4f} | {100 * (b / a - 1):+.1f}% | "
                    f"{_pct(p['online_lift'])} |")  # fmt: skip
    return (
        "\n".join(rows)
        + f"\n\nOffline and online agree in direction for {d['direction_agrees']} of "
        f"{len(d['pairs'])} pairs. " + measured_on(d)
    )


def monitoring(r: Results) -> str:
    d = r.get("monitoring_drift")
    s = d["settings"]
    rows = ["| drill | days | alerts | Must-show check |", "|---|---:|---|---|"]
    what = {
        "stable": "the world goes on",
        "shift": f"taste shift at day {s['shift_day']}",
        "fault": f"{s['fault_feature']} served as 0 from day {s['fault_day']}",
    }
    word = {"stable": "stable", "shift": "taste", "fault": "zeroed"}
    for name, run in d["runs"].items():
        fired = [f"day {x['day']}: {', '.join(x['firing'])}" for x in run["days"] if x["firing"]]
        check = next(c for k, c in d["checks"].items() if word[name] in k.split())
        rows.append(
            f"| {name}: {what[name]} | {len(run['days'])} | {'; '.join(fired) or 'none'} | "
            f"{'**met**' if check['pass'] else '**missed**'} |"
        )
    return "\n".join(rows) + "\n\n" + measured_on(d)
