"""Rewrite the README's benchmark tables from ``benchmarks/results/*.json``.

Each table sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers; a
renderer per benchmark turns its JSON into Markdown rows. Run after any benchmark:

    python benchmarks/update_readme.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlsd.serving.loadtest import verdict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _machine(d: dict[str, Any]) -> str:
    m = d.get("machine", {})
    return (
        f"_Measured {d.get('measured_at', '?')[:10]} at {d.get('git_rev', '?')} on "
        f"{m.get('cpus', '?')} cores ({m.get('cpu_model', '?')}), "
        f"{m.get('memory_gb', '?')} GB._"
    )


def simulate(d: dict[str, Any]) -> str:
    rows = [
        "| scale | events | impressions | time (simulate + write) | peak memory | goal |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for scale, r in d["scales"].items():
        goal = ""
        if "goal" in r:
            g = r["goal"]
            verdict = "**met**" if r["meets_goal"] else "**missed**"
            goal = f"<= {g['max_total_s']:.0f} s and <= {g['max_peak_rss_gb']:.0f} GB: {verdict}"
        rows.append(
            f"| {scale} | {r['rows']['events']:,} | {r['events_by_type']['impression']:,} | "
            f"{r['total_s']:.2f} s | {r['peak_rss_gb']:.2f} GB | {goal} |"
        )
    return "\n".join(rows) + "\n\n" + _machine(d)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def serving(d: dict[str, Any]) -> str:
    """Every ``results/serving*.json`` run as a row, by model, then in the order measured, then
    by rate (``d``: the newest)."""
    runs = sorted(
        _serving_runs(),
        key=lambda r: (
            r["model"]["version"],
            r["measured_at"],  # one invocation's runs share it: in the order measured
            r["load"]["workers"],
            r["load"]["rate_rps"],
        ),
    )
    rows = [
        "| model | load | server | achieved | errors | degraded | p50 | p95 | p99 | max | "
        "server CPU a request | measured | goal |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        load, lat, m, g = r["load"], r["latency_ms"], r["model"], r["goal"]
        errors = f"{r['errors']:,}" + (
            f" ({', '.join(f'{k}: {v:,}' for k, v in r['errors_by_kind'].items())})"
            if r.get("errors_by_kind")
            else ""
        )
        cpu = r.get("cpu_seconds", {})
        per_request = (
            f"{1000 * cpu['server'] / r['requests']:.1f} ms"
            if cpu.get("server") is not None and r["requests"]
            else "-"
        )
        threads = load.get("model_threads")
        server = (
            f"{load['workers']} worker(s) x {2 if threads is None else threads} thread(s), "
            # runs measured before the candidate cache existed retrieved on every request
            + ("candidate cache" if load.get("candidate_cache") else "retrieval per request")
        )
        warm = f" after {load['warmup_s']:g} s warm-up" if "warmup_s" in load else ""
        said = verdict(r)  # a run below the goal's rate neither meets nor misses it
        said = f"**{said}**" if said in ("met", "missed") else said
        rows.append(
            f"| {m['kind']} `{m['version']}` | {load['rate_rps']:g} rps x "
            f"{load['duration_s']:g} s{warm}, k={load['k']} | {server} | "
            f"{r['achieved_rps']:g} rps | {errors} | {r.get('degraded', 0):,} | "
            f"{_ms(lat['p50'])} | {_ms(lat['p95'])} | "
            f"{_ms(lat['p99'])} | {_ms(lat['max'])} | {per_request} | "
            f"{r['measured_at'][:10]} at {r['git_rev']} | "
            f"{g['rate']:g} rps, 0 errors or degraded, p50 <= {g['max_p50_ms']:g} ms, p99 <= "
            f"{g['max_p99_ms']:g} ms: {said} |"
        )
    note = (
        "Open loop, latency from each request's due time (a request not answered within the "
        "client timeout counts as an error; *degraded*: answered 200 with a fallback order, e.g. "
        "shed to the popular list after waiting more than 30 ms for a model thread); server CPU "
        "a request: the workers' and supervisor's CPU time over the measured requests; users: "
        f"{d['load']['users']['shares']} of heavy, light and new."
    )
    return "\n".join(rows) + "\n\n" + note + "\n\n" + _machine(d)


def _serving_runs() -> list[dict[str, Any]]:
    """Every ``results/serving*.json`` (one file per measured run)."""
    return [json.loads(p.read_text()) for p in RESULTS.glob("serving*.json")]


def _newest_serving() -> dict[str, Any] | None:
    runs = _serving_runs()
    return max(runs, key=lambda r: r["measured_at"]) if runs else None


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def features(d: dict[str, Any]) -> str:
    off = d["offline"]
    rows = [
        "| measure | value | goal |",
        "|---|---:|---|",
        f"| offline point-in-time training set, `{off['scale']}` | {off['rows']:,} rows x "
        f"{off['features']} features in {off['seconds']:.0f} s | >= "
        f"{off['goal']['min_rows']:,} rows in <= {off['goal']['max_seconds']:.0f} s: "
        f"{_met(off['meets_goal'])} |",
    ]
    if "offline" in d.get("carried_over", {}):
        rows[-1] = rows[-1][:-1] + f"(measured {d['carried_over']['offline'][:10]}) |"
    for name in ("memory", "redis"):
        r = d["online"].get(name)
        if not r:
            continue
        rd = r["read_user_plus_500_videos"]
        rows.append(
            f"| online read, {name} store: 1 user + 500 videos | p50 {rd['p50_ms']:.2f} ms, "
            f"p99 {rd['p99_ms']:.2f} ms | p99 <= {r['goal_read_p99_ms']:g} ms: "
            f"{_met(r['meets_goal'])} |"
        )
        u = r["update_to_visible"]
        rows.append(
            f"| event -> visible online, {name} store | p50 {u['p50_ms']:.1f} ms, p99 "
            f"{u['p99_ms']:.1f} ms | seconds |"
        )
    return "\n".join(rows) + "\n\n" + _machine(d)


def retrieval(d: dict[str, Any]) -> str:
    sm = d["small"]
    rep = sm["report"]
    rows = [
        f"Candidate recall@{rep['k']} on `small` (next {rep['test_days']:g} days' valid "
        f"watches of {rep['n_users']:,} users):",
        "",
        "| source | recall@100 | recall@500 |",
        "|---|---:|---:|",
    ]
    for src in [*rep["sources"], rep["merged"]]:
        rows.append(f"| {src['name']} | {src['recall']['100']:.3f} | {src['recall']['500']:.3f} |")
    g = sm["goals"]
    rows += [
        "",
        f"Merged vs popular-only: {sm['merged_vs_popular']:.2f}x (goal 2x: "
        f"{_met(g['merged_2x_popular_recall@500']['met'])}); two-tower vs popular: "
        f"{sm['two_tower_vs_popular']:.2f}x ({_met(g['two_tower_beats_popular']['met'])}).",
        "",
        f"Index on `large` ({d['large']['index']['n_vectors']:,} vectors, dim "
        f"{d['large']['index']['dim']}, single-thread queries):",
        "",
        "| index | setting | build | bytes/vector | memory vs float32 | recall@100 | p50 | p99 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in d["large"]["table"]:
        bpv = "" if r["bytes_per_vector"] is None else f"{r['bytes_per_vector']:.0f}"
        mem = "" if r["memory_vs_float32"] is None else f"{r['memory_vs_float32']:.1%}"
        rows.append(
            f"| {r['kind']} | {r['setting']} | {r['build_s']:.0f} s | {bpv} | {mem} | "
            f"{r['recall@100']:.3f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms |"
        )
    lg = d["large"]["goals"]
    rows += [
        "",
        f"Goals: HNSW recall@100 >= 0.95 with p99 <= 2 ms "
        f"{_met(lg['hnsw_recall_0.95_p99_2ms']['met'])}; a quantized index <= 25% of float32 "
        f"with recall@100 >= 0.90 {_met(lg['quantized_25pct_recall_0.90']['met'])}; one "
        f"two-tower epoch over {d['large']['training']['positives']:,} positives in "
        f"{lg['epoch_10min_2cores']['epoch_s']:.0f} s (<= 10 min: "
        f"{_met(lg['epoch_10min_2cores']['met'])}).",
    ]
    return "\n".join(rows) + "\n\n" + _machine(d)


def evaluation(d: dict[str, Any]) -> str:
    out = []
    for run in d["runs"].values():
        out += [
            f"**{run['dataset']}**, {run['holdout']}.",
            "",
            "| model | recall@20 | ndcg@20 | map@20 | tuned parameters |",
            "|---|---:|---:|---:|---|",
        ]
        for name, m in run["models"].items():
            params = run["tuned"].get(name, "")
            bold = "**" if name == "pipeline" else ""
            out.append(
                f"| {bold}{name}{bold} | {m.get('recall@20', float('nan')):.4f} | "
                f"{m.get('ndcg@20', float('nan')):.4f} | {m.get('map@20', float('nan')):.4f} | "
                f"{params} |"
            )
        beats = run["pipeline_beats_every_baseline"]
        out += [
            "",
            "Pipeline beats every baseline: "
            + ", ".join(f"{k} {'yes' if v else '**no**'}" for k, v in beats.items())
            + f" ({run['seconds']:.0f} s for the whole run).",
            "",
        ]
    return "\n".join(out) + "\n" + _machine(d)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "simulate": simulate,
    "features": features,
    "retrieval": retrieval,
    "evaluation": evaluation,
    "serving": serving,
}


def render_all(readme: str) -> str:
    for name, fn in RENDERERS.items():
        path = RESULTS / f"{name}.json"
        doc = json.loads(path.read_text()) if path.exists() else None
        if name == "serving":  # one file per run: the newest names the machine
            doc = _newest_serving()
        if doc is None:
            continue
        body = fn(doc)
        pat = re.compile(rf"(<!-- bench:{name} -->).*?(<!-- /bench:{name} -->)", re.S)
        readme = pat.sub(lambda m, b=body: f"{m.group(1)}\n{b}\n{m.group(2)}", readme)
    return readme


def main() -> None:
    p = ROOT / "README.md"
    p.write_text(render_all(p.read_text()))
    print(f"updated {p}")


if __name__ == "__main__":
    main()
