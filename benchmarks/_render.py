"""Renderers of the benchmark tables: the results files of ``benchmarks/results`` read once,
and one function per generated block of README.md and docs/benchmarks.md (demo, simulation,
features, retrieval, evaluation; serving is in ``_render_serving``). Each returns Markdown;
a block's results file that is missing raises :class:`Missing`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

Doc = dict[str, Any]


class Missing(Exception):
    """A results file a block needs is not there."""


class Results:
    """The JSON files of one results directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def get(self, name: str) -> Doc:
        path = self.dir / f"{name}.json"
        if not path.exists():
            raise Missing(name)
        doc: Doc = json.loads(path.read_text())
        return doc

    @cached_property
    def serving(self) -> list[Doc]:
        """Every ``serving*.json`` (one file per run) in the order measured; ``_file`` names
        it and ``_scale`` is the simulated scale its name gives."""
        runs = []
        for p in self.dir.glob("serving*.json"):
            d = json.loads(p.read_text())
            d["_file"] = p.name
            parts = p.stem.split("_")
            d["_scale"] = parts[1] if len(parts) > 1 else "?"
            runs.append(d)
        if not runs:
            raise Missing("serving")
        return sorted(runs, key=lambda r: (r["measured_at"], r["load"]["rate_rps"], r["_file"]))


# --- formatting -------------------------------------------------------------------------------


def ms(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f} ms"


def met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def checks_verdict(d: Doc) -> str:
    """A results file's must-show ``checks`` in one cell: met (how many), or which missed."""
    failed = [name for name, c in d["checks"].items() if not c["pass"]]
    if failed:
        return "**missed**: " + "; ".join(failed)
    return f"**met** ({len(d['checks'])} checks)"


def span(values: Iterable[float], fmt: str = "{:.1f}") -> str:
    """``a-b`` from the smallest to the largest value (one value when they agree)."""
    vals = sorted(values)
    lo, hi = fmt.format(vals[0]), fmt.format(vals[-1])
    return lo if lo == hi else f"{lo}-{hi}"


def plural(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def measured_on(d: Doc) -> str:
    m = d.get("machine", {})
    dirty = " with uncommitted changes" if d.get("git_dirty") else ""
    return (
        f"_Measured {d.get('measured_at', '?')[:10]} at {d.get('git_rev', '?')}{dirty} on "
        f"{m.get('cpus', '?')} cores ({m.get('cpu_model', '?')}), "
        f"{m.get('memory_gb', '?')} GB._"
    )


def results_link(name: str) -> str:
    return f"[`{name}`](../benchmarks/results/{name})"


# --- demo, simulation, features -------------------------------------------------------------


def demo(r: Results) -> str:
    d = r.get("demo")
    new = d.get("new_users") or {}
    rows = ["| model | recall@20 | ndcg@20 |" + (" new users: ndcg@20 |" if new else ""),
            "|---|---:|---:|" + ("---:|" if new else "")]  # fmt: skip
    for name, m in d["models"].items():
        b = "**" if name == "pipeline" else ""
        cells = [f"{b}{name}{b}", f"{b}{m['recall@20']:.4f}{b}", f"{b}{m['ndcg@20']:.4f}{b}"]
        if new:
            cells.append(f"{b}{new[name]['ndcg@20']:.4f}{b}" if name in new else "")
        rows.append("| " + " | ".join(cells) + " |")
    out = "\n".join(rows) + "\n\n"
    if new:
        out += "New users: test users without training history (baselines fall back to MostPop). "
    cr = d.get("candidate_recall")
    if cr:
        out += (
            f"Candidate recall@{cr['k']} of the merged sources: {cr['by_source']['merged']:.3f} "
            f"({cr['users']:,} sampled test users). "
        )
    out += (
        f"`{d['scale']}` scale, seed {d['seed']}; {d['seconds']['total']:.0f} s end to end "
        "without the HTTP service.\n\n" + measured_on(d)
    )
    return out


def demo_candidates(r: Results) -> str:
    cr = r.get("demo")["candidate_recall"]
    rows = [f"| source | recall@{cr['k']} |", "|---|---:|"]
    rows += [f"| {k} | {v:.3f} |" for k, v in cr["by_source"].items()]
    return "\n".join(rows)


def demo_stages(r: Results) -> str:
    d = r.get("demo")
    rows = ["| stage | seconds |", "|---|---:|"]
    # the stages as the demo timed them; the total is this benchmark's wall clock around it
    rows += [f"| {k} | {v:.1f} |" for k, v in d["seconds"]["stages"].items() if k != "total"]
    rows.append(f"| **whole run** | **{d['seconds']['total']:.1f}** |")
    return "\n".join(rows)


def simulate(r: Results) -> str:
    d = r.get("simulate")
    rows = [
        "| scale | users | videos | events | impressions | simulate + write | peak memory | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for scale, s in d["scales"].items():
        goal = ""
        if "goal" in s:
            g = s["goal"]
            goal = (
                f"<= {g['max_total_s']:.0f} s and <= {g['max_peak_rss_gb']:.0f} GB: "
                f"{met(s['meets_goal'])}"
            )
        n = s["rows"]
        rows.append(
            f"| {scale} | {n['users']:,} | {n['videos']:,} | {n['events']:,} | "
            f"{s['events_by_type']['impression']:,} | {s['total_s']:.2f} s | "
            f"{s['peak_rss_gb']:.2f} GB | {goal} |"
        )
    return "\n".join(rows) + "\n\n" + measured_on(d)


def features(r: Results) -> str:
    d = r.get("features")
    off = d["offline"]
    carried = d.get("carried_over", {})
    rows = [
        "| measure | value | goal |",
        "|---|---:|---|",
        f"| offline point-in-time training set, `{off['scale']}` | {off['rows']:,} rows x "
        f"{off['features']} features in {off['seconds']:.0f} s | >= "
        f"{off['goal']['min_rows']:,} rows in <= {off['goal']['max_seconds']:.0f} s: "
        f"{met(off['meets_goal'])} |",
    ]
    for name in ("memory", "redis"):
        s = d["online"].get(name)
        if not s:
            continue
        rd = s["read_user_plus_500_videos"]
        rows.append(
            f"| online read, {name} store: 1 user + 500 videos | p50 {rd['p50_ms']:.2f} ms, "
            f"p99 {rd['p99_ms']:.2f} ms | p99 <= {s['goal_read_p99_ms']:g} ms: "
            f"{met(s['meets_goal'])} |"
        )
        u = s["update_to_visible"]
        rows.append(
            f"| event -> visible online, {name} store | p50 {u['p50_ms']:.1f} ms, p99 "
            f"{u['p99_ms']:.1f} ms | seconds |"
        )
    notes = [
        f"The {part} part was carried over from the run of {when[:10]}."
        for part, when in carried.items()
    ]
    return "\n".join(rows) + "\n\n" + "".join(n + " " for n in notes) + measured_on(d)


def features_stages(r: Results) -> str:
    off = r.get("features")["offline"]
    rows = ["| stage of the offline build | seconds |", "|---|---:|"]
    rows += [f"| {k} | {v:.1f} |" for k, v in off["stages_s"].items()]
    return "\n".join(rows) + (
        f"\n\nCPU time {off['cpu_seconds']:.0f} s over {off['seconds']:.0f} s of wall time; "
        f"peak memory {off['peak_rss_gb_incl_dataset']:.1f} GB including the dataset."
    )


# --- retrieval --------------------------------------------------------------------------------


def _retrieval_goals(d: Doc) -> str:
    sm, lg = d["small"], d["large"]["goals"]
    g = sm["goals"]
    return (
        f"Merged vs popular-only recall@500: {sm['merged_vs_popular']:.2f}x (goal 2x: "
        f"{met(g['merged_2x_popular_recall@500']['met'])}); two-tower vs popular: "
        f"{sm['two_tower_vs_popular']:.2f}x ({met(g['two_tower_beats_popular']['met'])}). "
        f"Index goals on `large`: HNSW recall@100 >= 0.95 with p99 <= 2 ms "
        f"{met(lg['hnsw_recall_0.95_p99_2ms']['met'])}; a quantized index <= 25% of float32 "
        f"with recall@100 >= 0.90 {met(lg['quantized_25pct_recall_0.90']['met'])}; one "
        f"two-tower epoch over {d['large']['training']['positives']:,} positives in "
        f"{lg['epoch_10min_2cores']['epoch_s']:.0f} s (<= 10 min: "
        f"{met(lg['epoch_10min_2cores']['met'])})."
    )


def _sources(d: Doc) -> tuple[Doc, list[Doc]]:
    rep = d["small"]["report"]
    return rep, [*rep["sources"], rep["merged"]]


def retrieval_summary(r: Results) -> str:
    d = r.get("retrieval")
    rep, srcs = _sources(d)
    rows = [
        f"Candidate recall on `small` (next {rep['test_days']:g} days' valid watches of "
        f"{rep['n_users']:,} users):",
        "",
        "| source | recall@100 | recall@500 |",
        "|---|---:|---:|",
    ]
    rows += [f"| {s['name']} | {s['recall']['100']:.3f} | {s['recall']['500']:.3f} |" for s in srcs]
    return "\n".join(rows) + "\n\n" + _retrieval_goals(d) + "\n\n" + measured_on(d)


def retrieval_sources(r: Results) -> str:
    d = r.get("retrieval")
    rep, srcs = _sources(d)
    cuts = [str(c) for c in rep["cutoffs"]]
    rows = [
        f"`small`, split at {rep['split_time'][:10]}: sources fitted on "
        f"{rep['n_train_positives']:,} training positives, scored on the next "
        f"{rep['test_days']:g} days' valid watches of {rep['n_users']:,} users "
        f"({rep['n_cold_users']:,} without history):",
        "",
        "| source | "
        + " | ".join(f"recall@{c}" for c in cuts)
        + " | new users, recall@500 | fit |",
        "|---|" + "---:|" * (len(cuts) + 2),
    ]
    fit = rep["fit_s"]
    for s in srcs:
        f = f"{fit[s['name']]:.1f} s" if s["name"] in fit else ""
        rows.append(
            f"| {s['name']} | "
            + " | ".join(f"{s['recall'][c]:.3f}" for c in cuts)
            + f" | {s['recall_cold']['500']:.3f} | {f} |"
        )
    o = d["small"].get("oracle")
    if o:
        rows += [
            "",
            f"An oracle quota over the same sources ({o['replicates']} replicates) reaches "
            f"recall@500 {o['recall']['500']:.3f} ({d['small']['oracle_vs_popular']:.2f}x "
            "popular-only).",
        ]
    return "\n".join(rows)


def retrieval_index(r: Results) -> str:
    d = r.get("retrieval")
    ix = d["large"]["index"]
    rows = [
        f"Index on `large` ({ix['n_vectors']:,} vectors, dim {ix['dim']}; {ix['latency']}):",
        "",
        "| index | setting | build | bytes/vector | memory vs float32 | recall@100 | p50 | p99 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in d["large"]["table"]:
        bpv = "" if t["bytes_per_vector"] is None else f"{t['bytes_per_vector']:.0f}"
        mem = "" if t["memory_vs_float32"] is None else f"{t['memory_vs_float32']:.1%}"
        rows.append(
            f"| {t['kind']} | {t['setting']} | {t['build_s']:.0f} s | {bpv} | {mem} | "
            f"{t['recall@100']:.3f} | {ms(t['p50_ms'], 2)} | {ms(t['p99_ms'], 2)} |"
        )
    return "\n".join(rows) + "\n\n" + _retrieval_goals(d) + "\n\n" + measured_on(d)


# --- evaluation -------------------------------------------------------------------------------


def evaluation_summary(r: Results) -> str:
    d = r.get("evaluation")
    runs = list(d["runs"].values())
    models = list(dict.fromkeys(m for run in runs for m in run["models"]))
    head = "| model | " + " | ".join(f"{run['dataset']}: recall@20 | ndcg@20" for run in runs)
    rows = [head + " |", "|---|" + "---:|---:|" * len(runs)]
    for name in models:
        b = "**" if name == "pipeline" else ""
        cells = []
        for run in runs:
            m = run["models"].get(name, {})
            cells += [f"{m.get(k, float('nan')):.4f}" for k in ("recall@20", "ndcg@20")]
        rows.append(f"| {b}{name}{b} | " + " | ".join(cells) + " |")
    notes = [f"{run['dataset']}: {run['holdout']}." for run in runs]
    return "\n".join(rows) + "\n\n" + " ".join(notes) + "\n\n" + measured_on(d)


def evaluation(r: Results) -> str:
    d = r.get("evaluation")
    out = []
    for run in d["runs"].values():
        out += [
            f"**{run['dataset']}**, {run['holdout']}.",
            "",
            "| model | recall@20 | ndcg@20 | map@20 | fit | tuned parameters |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, m in run["models"].items():
            params = run["tuned"].get(name, "")
            b = "**" if name == "pipeline" else ""
            fit = run.get("fit_seconds", {}).get(name)
            out.append(
                f"| {b}{name}{b} | {m.get('recall@20', float('nan')):.4f} | "
                f"{m.get('ndcg@20', float('nan')):.4f} | {m.get('map@20', float('nan')):.4f} | "
                f"{'' if fit is None else f'{fit:.1f} s'} | {params} |"
            )
        beats = run["pipeline_beats_every_baseline"]
        out += [
            "",
            "Pipeline beats every baseline: "
            + ", ".join(f"{k} {'yes' if v else '**no**'}" for k, v in beats.items())
            + f" ({run['seconds']:.0f} s for the whole run).",
            "",
        ]
        new = {
            m: v
            for m, v in run.get("new_users", {}).items()
            if v.get("ndcg@20") == v.get("ndcg@20") and v
        }
        if new:
            out += [
                "New users (no training positive): "
                + ", ".join(f"{m} ndcg@20 {v['ndcg@20']:.4f}" for m, v in new.items())
                + ".",
                "",
            ]
    return "\n".join(out) + "\n" + measured_on(d)


def byod(r: Results) -> str:
    d = r.get("byod")
    rows = [
        "| log | test users | `mlsd train`/`recommend`: ndcg@20 | recall@20 | tuned EASE: ndcg@20 "
        "| recall@20 | EASE L2 | `mlsd train` |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in d["runs"].values():
        m, e = run["mlsd"], run["ease"]
        b = {k: "**" if v else "" for k, v in run["mlsd_beats_ease"].items()}
        rows.append(
            f"| {run['dataset']} | {run['test_users']:,} | {b['ndcg@20']}{m['ndcg@20']:.4f}"
            f"{b['ndcg@20']} | {b['recall@20']}{m['recall@20']:.4f}{b['recall@20']} | "
            f"{e['ndcg@20']:.4f} | {e['recall@20']:.4f} | {e['l2']:g} | "
            f"{m['train_seconds']:.0f} s |"
        )
    return "\n".join(rows) + "\n\n" + measured_on(d)


def train(r: Results) -> str:
    """``mlsd train`` with defaults on ``large``: wall time, peak memory and the largest
    stages, against the goal."""
    d = r.get("train_large")
    s = d.get("stage_seconds") or {}
    peak = max(d["peak_rss_gb_sampled"], d["peak_rss_gb_ru_maxrss"])
    g = d["goal"]
    rows = [
        "| log | events | `mlsd train` | peak memory | bundle | goal |",
        "|---|---:|---:|---:|---:|---|",
        f"| `large` (simulated) | {d['rows']['events']:,} | {d['seconds'] / 60:.1f} min | "
        f"{peak:.1f} GB | {d['bundle_mb'] / 1024:.1f} GB | <= {g['seconds'] / 60:.0f} min and "
        f"<= {g['peak_rss_gb']:g} GB: {'**met**' if d['met'] else '**missed**'} |",
    ]
    parts = {
        "retrieval at the label cut": s.get("retrieval_fit_for_labels"),
        "ranker rows and features": (s.get("training_rows") or 0)
        + (s.get("training_features") or 0),
        "ranker": s.get("ranker_fit"),
        "retrieval refit": s.get("retrieval_fit"),
        "online features": s.get("materialize"),
    }
    where = ", ".join(f"{k} {v:.0f} s" for k, v in parts.items() if v)
    return "\n".join(rows) + (f"\n\nStages: {where}." if where else "") + "\n\n" + measured_on(d)
