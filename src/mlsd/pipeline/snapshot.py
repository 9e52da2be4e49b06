"""Snapshots of a model's online state: everything :meth:`TwoStage.apply_events
<mlsd.pipeline.two_stage.TwoStage.apply_events>` changes, so that a restarted worker rebuilds
it from the bundle, a snapshot and the event log after the snapshot, instead of replaying the
whole log.

What a snapshot holds: the online features' state (per-entity window sums and hourly buckets,
topic decay sums, key interning, the hour clock), the retrieval history, the rules' seen items
and blocked creators, and the users touched since the bundle was loaded (their candidate-cache
rows are stale). Not the static model (sources, ranker, catalog): a snapshot restores only
into the model version that wrote it.

The blob is a pickle (protocol 5) of plain data only: dicts, lists, tuples, ints, strings and
numpy arrays of numbers. :func:`load` unpickles through an allowlist (numpy's array and dtype
reconstructors, nothing else), so a snapshot cannot execute code when read.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any, Protocol

import numpy as np

from mlsd.errors import BundleError, FeatureStoreError
from mlsd.pipeline.cache import CachedRetrieval
from mlsd.pipeline.ranking import RankingStage
from mlsd.pipeline.retrieval import RetrievalStage
from mlsd.pipeline.state import UserState

__all__ = ["FORMAT", "OnlineParts", "TouchedUsers", "dump", "load", "restore"]

FORMAT = 1  # bump when the payload's layout changes; load refuses other formats
KIND = "mlsd.online_state"

# What a snapshot may reference by name: numpy's reconstructors of arrays, dtypes and scalars
# (numpy 2 names, then numpy 1's). Containers and numbers need no name.
_ALLOWED = {
    (mod, name)
    for core in ("numpy._core", "numpy.core")
    for mod, name in (
        (f"{core}.numeric", "_frombuffer"),
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
    )
} | {("numpy", "dtype"), ("numpy", "ndarray")}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a snapshot")
        return super().find_class(module, name)


class TouchedUsers:
    """The ids of users whose online state changed since the bundle was loaded: numpy chunks,
    deduplicated once they pile up (memory: 8 bytes a user, not a Python set)."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []

    def add(self, users: np.ndarray) -> None:
        self._chunks.append(np.unique(np.asarray(users, dtype=np.int64)))
        if len(self._chunks) > 64:
            self._chunks = [self.array()]

    def array(self) -> np.ndarray:
        """Sorted distinct ids."""
        if not self._chunks:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(self._chunks))

    def replace(self, users: np.ndarray) -> None:
        self._chunks = [np.unique(np.asarray(users, dtype=np.int64))]


class OnlineParts(Protocol):
    """What a snapshot reads and replaces of a fitted pipeline
    (:class:`~mlsd.pipeline.two_stage.TwoStage` has it all)."""

    version: str
    retrieval: RetrievalStage
    ranking: RankingStage
    state: UserState
    cache: CachedRetrieval
    touched_users_: TouchedUsers


def _object_state(obj: object) -> dict[str, Any]:
    # Histories are captured whole, through the same attribute dict pickle itself would use:
    # they have no narrower export, and restoring must update the very object every fitted
    # source holds (see _load_object_state).
    return dict(vars(obj))


def _load_object_state(obj: object, state: dict[str, Any], what: str) -> None:
    """Replace ``obj``'s attributes in place (every fitted source holds this same history
    object, so it must not be swapped for a new one)."""
    if set(state) != set(vars(obj)):
        raise BundleError(
            f"online-state snapshot: the {what} has attributes {sorted(state)}; this code's "
            f"has {sorted(vars(obj))} (a snapshot of another mlsd version?)"
        )
    vars(obj).update(state)


def dump(model: OnlineParts) -> bytes:
    """The online state of ``model`` as bytes (call under its read lock)."""
    state = model.state
    payload = {
        "kind": KIND,
        "format": FORMAT,
        "version": model.version,
        "features": model.ranking.online_.state(),
        "history": _object_state(model.retrieval.history_),
        "seen": _object_state(state.seen),
        "blocked": {int(u): sorted(int(c) for c in cs) for u, cs in state.blocked.items()},
        "touched_users": model.touched_users_.array(),
    }
    return pickle.dumps(payload, protocol=5)


def load(blob: bytes, version: str) -> dict[str, Any]:
    """The payload of a snapshot written by :func:`dump` for model ``version``. Raises
    :class:`~mlsd.errors.BundleError` for bytes that are not a snapshot, another format, or
    another model version (naming both)."""
    try:
        payload = _Unpickler(io.BytesIO(blob)).load()
    except Exception as e:  # truncated, garbage, or a forbidden name: all "not a snapshot"
        raise BundleError(
            f"not an online-state snapshot ({len(blob)} bytes): {type(e).__name__}: {e}"
        ) from e
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        raise BundleError(f"not an online-state snapshot ({len(blob)} bytes)")
    if payload.get("format") != FORMAT:
        raise BundleError(
            f"online-state snapshot format {payload.get('format')!r}; this mlsd reads format "
            f"{FORMAT}: rebuild the state from the bundle and the event log"
        )
    if payload.get("version") != version:
        raise BundleError(
            f"online-state snapshot of model version {payload.get('version')!r}; this model is "
            f"version {version!r}: a snapshot restores only into the model that wrote it"
        )
    return payload


def restore(model: OnlineParts, payload: dict[str, Any]) -> int:
    """Replace ``model``'s online state by ``payload`` (from :func:`load`; call under its
    write lock): rewrites every online-store record from it and invalidates the candidate
    cache rows of every user touched before or after. Returns the records written."""
    try:
        written = model.ranking.online_.load_state(payload["features"])
    except FeatureStoreError as e:
        raise BundleError(f"online-state snapshot: {e}") from e
    _load_object_state(model.retrieval.history_, payload["history"], "retrieval history")
    _load_object_state(model.state.seen, payload["seen"], "seen history")
    model.state.blocked = {int(u): set(cs) for u, cs in payload["blocked"].items()}
    touched = np.asarray(payload["touched_users"], dtype=np.int64)
    model.cache.invalidate(np.union1d(model.touched_users_.array(), touched))
    model.touched_users_.replace(touched)
    return written


def user_state(model: Any, u: int) -> dict[str, Any]:
    """One user's online state in ``model`` (a fitted TwoStage, read-locked by the caller),
    JSON-ready: ``history`` (positive video ids, newest first, up to 50), ``seen`` (distinct
    items seen), ``blocked_creators`` (sorted), ``features`` (the user's record in the online
    store: a float per feature, a list for vector features, NaN as None; the defaults for an
    unknown user). Raises OnlineStoreUnavailable when the store is down."""
    online = model.ranking.online_
    lay = online.layouts["user"]
    history = model.history_of(u, 50)
    seen = len(np.unique(model.state.watched(u)))
    blocked = sorted(model.state.blocked.get(u, ()))
    record = online.store.get("user", np.array([u], np.int64), lay.features)[0]
    features: dict[str, Any] = {}
    lo = 0
    for name, width in zip(lay.features, lay.widths, strict=True):
        vals = [None if math.isnan(x) else x for x in record[lo : lo + width].tolist()]
        lo += width
        features[name] = vals[0] if model.ranking.registry[name].width == 1 else vals
    return {
        "history": [int(v) for v in history.tolist()],
        "seen": seen,
        "blocked_creators": [int(c) for c in blocked],
        "features": features,
    }
