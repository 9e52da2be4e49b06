"""One entry point per direction for every ranker kind: :func:`fit_ranker` trains the kind a
config names on labelled rows, :func:`load_ranker` reads back whatever kind was saved."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mlsd.errors import ConfigError, DataError
from mlsd.ranking.base import RANKER_KINDS, Ranker
from mlsd.ranking.config import RankerConfig
from mlsd.ranking.deep import DeepRanker
from mlsd.ranking.gbdt import GBDTRanker

__all__ = ["fit_ranker", "load_ranker"]

log = logging.getLogger(__name__)

Valid = tuple[np.ndarray, Mapping[str, np.ndarray]]


def fit_ranker(
    kind: str,
    config: RankerConfig,
    weights: Mapping[str, float],
    x: np.ndarray,
    labels: Mapping[str, np.ndarray],
    names: Sequence[str],
    *,
    valid: Valid,
    seed: int,
    sample_weight: Mapping[str, np.ndarray] | None = None,
    say: Callable[[str], None] | None = None,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> Ranker:
    """Train a ranker of ``kind`` (``gbdt``, ``deep``, ``distilled``, ``int8``) configured by
    ``config`` for the objectives in ``weights`` on rows ``x`` (columns ``names``) and
    ``labels``, with ``valid`` (features, labels) for early stopping and calibration and
    ``sample_weight`` (objective -> ``(n,)``, optional) weighing the training rows.

    ``distilled`` trains its teacher first (``config.student.teacher``) on the same rows;
    ``int8`` trains the deep network and quantizes it. Raises :class:`ConfigError` for an
    unknown kind. ``groups`` (the user of each training and validation row) is what a GBDT
    with ``config.objective == "lambdarank"`` ranks within; the neural kinds are pointwise."""
    say = say or (lambda _m: None)
    w = dict(weights)
    sw = sample_weight or None
    if kind == "gbdt":
        return GBDTRanker(w, **config.kwargs(seed)).fit(
            x, labels, names, valid=valid, sample_weight=sw, groups=groups
        )
    if kind in ("deep", "int8"):
        deep = DeepRanker(w, **config.deep.kwargs(seed)).fit(
            x, labels, names, valid=valid, sample_weight=sw
        )
        if kind == "deep":
            return deep
        q = deep.quantize(valid)
        agree = q.details_.get("int8", {}).get("score_spearman", float("nan"))
        say(f"ranker: int8 orders the validation rows as the float network (Spearman {agree:.4f})")
        return q
    if kind == "distilled":
        teacher_kind = config.student.teacher
        teacher = fit_ranker(
            teacher_kind,
            config,
            w,
            x,
            labels,
            names,
            valid=valid,
            seed=seed,
            sample_weight=sample_weight,
            groups=groups,
        )
        say(f"ranker: {teacher_kind} teacher trained; distilling it into the student")
        student = DeepRanker(w, **config.student.kwargs(seed))
        return student.fit(x, labels, names, valid=valid, teacher=teacher, sample_weight=sw)
    raise ConfigError(f"ranker kind {kind!r}: expected one of {', '.join(RANKER_KINDS)}")


def load_ranker(directory: str | Path) -> Ranker:
    """The ranker saved in ``directory``, of the kind its ``ranker.json`` names (none named:
    ``gbdt``, what every ranker was before the neural kinds). :class:`DataError` names the
    file when it is missing, unreadable or of an unknown kind."""
    d = Path(directory)
    path = d / "ranker.json"
    try:
        kind = json.loads(path.read_text()).get("kind", "gbdt")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise DataError(f"{path}: cannot load ranker metadata: {e}") from e
    if kind == "gbdt":
        return GBDTRanker.load(d)
    if kind in ("deep", "distilled", "int8"):
        return DeepRanker.load(d)
    raise DataError(f"{path}: ranker kind {kind!r}; this mlsd reads {', '.join(RANKER_KINDS)}")
