"""Renderer of the ranker trade-off table (``results/rankers.json``, from ``rankers.py``)."""

from __future__ import annotations

from _render import Results, measured_on

NAMES = {
    "gbdt": "GBDT (LightGBM)",
    "gbdt_compiled": "GBDT compiled (lleaves)",
    "deep": "deep (DCN-v2, multi-task)",
    "distilled": "distilled (MLP, GBDT teacher)",
    "int8": "deep, int8 (dynamic quantization)",
}
DATASETS = {"small": "`small` (simulated)", "beauty": "Amazon Beauty"}


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def rankers(r: Results) -> str:
    d = r.get("rankers")
    runs = {k: v for k, v in d["runs"].items() if k in DATASETS}
    k = d.get("k", 20)
    first = next(iter(runs))
    served = runs[first].get("served", {})
    head = ["ranker"] + [f"{DATASETS[n]} NDCG@{k}" for n in runs]
    head += ["rank 500: p50", "p99", "size"] + ([f"served p99 ({first})"] if served else [])
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for kind, name in NAMES.items():
        if kind not in runs[first]["rankers"]:
            continue
        m = runs[first]["rankers"][kind]
        cells = [name]
        cells += [f"{v['rankers'][kind][f'ndcg@{k}']:.4f}" for v in runs.values()]
        lat = m["rank_500"]
        cells += [f"{lat['p50_ms']:.2f} ms", f"{lat['p99_ms']:.2f} ms", _size(m["size_bytes"])]
        if served:
            s = served.get("gbdt" if kind == "gbdt_compiled" else kind)
            cells.append(f"{s['latency_ms']['p99']:.1f} ms" if s and kind != "gbdt" else "-")
        rows.append("| " + " | ".join(cells) + " |")
    notes = [
        f"{DATASETS[n]}: {v['holdout']}; ranker trained on {v['ranker_rows']:,} rows "
        f"({v['features']} features)"
        for n, v in runs.items()
    ]
    out = "\n".join(rows) + "\n\n" + ". ".join(notes) + ". "
    calls = runs[first]["rankers"][next(iter(runs[first]["rankers"]))]["rank_500"]["calls"]
    out += (
        f"Ranking time: `score` of 500 candidate rows in process, one thread, over {calls} "
        f"calls on {DATASETS[first]}'s rows; size: the bytes the ranker saves (compiled: "
        "its native code)."
    )
    capped = {n: v["max_users"] for n, v in runs.items() if v.get("max_users")}
    if capped:
        out += (
            " **Smoke run at reduced size** ("
            + ", ".join(f"{DATASETS[n]}: {c:,} users" for n, c in capped.items())
            + "): not the full benchmark."
        )
    return out + "\n\n" + measured_on(d)
