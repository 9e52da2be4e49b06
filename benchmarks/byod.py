"""Bring your own data, judged from outside: `mlsd train` / `mlsd recommend` against a tuned EASE.

What a user does with their own log, and how an outside harness would score it: the log's
positives are split per user by time (each user's last 20% to test; ties keep file order), the
training part is written as a plain CSV, ``mlsd train`` runs on it with defaults and ``mlsd
recommend --exclude-seen`` writes 20 items per test user. EASE (Steck 2019) is fitted here with
NumPy on the same training CSV, its L2 tuned by grid on a validation split carved the same way
from the training part. Both are scored with this file's own NDCG@20 and Recall@20 (binary
relevance, ideal DCG over min(20, test items)). Nothing of mlsd's evaluation code is used.

Logs: MovieLens 100k (ratings >= 4 are the positives) and Amazon Beauty (every review).
Writes ``benchmarks/results/byod.json``.

    python benchmarks/byod.py [--only ml100k|beauty]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MLSD = Path(sys.executable).parent / "mlsd"
K = 20
GRID = (30.0, 100.0, 300.0, 1000.0)


def _log(name: str) -> pd.DataFrame:
    if name == "ml100k":
        df = pd.read_csv(SHARED / "ml-100k" / "u.data", sep="\t",
                         names=["user_id", "item_id", "rating", "timestamp"])  # fmt: skip
        return df[df.rating >= 4][["user_id", "item_id", "timestamp"]].reset_index(drop=True)
    return pd.read_csv(SHARED / "amazon-beauty" / "events.csv")


def _split(df: pd.DataFrame, share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's last ``share`` of positives (by time, then file order) to test; users with
    one positive stay in training."""
    df = df.drop_duplicates(["user_id", "item_id"]).copy()
    df["_row"] = np.arange(len(df))
    df = df.sort_values(["user_id", "timestamp", "_row"], kind="stable")
    n = df.groupby("user_id")["item_id"].transform("size")
    pos = df.groupby("user_id").cumcount()
    n_test = np.where(n >= 2, np.maximum(1, np.floor(n * share)), 0)
    test = pos >= n - n_test
    return df[~test].drop(columns="_row"), df[test].drop(columns="_row")


def _score(recs: dict[Any, list[Any]], test: pd.DataFrame) -> dict[str, float]:
    truth = test.groupby("user_id")["item_id"].apply(set).to_dict()
    disc = 1 / np.log2(np.arange(2, K + 2))
    nd, rc = [], []
    for u, rel in truth.items():
        got = recs.get(u, [])[:K]
        h = np.array([g in rel for g in got], float)
        dcg = float((h * disc[: len(h)]).sum())
        nd.append(dcg / disc[: min(K, len(rel))].sum())
        rc.append(h.sum() / len(rel))
    return {"ndcg@20": float(np.mean(nd)), "recall@20": float(np.mean(rc)), "users": len(nd)}


def _ease_recs(train: pd.DataFrame, users: np.ndarray, l2: float) -> dict[Any, list[Any]]:
    uu, ui = np.unique(train.user_id, return_inverse=True)
    ii, ij = np.unique(train.item_id, return_inverse=True)
    x = sp.csr_matrix((np.ones(len(ui), np.float32), (ui, ij)), shape=(len(uu), len(ii)))
    g = np.asarray((x.T @ x).toarray(), np.float32)
    g[np.diag_indices_from(g)] += l2
    p = np.linalg.inv(g)
    b = p / -np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    row = {u: i for i, u in enumerate(uu)}
    out: dict[Any, list[Any]] = {}
    for lo in range(0, len(users), 1024):
        ub = [u for u in users[lo : lo + 1024] if u in row]
        xs = x[[row[u] for u in ub]]
        s = np.asarray(xs @ b)
        s[xs.nonzero()] = -np.inf
        top = np.argsort(-s, axis=1)[:, :K]
        out.update({u: ii[t].tolist() for u, t in zip(ub, top, strict=True)})
    return out


def _run(name: str) -> dict[str, Any]:
    df = _log(name)
    train, test = _split(df)
    users = np.unique(test.user_id)
    # EASE, tuned on a split of the training part
    inner, valid = _split(train)
    t0 = time.perf_counter()
    trials = {l2: _score(_ease_recs(inner, np.unique(valid.user_id), l2), valid)["ndcg@20"]
              for l2 in GRID}  # fmt: skip
    best = max(trials, key=lambda v: trials[v])
    ease = _score(_ease_recs(train, users, best), test)
    ease_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        tr, us, recs, bundle = (Path(d) / n for n in ("train.csv", "users.csv", "recs.csv", "b"))
        train.to_csv(tr, index=False)
        pd.DataFrame({"user_id": users}).to_csv(us, index=False)
        t0 = time.perf_counter()
        subprocess.run([str(MLSD), "train", "--events", str(tr), "--out", str(bundle)], check=True)
        train_s = time.perf_counter() - t0
        rec = ["recommend", "--model", str(bundle), "--users", str(us), "--out", str(recs)]
        subprocess.run([str(MLSD), *rec, "-k", str(K), "--exclude-seen"], check=True)
        r = pd.read_csv(recs).sort_values(["user_id", "rank"])
        got = r.groupby("user_id")["item_id"].apply(list).to_dict()
    mlsd = _score(got, test)
    return {
        "dataset": name,
        "train_rows": len(train),
        "test_users": len(users),
        "ease": {**ease, "l2": best, "validation": trials, "seconds": ease_s},
        "mlsd": {**mlsd, "train_seconds": train_s},
        "mlsd_beats_ease": {k: bool(mlsd[k] > ease[k]) for k in ("ndcg@20", "recall@20")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", choices=["ml100k", "beauty"], default=None)
    args = ap.parse_args()
    runs = {}
    for name in ("ml100k", "beauty"):
        if args.only in (None, name):
            print(f"{name} ...", flush=True)
            runs[name] = _run(name)
            print(runs[name], flush=True)
    path = Path(__file__).resolve().parent / "results" / "byod.json"
    if args.only is not None and path.exists():
        import json

        runs = {**json.loads(path.read_text()).get("runs", {}), **runs}
    print(f"wrote {write_result('byod', {'runs': runs})}")


if __name__ == "__main__":
    main()
