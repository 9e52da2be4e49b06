"""Renderers of the serving benchmark's blocks: every run, the runs at the goal's rate by
build, and the sentences with figures in the story of each round (docs/benchmarks.md)."""

from __future__ import annotations

import json
import re
import statistics

from _render import Doc, Missing, Results, measured_on, ms, plural, results_link, span

from mlsd.serving.loadtest import verdict

# What each build measured in the serving runs changed, for the table of 200 rps runs in
# docs/benchmarks.md (words only: every figure comes from the runs). Keyed by the git
# revision a run records.
BUILDS: dict[str, str] = {
    "23659da": "one worker, retrieval on every request",
    "f4ef224": "candidate cache, two workers",
    "c54d9f4": "pre-forked workers handed connections in turn, HTTP fast path, faster request "
    "path, cache saved between starts, cold-start rows",
    "0a4788f": "c54d9f4's code",
    "fc47206": "c54d9f4's code",
    "082d8e9": "+ arrival stamped by the HTTP protocol",
    "81c33d1": "+ ranker compiled with the small code model, leaner re-ranking rules",
    "b0ed871": "+ catalog ids by offset in the re-ranking rules",
    "4550c21": "b0ed871's code",
}
# The rounds of serving work told in docs/benchmarks.md, oldest first: the revisions of each.
ROUNDS: tuple[tuple[str, ...], ...] = (
    ("23659da",),
    ("f4ef224",),
    ("c54d9f4", "0a4788f", "fc47206", "082d8e9"),
    ("81c33d1", "b0ed871", "4550c21"),
)


# --- serving ----------------------------------------------------------------------------------


def _cpu_ms(run: Doc, who: str = "server") -> float | None:
    s = run.get("cpu_seconds", {}).get(who)
    return None if s is None or not run["requests"] else 1000 * s / run["requests"]


def _server(run: Doc) -> str:
    load = run["load"]
    threads = load.get("model_threads")
    threads = 2 if threads is None else threads  # runs before the option had two
    model = "model on the event loop" if threads == 0 else plural(threads, "model thread")
    cache = "candidate cache" if load.get("candidate_cache") else "retrieval on every request"
    return f"{plural(load['workers'], 'worker')}, {model}, {cache}"


def _shortfalls(run: Doc) -> list[str]:
    """Why a run at the goal's rate missed it (empty when it met it)."""
    g, lat, load = run["goal"], run["latency_ms"], run["load"]
    out = []
    if run["errors"]:
        out.append(f"{run['errors']:,} errors")
    if run.get("degraded"):
        out.append(f"{run['degraded']:,} degraded")
    if lat["p50"] is not None and lat["p50"] > g["max_p50_ms"]:
        out.append(f"p50 over {g['max_p50_ms']:g} ms")
    if lat["p99"] is not None and lat["p99"] > g["max_p99_ms"]:
        out.append(f"p99 over {g['max_p99_ms']:g} ms")
    if load["duration_s"] < g["duration_s"]:
        out.append(f"{load['duration_s']:g} s, shorter than the goal's {g['duration_s']:g} s")
    return out


def _verdict(run: Doc) -> str:
    said = verdict(run)  # a run below the goal's rate neither meets nor misses the goal
    if said == "missed":
        why = _shortfalls(run)
        return "**missed**" + (f" ({'; '.join(why)})" if why else "")
    return "**met**" if said == "met" else said


def _goal(run: Doc) -> str:
    g = run["goal"]
    return (
        f"{g['rate']:g} rps for {g['duration_s']:g} s, k={g['k']}: 0 errors or degraded, "
        f"p50 <= {g['max_p50_ms']:g} ms, p99 <= {g['max_p99_ms']:g} ms"
    )


def serving_runs(r: Results) -> str:
    runs = r.serving
    bundles = dict.fromkeys((run["_scale"], run["model"]["version"]) for run in runs)
    rows = [
        "Bundles: "
        + "; ".join(f"`{s}`: `{v}`" for s, v in bundles)
        + f". Goal: {_goal(runs[-1])}.",
        "",
        "| results file | bundle | load | server | achieved | errors | degraded | p50 | p95 | p99 "
        "| max | server CPU a request | measured | goal |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in runs:
        load, lat = run["load"], run["latency_ms"]
        errors = f"{run['errors']:,}" + (
            f" ({', '.join(f'{k}: {v:,}' for k, v in run['errors_by_kind'].items())})"
            if run.get("errors_by_kind")
            else ""
        )
        warm = f" after {load['warmup_s']:g} s" if "warmup_s" in load else ""
        rows.append(
            f"| {results_link(run['_file'])} | {run['_scale']} | {load['rate_rps']:g} rps x "
            f"{load['duration_s']:g} s{warm} | {_server(run)} | {run['achieved_rps']:g} rps | "
            f"{errors} | {run.get('degraded', 0):,} | {ms(lat['p50'])} | {ms(lat['p95'])} | "
            f"{ms(lat['p99'])} | {ms(lat['max'])} | {ms(_cpu_ms(run))} | "
            f"{run['measured_at'][:16].replace('T', ' ')} at {run['git_rev']} | "
            f"{_verdict(run)} |"
        )
    return "\n".join(rows) + "\n\n" + measured_on(runs[-1])


def _at_goal(r: Results) -> list[Doc]:
    """The runs on ``large`` with two workers at the goal's rate, in the order measured."""
    return [
        run
        for run in r.serving
        if run["_scale"] == "large"
        and run["load"]["workers"] == 2
        and run["load"]["rate_rps"] >= run["goal"]["rate"]
    ]


def serving_at_goal(r: Results) -> str:
    rows = [
        "| results file | build | what the build changed | threads | p50 | p99 | degraded "
        "| server CPU a request | load generator CPU a request | goal |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in _at_goal(r):
        lat = run["latency_ms"]
        rows.append(
            f"| {results_link(run['_file'])} | {run['git_rev']} | "
            f"{BUILDS.get(run['git_rev'], '')} | "
            f"{run['load'].get('model_threads', 2)} | {ms(lat['p50'])} | {ms(lat['p99'])} | "
            f"{run.get('degraded', 0):,} | {ms(_cpu_ms(run))} | "
            f"{ms(_cpu_ms(run, 'load_generator'), 2)} | {_verdict(run)} |"
        )
    return "\n".join(rows)


def _round_summary(runs: list[Doc]) -> str:
    met = sum(verdict(run) == "met" for run in runs)
    lat = [run["latency_ms"] for run in runs]
    return (
        f"{plural(len(runs), 'run')} at {runs[0]['load']['rate_rps']:g} rps ("
        + ", ".join(dict.fromkeys(run["git_rev"] for run in runs))
        + f"): goal met in {met}; p50 {span(x['p50'] for x in lat)} ms, p99 "
        f"{span(x['p99'] for x in lat)} ms, server CPU "
        f"{span(_cpu_ms(run) or 0.0 for run in runs)} ms a request"
    )


def _round(r: Results, i: int) -> list[Doc]:
    return [run for run in r.serving if run["git_rev"] in ROUNDS[i]]


def _sweep(runs: list[Doc]) -> str:
    """One clause per run of a sweep: full service with its tail, or how many were shed."""
    parts = []
    for run in runs:
        lat, rate = run["latency_ms"], f"{run['load']['rate_rps']:g} rps"
        if run.get("degraded") or run["errors"]:
            parts.append(
                f"{rate}: {run.get('degraded', 0):,} of {run['requests']:,} requests shed "
                f"to the fallback, {run['errors']:,} errors"
            )
        else:
            parts.append(
                f"{rate}: full service, p50 {ms(lat['p50'])}, p99 {ms(lat['p99'])}, "
                f"{ms(_cpu_ms(run))} of server CPU a request"
            )
    return "; ".join(parts)


def serving_round_first(r: Results) -> str:
    runs = _round(r, 0)
    out = []
    for scale in dict.fromkeys(run["_scale"] for run in runs):
        for workers in sorted({run["load"]["workers"] for run in runs if run["_scale"] == scale}):
            group = [x for x in runs if x["_scale"] == scale and x["load"]["workers"] == workers]
            out.append(f"- `{scale}`, {_server(group[0])}: {_sweep(group)}.")
    return "\n".join(out)


def serving_round_cache(r: Results) -> str:
    runs = _round(r, 1)
    return f"`{runs[0]['_scale']}`, {_server(runs[0])}: {_sweep(runs)}; at the goal's rate " + (
        "; ".join(_verdict(x) for x in runs if verdict(x) != "below the goal's rate") + "."
    )


def serving_round_prefork(r: Results) -> str:
    runs = [x for x in _at_goal(r) if x["git_rev"] in ROUNDS[2]]
    by_threads: dict[int, list[Doc]] = {}
    for run in runs:
        by_threads.setdefault(run["load"]["model_threads"], []).append(run)
    out = [f"- {_round_summary(runs)}."]
    for threads, group in sorted(by_threads.items()):
        out.append(f"- `--threads {threads}`: {_round_summary(group)}.")
    return "\n".join(out)


def serving_round_latest(r: Results) -> str:
    runs = [x for x in _at_goal(r) if x["git_rev"] in ROUNDS[-1]]
    return f"The runs of this round at 200 requests/s on `large`: {_round_summary(runs)}."


def serving_drift(r: Results) -> str:
    """Builds measured more than once at the goal's rate, and the load generator's cost."""
    runs = _at_goal(r)
    by_rev: dict[str, list[Doc]] = {}
    for run in runs:
        by_rev.setdefault(run["git_rev"], []).append(run)
    out = []
    for rev, group in by_rev.items():
        if len(group) > 1:
            out.append(
                f"- {rev}, {len(group)} runs: server CPU "
                + ", ".join(f"{_cpu_ms(x):.1f}" for x in group)
                + " ms a request; p99 "
                + ", ".join(f"{x['latency_ms']['p99']:.1f}" for x in group)
                + " ms."
            )
    two = [x for x in r.serving if x["_scale"] == "large" and x["load"]["workers"] == 2]
    out.append(
        f"- The load generator, on the same two cores, took "
        f"{span((_cpu_ms(x, 'load_generator') or 0.0 for x in two), '{:.2f}')} ms of CPU a "
        f"request over the {len(two)} runs on `large` with two workers."
    )
    return "\n".join(out)


def serving_startup(r: Results) -> str:
    compiled, mapped, rows = [], [], set()
    starts = {x["measured_at"]: x for x in r.serving if x["_scale"] == "large"}  # one a sweep
    for run in starts.values():
        log = run.get("server_log_tail", "")
        if m := re.search(r"ranker compiled in ([\d.]+) s", log):
            compiled.append(float(m.group(1)))
        if m := re.search(
            r"([\d,]+) candidate rows .*? memory-mapped .*? in ([\d.]+) s", log, re.S
        ):
            rows.add(m.group(1))
            mapped.append(float(m.group(2)))
    if not compiled or not mapped:
        return "_No start-up lines in the serving runs' logs._"
    return (
        f"In the {len(mapped)} starts of the `large` server from a saved cache, its log shows "
        f"the ranker compiled in {span(compiled)} s and the {' or '.join(sorted(rows))} "
        f"candidate rows (users and new-user buckets) memory-mapped in {span(mapped)} s."
    )


def serving_current(r: Results) -> str:
    """The newest invocation's runs (one server, one run per rate), then the latest round."""
    newest = r.serving[-1]
    runs = [
        x
        for x in r.serving
        if x["measured_at"] == newest["measured_at"]
        and x["model"]["version"] == newest["model"]["version"]
    ]
    load = newest["load"]
    rows = [
        f"`{newest['_scale']}` bundle `{newest['model']['version']}`, {_server(newest)}; "
        f"each rate {load['duration_s']:g} s after {load.get('warmup_s', 0):g} s of warm-up, "
        f"k={load['k']}, at {newest['git_rev']}:",
        "",
        "| rate | achieved | errors | degraded | p50 | p95 | p99 | max | server CPU a request "
        "| goal |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        lat = run["latency_ms"]
        rows.append(
            f"| {run['load']['rate_rps']:g} rps | {run['achieved_rps']:g} rps | "
            f"{run['errors']:,} | {run.get('degraded', 0):,} | {ms(lat['p50'])} | "
            f"{ms(lat['p95'])} | {ms(lat['p99'])} | {ms(lat['max'])} | "
            f"{ms(_cpu_ms(run))} | {_verdict(run)} |"
        )
    latest = [x for x in _at_goal(r) if x["git_rev"] in ROUNDS[-1]]
    rows += ["", f"Goal: {_goal(newest)}."]
    if latest:
        rows[-1] += f" With the latest round of changes, {_round_summary(latest)}."
    return "\n".join(rows) + "\n\n" + measured_on(newest)


def _redesign_runs(r: Results) -> list[Doc]:
    runs = []
    for p in sorted(r.dir.glob("redesign_serving_*.json")):
        d = json.loads(p.read_text())
        d["_file"] = p.name
        runs.append(d)
    if not runs:
        raise Missing("redesign_serving")
    return sorted(runs, key=lambda x: x["measured_at"])


def serving_redesign(r: Results) -> str:
    """The small demo bundles served before and after the stages redesign, alternating, in one
    session: every run, then the medians of each side."""
    runs = _redesign_runs(r)
    rows = [
        "| results file | code | bundle | p50 | p95 | p99 | max | server CPU a request "
        "| measured |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        lat = run["latency_ms"]
        rows.append(
            f"| {results_link(run['_file'])} | {run['git_rev']} | `{run['model']['version']}` | "
            f"{ms(lat['p50'])} | {ms(lat['p95'])} | {ms(lat['p99'])} | {ms(lat['max'])} | "
            f"{ms(_cpu_ms(run), 2)} | {run['measured_at'][11:16]} |"
        )
    sides: dict[str, list[Doc]] = {}
    for run in runs:
        sides.setdefault(run["git_rev"], []).append(run)
    summary = []
    for rev, rs in sides.items():
        p99 = statistics.median(x["latency_ms"]["p99"] for x in rs)
        cpu = statistics.median(c for x in rs if (c := _cpu_ms(x)) is not None)
        summary.append(
            f"{rev}: {plural(len(rs), 'run')}, median p99 {ms(p99)}, median server CPU a "
            f"request {ms(cpu, 2)}"
        )
    load = runs[-1]["load"]
    head = (
        f"{_server(runs[-1])}; {load['rate_rps']:g} rps for {load['duration_s']:g} s after "
        f"{load.get('warmup_s', 0):g} s of warm-up, k={load['k']}. " + "; ".join(summary) + "."
    )
    return head + "\n\n" + "\n".join(rows) + "\n\n" + measured_on(runs[-1])
