"""The experiment report (:func:`build`): a :class:`~mlsd.evaluation.report.Report` of an
:func:`~mlsd.experiments.analysis.analyze` result: checks first (SRM, power), then the primary
metric's lift with its CI, the daily metric per arm with CIs (plot), every metric per arm,
CUPED, the offline-vs-online comparison and the slate-level metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure as MplFigure

from mlsd.evaluation.report import Figure, Report, Table, Text

__all__ = ["build"]


def _ci(e: Mapping[str, float] | None, pct: bool = False) -> str:
    if not e:
        return "–"
    f = (lambda v: f"{100 * v:+.2f}%") if pct else (lambda v: f"{v:.4g}")
    return f"{f(e['value'])} [{f(e['low'])}, {f(e['high'])}]"


def _daily_plot(a: Mapping[str, Any]) -> MplFigure:
    fig = MplFigure(figsize=(7, 3.2))
    ax = fig.subplots()
    days = range(1, len(a["daily"]) + 1)
    for i, arm in enumerate(a["arms"]):
        pts = [(d, row[i]) for d, row in zip(days, a["daily"], strict=True) if row[i]]
        if not pts:
            continue
        x = [d for d, _ in pts]
        ax.plot(x, [e["value"] for _, e in pts], marker="o", label=arm)
        ax.fill_between(x, [e["low"] for _, e in pts], [e["high"] for _, e in pts], alpha=0.2)
    ax.set_xlabel("simulated day")
    ax.set_ylabel(f"{a['primary'].replace('_', ' ')} per visitor")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def build(a: Mapping[str, Any], offline: Mapping[str, float] | None = None) -> Report:
    """The report of analysis ``a``; ``offline``: each arm's offline NDCG@20 (optional)."""
    arms, primary = a["arms"], a["primary"]
    control = arms[0]
    r = Report(f"Experiment {a['experiment']}: {' vs '.join(arms)}")
    srm = a["srm"]
    plan = a["planner"]
    verdict = "ALARM, do not trust the results" if srm["alarm"] else "pass"
    sizes = ", ".join(f"{n} ({a['users'][n]:,} users)" for n in arms)
    checks = [
        f"- Arms: {sizes}; split "
        f"{a['split']}, salt `{a['salt']}`, {a['days']} days; control: **{control}**.",
        f"- Sample-ratio mismatch ({srm['source']}): counts {srm['counts']}, chi-square "
        f"p = {srm['p_value']:.3g}: **{verdict}** "
        "(alarm at p < 0.001).",
    ]
    if plan.get("users_per_arm_needed"):
        checks.append(
            f"- Power: {plan['users_per_arm_needed']:,} users per arm detect a "
            f"{100 * plan['mde_relative']:.1f}% change of {plan['metric']} (alpha {a['alpha']}, "
            f"power 0.8); with {srm['counts'][0]:,} in the control this run detects "
            f"{100 * plan['detectable_relative']:.1f}%."
        )
    r.add(Text("\n".join(checks), title="Checks"))
    rows = []
    for arm in arms[1:]:
        vs = a["metrics"][primary]["vs_control"][arm]
        rows.append(
            [
                arm,
                _ci(vs["difference"]),
                _ci(vs["lift"], pct=True),
                vs["lift"].get("p_value", float("nan")),
                vs["always_valid_p"],
            ]
        )
    r.add(
        Table(
            [
                "arm",
                f"difference in {primary} per user [95% CI]",
                "lift [95% CI]",
                "p (fixed horizon)",
                "p (always valid, daily looks)",
            ],
            rows,
            title=f"Primary metric: {primary} per user vs {control}",
        )
    )
    r.add(
        Figure(
            _daily_plot(a),
            "daily",
            title=f"Daily {primary} per visitor by arm",
            caption="Mean per user who visited that day, with 95% CIs.",
        )
    )
    rows = []
    for name, m in a["metrics"].items():
        rows.append(
            [
                name,
                *[_ci(m["per_arm"][arm]) for arm in arms],
                *[
                    _ci(m["vs_control"][arm].get("lift"), pct=True)
                    if "lift" in m["vs_control"][arm]
                    else f"{m['vs_control'][arm]['difference']:+.4g}"
                    for arm in arms[1:]
                ],
            ]
        )
    r.add(
        Table(
            ["metric", *arms, *[f"lift {x}" for x in arms[1:]]],
            rows,
            title="Every metric per arm (per user over the experiment; ctr: plays / "
            "impressions, delta method)",
        )
    )
    if "cuped" in a:
        c = a["cuped"]
        rows = [
            [arm, _ci(v["raw"]), _ci(v["cuped"]), v["ci_width_raw"], v["ci_width_cuped"]]
            for arm, v in c["vs_control"].items()
        ]
        r.add(
            Table(
                ["arm", "difference (raw)", "difference (CUPED)", "CI width raw", "CI width CUPED"],
                rows,
                title="CUPED",
                caption=f"Covariate: each user's {primary} before the experiment; theta "
                f"{c['theta']:.3f}, variance reduction {100 * c['variance_reduction']:.1f}%.",
            )
        )
    if offline:
        rows = []
        for pair in a["pairs"]:
            x, y = pair["a"], pair["b"]
            if x in offline and y in offline and offline[x] > 0:
                rows.append(
                    [
                        f"{y} vs {x}",
                        offline[y] - offline[x],
                        offline[y] / offline[x] - 1,
                        _ci(pair["lift"], pct=True),
                    ]
                )
        r.add(
            Table(
                [
                    "pair (b vs a)",
                    "offline NDCG@20 difference",
                    "offline relative",
                    f"online lift in {primary} [95% CI]",
                ],
                rows,
                title="Offline vs online",
                caption="Offline: NDCG@20 of each arm's served slates on a logged window "
                "after training (another policy's log). Online: this experiment.",
            )
        )
    if a.get("slates"):
        rows = [
            [
                arm,
                v["coverage"],
                v["creator_gini"],
                v["exploration_share"],
                v["exploration_watch_rate"],
            ]
            for arm, v in a["slates"].items()
        ]
        r.add(
            Table(
                [
                    "arm",
                    "catalog coverage / day",
                    "creator concentration (Gini)",
                    "exploration slots",
                    "exploration slots watched",
                ],
                rows,
                title="Slates",
            )
        )
    return r
