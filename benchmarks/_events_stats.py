"""The pure part of the event-ingestion benchmark (``events.py``): statistics of the figures,
the Must-show checks, and the verifications (log contents, online states, version switch,
readiness over time, visibility). No I/O: every function takes plain values and returns
JSON-ready dicts, so the tests can feed them hand-made cases that must fail."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Check = dict[str, Any]
_DIGITS = re.compile(r"\d+")


def latency_ms(lat_s: np.ndarray | Sequence[float]) -> dict[str, Any]:
    """Count and p50/p95/p99/max in ms (3 decimals) of the finite latencies in seconds; the
    percentiles are None when there are none."""
    x = np.asarray(lat_s, dtype=float)
    x = x[np.isfinite(x)] * 1000
    if not len(x):
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {
        "count": len(x),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(x.max()), 3),
    }


def status_counts(status: np.ndarray | Sequence[int]) -> dict[str, int]:
    """Requests per final HTTP status, as strings; ``"none"`` counts requests never answered."""
    c = Counter(int(s) for s in np.asarray(status).tolist())
    return {("none" if s == 0 else str(s)): n for s, n in sorted(c.items())}


def at_most(value: float | None, limit: float) -> Check:
    """A check ``value <= limit``; a missing value (nothing measured) fails."""
    return {"value": value, "limit": limit, "pass": value is not None and value <= limit}


def equals(value: Any, expected: Any) -> Check:
    return {"value": value, "limit": expected, "pass": value == expected}


def all_pass(checks: Mapping[str, Check]) -> bool:
    return bool(checks) and all(c["pass"] for c in checks.values())


# --- the event log ----------------------------------------------------------------------------


def verify_log(
    log_keys: Iterable[str], sent: Iterable[str], acked: Iterable[str]
) -> dict[str, Any]:
    """Compare the event keys found in the log with what was sent and acknowledged.

    ``missing``: acknowledged but not in the log (lost); ``duplicated``: in the log more than
    once; ``unknown``: in the log but never sent; ``unacked_stored``: sent, never acknowledged,
    yet stored (allowed: the client may have given up after the server made it durable).
    Lists are sorted and cut at 20 examples; the counts are complete.
    """
    counts = Counter(log_keys)
    sent_s, acked_s = set(sent), set(acked)
    missing = sorted(acked_s - counts.keys())
    duplicated = sorted(k for k, n in counts.items() if n > 1)
    unknown = sorted(counts.keys() - sent_s)
    unacked_stored = sorted((counts.keys() & sent_s) - acked_s)
    return {
        "records": sum(counts.values()),
        "acked": len(acked_s),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "unknown": len(unknown),
        "unacked_stored": len(unacked_stored),
        "examples": {
            "missing": missing[:20],
            "duplicated": duplicated[:20],
            "unknown": unknown[:20],
        },
        "ok": not missing and not duplicated and not unknown,
    }


# --- online states ------------------------------------------------------------------------------


def _close(a: Any, b: Any, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=rel, abs_tol=0.0)
    return bool(a == b)


def compare_states(
    got: Mapping[str, Any], want: Mapping[str, Any], *, rel: float = 1e-9
) -> list[str]:
    """How the online state ``got`` (a ``GET /admin/users/{u}`` body) differs from ``want``:
    ``history`` must be equal, every feature equal or within ``rel`` relative; an empty list
    means equal. A body without the fields (e.g. ``{"status": 404}``) is a difference."""
    if "history" not in got or "features" not in got:
        return [f"no state: {dict(got)}"]
    if "history" not in want or "features" not in want:
        return [f"no reference state: {dict(want)}"]
    out = []
    if list(got["history"]) != list(want["history"]):
        out.append(f"history {list(got['history'])[:10]} != {list(want['history'])[:10]}")
    gf, wf = got["features"] or {}, want["features"] or {}
    for name in sorted(set(gf) | set(wf)):
        if name not in gf or name not in wf:
            out.append(f"feature {name}: only in {'got' if name in gf else 'reference'}")
        elif not _close(gf[name], wf[name], rel):
            out.append(f"feature {name}: {gf[name]!r} != {wf[name]!r}")
    return out


def compare_servers(
    got: Mapping[int, Mapping[str, Any]],
    want: Mapping[int, Mapping[str, Any]],
    *,
    workers: int = 2,
    rel: float = 1e-9,
) -> dict[str, Any]:
    """Every worker's state of every user on the server under test (``got``: ``{user:
    {worker: state}}``, from :func:`_events_http.user_states`) against the reference's
    first worker, and the reference's workers among themselves. A user reached on fewer than
    ``workers`` workers of either server counts as a mismatch (not every worker was seen)."""
    mismatches: list[dict[str, Any]] = []
    for u in sorted(set(got) | set(want)):
        g, w = got.get(u, {}), want.get(u, {})
        if len(g) < workers or len(w) < workers:
            mismatches.append({"user": u, "why": f"workers seen: {len(g)} and {len(w)}"})
        if not w:
            continue
        ref = next(iter(w.values()))
        for side, states in (("restarted", g), ("reference", w)):
            for worker, state in states.items():
                diff = compare_states(state, ref, rel=rel)
                if diff:
                    mismatches.append({"user": u, "server": side, "worker": worker, "why": diff})
    return {
        "users": len(set(got) | set(want)),
        "mismatches": len(mismatches),
        "examples": mismatches[:10],
    }


# --- model version switch ------------------------------------------------------------------------


def version_switch(
    t_s: Sequence[float], versions: Sequence[str | None], old: str, new: str
) -> dict[str, Any]:
    """When the answers switched from ``old`` to ``new``: ``t_s`` the answer times (s), in any
    order; None versions (no answer) are skipped. ``old_after_switch`` counts old answers
    after the first new one; ``other`` counts versions that are neither."""
    pairs = sorted((t, v) for t, v in zip(t_s, versions, strict=True) if v is not None)
    first_new = next((t for t, v in pairs if v == new), None)
    last_old = max((t for t, v in pairs if v == old), default=None)
    after = 0 if first_new is None else sum(1 for t, v in pairs if v == old and t > first_new)
    return {
        "first_new_s": None if first_new is None else round(first_new, 3),
        "last_old_s": None if last_old is None else round(last_old, 3),
        "old_answers": sum(1 for _, v in pairs if v == old),
        "new_answers": sum(1 for _, v in pairs if v == new),
        "old_after_switch": after,
        "other": sum(1 for _, v in pairs if v not in (old, new)),
    }


# --- readiness over time ------------------------------------------------------------------------


def segments(samples: Sequence[tuple[float, int]]) -> list[dict[str, Any]]:
    """Compress ``(t_s, status)`` samples (status 0: no answer) into runs of one status:
    ``[{"status", "from_s", "to_s", "samples"}]``."""
    out: list[dict[str, Any]] = []
    for t, s in sorted(samples):
        if out and out[-1]["status"] == s:
            out[-1]["to_s"] = round(t, 3)
            out[-1]["samples"] += 1
        else:
            out.append({"status": s, "from_s": round(t, 3), "to_s": round(t, 3), "samples": 1})
    return out


def readiness(samples: Sequence[tuple[float, int]], restart_s: float) -> dict[str, Any]:
    """/readyz after the online store came back empty at ``restart_s``: when it first said 503,
    when it said 200 for good (``ready_s``; ``repopulate_s`` = ``ready_s - restart_s``) and
    whether it flapped (a 200 between two 503s after the restart, i.e. ready before it was
    repopulated). ``ready_s`` is None when it never answered 200 after its last 503, or never
    said 503 at all (the emptiness went unnoticed)."""
    after = sorted((t, s) for t, s in samples if t >= restart_s)
    first_503 = next((t for t, s in after if s == 503), None)
    last_503 = max((t for t, s in after if s == 503), default=None)
    ready = None
    if last_503 is not None:
        ready = next((t for t, s in after if t > last_503 and s == 200), None)
    flaps = 0
    seen_503 = False
    prev = None
    for _, s in after:
        if s == 503 and prev == 200 and seen_503:
            flaps += 1
        seen_503 = seen_503 or s == 503
        prev = s
    return {
        "first_503_s": first_503,
        "ready_s": ready,
        "repopulate_s": None if ready is None else round(ready - restart_s, 3),
        "flaps": flaps,
        "no_answer": sum(1 for _, s in after if s == 0),
    }


# --- visibility ----------------------------------------------------------------------------------


def first_warm(
    observations: Sequence[tuple[float, str | None, bool | None]], workers: int = 2
) -> dict[str, Any]:
    """From ``(t_s, worker, cold_start)`` answers (in any order; worker None when the server
    does not say; cold_start None for a failed request): when each worker first answered
    ``cold_start: false``, and ``visible_s``, when the last of ``workers`` workers did (None
    until all did). ``regressions`` counts cold answers of a worker after its first warm one."""
    first: dict[str, float] = {}
    regress = 0
    for t, w, cold in sorted(observations, key=lambda o: o[0]):
        key = w or "?"
        if cold is False:
            first.setdefault(key, t)
        elif cold is True and key in first:
            regress += 1
    visible = max(first.values()) if len(first) >= workers else None
    return {
        "workers_warm": {k: round(v, 3) for k, v in first.items()},
        "visible_s": None if visible is None else round(visible, 3),
        "regressions": regress,
    }


def same_answers(answers: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Whether every answer is a 200 body with ``cold_start: false`` and the same list of
    video ids; the number of distinct lists and of cold or failed answers."""
    lists = {tuple(i["video_id"] for i in a["items"]) for a in answers if a and "items" in a}
    cold = sum(1 for a in answers if not a or a.get("cold_start") is not False)
    return {
        "answers": len(answers),
        "distinct_lists": len(lists),
        "cold_or_failed": cold,
        "ok": len(answers) > 0 and len(lists) == 1 and cold == 0,
    }


def count_reasons(reasons: Iterable[str | None]) -> dict[str, int]:
    """``degraded_reason`` strings counted, most common first; every run of digits is replaced
    by ``#`` (ports, waits in ms) so that one cause is one entry; None counts as
    ``"none given"``."""
    return dict(
        Counter("none given" if r is None else _DIGITS.sub("#", r) for r in reasons).most_common()
    )
