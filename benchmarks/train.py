"""Benchmark: ``mlsd train`` with defaults on a simulated platform (the ``large`` goal: within
20 minutes and 12 GB peak RSS on the benchmark machine).

Simulates the scale (or reuses ``--data``), then runs ``mlsd train --events DATA --out BUNDLE``
as a child process, as a user would, and records its wall seconds, the peak resident memory
of the process tree (sampled every 0.5 s with psutil, and the kernel's ``ru_maxrss`` of the
largest child), the stage lines the command printed, and the bundle's size. Writes
``benchmarks/results/train_<scale>.json``.

    python benchmarks/train.py                        # large, seed 0, in a temporary directory
    python benchmarks/train.py --scale small          # a quick check
    python benchmarks/train.py --data runs/sim-large  # reuse a simulated log
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

GOALS = {"large": {"seconds": 20 * 60, "peak_rss_gb": 12.0}}


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child that just exited
            total += p.memory_info().rss
    return total


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_train(data: Path, bundle: Path, extra: list[str]) -> dict[str, Any]:
    mlsd = Path(sys.executable).with_name("mlsd")
    cmd = [str(mlsd), "train", "--events", str(data), "--out", str(bundle), *extra]
    print("$", " ".join(cmd), flush=True)
    peak = 0
    done = threading.Event()
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(child.pid)

    timeline: list[tuple[float, float]] = []  # (seconds, GB) every ~10 s: where the peak is

    def sample() -> None:
        nonlocal peak
        last = -10.0
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                rss = _tree_rss(ps)
                peak = max(peak, rss)
                now = time.perf_counter() - t0
                if now - last >= 10:
                    timeline.append((round(now, 1), round(rss / 1024**3, 2)))
                    last = now
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines: list[tuple[float, str]] = []
    assert child.stdout is not None
    for line in child.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip()))
        print(f"[{lines[-1][0]:7.1f}s] {line.rstrip()}", flush=True)
    rc = child.wait()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    if rc != 0:
        raise SystemExit(f"mlsd train exited {rc}")
    # ru_maxrss is KiB on Linux: the largest child's peak (the trainer is one process).
    ru_max_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {
        "command": " ".join(cmd[1:]),
        "stage_seconds": manifest.get("metrics", {}).get("seconds"),
        "seconds": seconds,
        "peak_rss_gb_sampled": peak / 1024**3,
        "peak_rss_gb_ru_maxrss": ru_max_gb,
        "bundle_mb": _dir_bytes(bundle) / 1024**2,
        "log": [f"{t:.1f}s {line}" for t, line in lines if line.strip()][-60:],
        "rss_timeline_gb": timeline,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="large", help="tiny, small or large")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="reuse a simulated dataset dir")
    ap.add_argument("--name", default=None, help="results/<name>.json (default train_<scale>)")
    a = ap.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mlsd-train-") as tmp:
        data = a.data
        sim_seconds = None
        if data is None:
            data = Path(tmp) / "sim"
            t0 = time.perf_counter()
            subprocess.run(
                [
                    str(Path(sys.executable).with_name("mlsd")),
                    "simulate",
                    "--scale",
                    a.scale,
                    "--seed",
                    str(a.seed),
                    "--out",
                    str(data),
                ],
                check=True,
            )
            sim_seconds = time.perf_counter() - t0
        manifest = json.loads((data / "manifest.json").read_text())
        res = run_train(data, Path(tmp) / "bundle", [])
    goal = GOALS.get(a.scale)
    payload: dict[str, Any] = {
        "scale": a.scale,
        "seed": a.seed,
        "rows": manifest.get("rows"),
        "simulate_seconds": sim_seconds,
        "load_average_at_start": [round(x, 2) for x in load],
        **res,
    }
    if goal:
        payload["goal"] = goal
        payload["met"] = (
            res["seconds"] <= goal["seconds"]
            and max(res["peak_rss_gb_sampled"], res["peak_rss_gb_ru_maxrss"]) <= goal["peak_rss_gb"]
        )
    path = write_result(a.name or f"train_{a.scale}", payload)
    print(json.dumps({k: v for k, v in payload.items() if k != "log"}, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
