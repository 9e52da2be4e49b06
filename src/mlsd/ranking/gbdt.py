"""The GBDT ranker: one LightGBM binary model per objective, Platt-calibrated, combined.

The book's video-recommendation ranker predicts several engagement objectives (here: valid
watch, the primary; like, secondary) and ranks by a weighted sum of their probabilities:
``score = sum_o w_o * P(o | user, video, context)``. Weights live in config so that product
owners can trade watch time against explicit feedback without retraining.

Models are saved in LightGBM's text format plus a JSON sidecar (no pickle: safe to load).

Serving compiles the boosters to native code with lleaves (LLVM; Boehm, "lleaves: a compiler
for LightGBM", 2021): on the few hundred rows of one request it predicts the same margins
several times faster than LightGBM's interpreter (docs/benchmarks.md), because each tree
becomes straight-line branches instead of a walk over node arrays. The compiled code is built
from the saved text at load time, never read from a file.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from mlsd.data.fingerprint import fingerprint_arrays
from mlsd.errors import ConfigError, DataError
from mlsd.ranking.base import Ranker as Ranker  # re-exported: its home before base.py
from mlsd.ranking.base import validation_metrics
from mlsd.ranking.calibration import PlattCalibrator

log = logging.getLogger(__name__)

# compiled margins may differ from LightGBM's in the last bits (the order in which leaf values
# are summed); anything larger means the compiler misread the model
_COMPILE_TOLERANCE = 1e-9

# Forests up to this many leaves (trees x leaves per tree) are compiled with LLVM's "small"
# code model: 32-bit offsets, faster than the "large" default on request-sized batches
# (docs/benchmarks.md, round 4). lleaves defaults to "large" because "small" cannot address
# code over 2 GB (it would crash); this bound keeps the generated code well under that (~100
# bytes of code per leaf would still be 100 MB).
_SMALL_CODE_LEAVES = 1_000_000


@dataclass(eq=False)
class GBDTRanker:
    """LightGBM per objective with explicit hyperparameters (scikit-learn style).

    ``weights`` maps objective name -> weight in the final score; every objective needs a label
    column at ``fit``. Learned state: ``boosters_``, ``calibrators_``, ``feature_names_``,
    ``metrics_`` (validation log-loss, AUC and ECE per objective).
    """

    weights: dict[str, float] = field(default_factory=lambda: {"watch": 1.0, "like": 0.5})
    _: KW_ONLY
    objective: str = "binary"
    n_estimators: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 63
    min_child_samples: int = 50
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 30
    num_threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        self.weights = dict(self.weights)  # the ranker's own copy of a mapping given

    def _params(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def fit(
        self,
        features: np.ndarray,
        labels: Mapping[str, np.ndarray],
        feature_names: Sequence[str],
        *,
        valid: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None,
        categorical: Sequence[str] = (),
        sample_weight: Mapping[str, np.ndarray] | None = None,
        groups: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> GBDTRanker:
        """Train one booster per weighted objective.

        ``features`` (n, f); ``labels[o]`` (n,) binary for each objective o in ``weights``;
        ``valid`` (features, labels) is used for early stopping and calibration (without it,
        the last 10% of rows are held out). ``sample_weight[o]`` (n,), optional per objective,
        weighs training rows (e.g. a positive's play count as a confidence); validation and
        calibration stay unweighted, so probabilities keep meaning the label rate.
        ``groups`` (the query, e.g. the user, of each training and each validation row) is
        what ``objective="lambdarank"`` ranks within (LambdaMART, Burges 2010: gradients of
        NDCG swaps, early stopping on NDCG@20); its margins are then Platt-calibrated like the
        binary ones, which keeps their order. Under lambdarank ``sample_weight`` grades the
        positives' relevance instead (LightGBM weighs queries, not rows). Raises DataError
        when an objective has a single class (e.g. no positives) or lambdarank lacks
        ``groups``, ConfigError for unknown objectives.
        """
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(feature_names):
            raise DataError(
                f"features have shape {x.shape}; expected (n, {len(feature_names)}) columns"
            )
        missing = [o for o in self.weights if o not in labels]
        if missing:
            raise ConfigError(f"no labels for objectives {missing}; got {sorted(labels)}")
        sw = {o: np.asarray(w, np.float32) for o, w in (sample_weight or {}).items()}
        bad = [o for o, w in sw.items() if w.shape != (len(x),) or not (w >= 0).all()]
        if bad:
            raise DataError(f"sample_weight of {bad}: expected ({len(x)},) weights >= 0")
        rank = self.objective == "lambdarank"
        grades: dict[str, np.ndarray] = {}
        if rank and (groups is None or valid is None):
            raise DataError("objective 'lambdarank': give the groups and a validation set")
        if rank and groups is not None and valid is not None:
            # rows of one query must be contiguous: order both sets by group (stable)
            o, ov = np.argsort(groups[0], kind="stable"), np.argsort(groups[1], kind="stable")
            x, labels = x[o], {k: np.asarray(v)[o] for k, v in labels.items()}
            valid = (np.asarray(valid[0])[ov], {k: np.asarray(v)[ov] for k, v in valid[1].items()})
            sizes = np.unique(groups[0][o], return_counts=True)[1]
            sizes_v = np.unique(groups[1][ov], return_counts=True)[1]
            # LightGBM weighs queries, not rows, under lambdarank: a weighted positive is a
            # more relevant one instead (graded relevance round(weight), from 1 to 30)
            grades = {name: np.clip(np.rint(w[o]), 1, 30) for name, w in sw.items()}
            sw = {}
        if valid is None:
            cut = int(len(x) * 0.9)
            xv, lv = x[cut:], {o: np.asarray(y)[cut:] for o, y in labels.items()}
            x, labels = x[:cut], {o: np.asarray(y)[:cut] for o, y in labels.items()}
            sw = {o: w[:cut] for o, w in sw.items()}
        else:
            xv = np.asarray(valid[0], dtype=np.float32)
            lv = dict(valid[1])
        self.feature_names_ = list(feature_names)
        self.boosters_: dict[str, lgb.Booster] = {}
        self.calibrators_: dict[str, PlattCalibrator] = {}
        self.metrics_: dict[str, dict[str, float]] = {}
        cats = [c for c in categorical if c in self.feature_names_]
        for obj in self.weights:
            y = np.asarray(labels[obj]).astype(np.float32)
            yv = np.asarray(lv[obj]).astype(np.float32)
            if y.min() == y.max():
                raise DataError(
                    f"objective '{obj}': every training label is {int(y[0])}; "
                    "expected both positives and negatives"
                )
            if rank and obj in grades:
                y = np.where(y > 0, grades[obj], 0.0).astype(np.float32)
            dtrain = lgb.Dataset(
                x,
                y,
                weight=sw.get(obj),
                group=sizes if rank else None,
                feature_name=self.feature_names_,
                categorical_feature=cats or "auto",
                free_raw_data=False,
            )
            dvalid = lgb.Dataset(xv, yv, group=sizes_v if rank else None, reference=dtrain)
            callbacks: list[Any] = []
            has_valid = len(yv) > 0 and yv.min() != yv.max()
            if has_valid and self.early_stopping_rounds > 0:
                callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
            metric = {"metric": ["ndcg"], "eval_at": [20]} if rank else {
                "metric": ["binary_logloss", "auc"]}  # fmt: skip
            booster = lgb.train(
                {**self._params(), **metric},
                dtrain,
                num_boost_round=self.n_estimators,
                valid_sets=[dvalid] if has_valid else None,
                callbacks=callbacks,
            )
            self.boosters_[obj] = booster
            cal = PlattCalibrator()
            if has_valid:
                margin = np.asarray(booster.predict(xv, raw_score=True))
                cal.fit(margin, yv)
                self.metrics_[obj] = validation_metrics(
                    cal.predict(margin), yv, booster.best_iteration or booster.current_iteration()
                )
            self.calibrators_[obj] = cal
        return self

    def predict_proba(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Calibrated probability per objective, each (n,)."""
        compiled = getattr(self, "compiled_", None)
        if compiled is not None:
            x64 = np.ascontiguousarray(features, dtype=np.float64)
            return {
                obj: self.calibrators_[obj].predict(m.predict(x64, n_jobs=1))
                for obj, m in compiled.items()
            }
        x = np.asarray(features, dtype=np.float32)
        out = {}
        for obj, booster in self.boosters_.items():
            margin = np.asarray(booster.predict(x, raw_score=True, num_threads=1))
            out[obj] = self.calibrators_[obj].predict(margin)
        return out

    def compile(self, probe: np.ndarray | None = None) -> bool:
        """Compile every booster to native code (lleaves) for :meth:`predict_proba`.

        Each compiled model is checked against LightGBM on ``probe`` rows (``(n, f)``; by
        default 256 seeded rows drawn around each feature's split thresholds, a fifth missing)
        and used only if every margin agrees to 1e-9. Returns True when compiled; False, with
        a warning logged and LightGBM kept, when lleaves is not installed, compilation fails
        or a margin disagrees. Takes ~0.1 s per tree (~20 s for the ``large`` ranker's 139).
        """
        if not getattr(self, "boosters_", None):
            raise ConfigError("GBDTRanker is not fitted; call fit() or load() first")
        try:
            import lleaves
        except ImportError as e:
            log.warning("ranker not compiled (lleaves unavailable: %s); LightGBM predicts", e)
            return False
        x = self._probe_rows() if probe is None else np.asarray(probe, np.float64)
        compiled: dict[str, Any] = {}
        try:
            with tempfile.TemporaryDirectory(prefix="mlsd-ranker-") as tmp:
                for obj, b in self.boosters_.items():
                    path = Path(tmp) / f"{obj}.txt"
                    b.save_model(str(path))
                    m = lleaves.Model(model_file=str(path))
                    small = _leaves(path) <= _SMALL_CODE_LEAVES
                    m.compile(raw_score=True, fcodemodel="small" if small else "large")
                    want = np.asarray(b.predict(x, raw_score=True, num_threads=1))
                    got = m.predict(np.ascontiguousarray(x), n_jobs=1)
                    err = float(np.max(np.abs(want - got))) if len(x) else 0.0
                    if not err <= _COMPILE_TOLERANCE:
                        log.warning(
                            "ranker not compiled: objective %r margins differ by %.3g from "
                            "LightGBM's; LightGBM predicts", obj, err,
                        )  # fmt: skip
                        return False
                    compiled[obj] = m
        except Exception as e:  # llvmlite/lleaves failures must not stop a service from starting
            log.warning("ranker not compiled (%s: %s); LightGBM predicts", type(e).__name__, e)
            return False
        self.compiled_ = compiled
        return True

    def _probe_rows(self, n: int = 256) -> np.ndarray:
        """Rows around the models' split thresholds (both sides of each) with 20% missing."""
        rng = np.random.default_rng(0)
        f = len(self.feature_names_)
        thresholds: list[list[float]] = [[] for _ in range(f)]
        for b in self.boosters_.values():
            col = {name: j for j, name in enumerate(b.feature_name())}
            df = b.trees_to_dataframe()
            split = df[df["split_feature"].notna()]
            for name, t in zip(split["split_feature"], split["threshold"], strict=True):
                if isinstance(t, float | int) and np.isfinite(t) and col.get(name, f) < f:
                    thresholds[col[name]].append(float(t))
        x = rng.normal(size=(n, f))
        for j, ts in enumerate(thresholds):
            if ts:
                pick = np.asarray(ts)[rng.integers(0, len(ts), n)]
                x[:, j] = pick + rng.choice([-1e-6, 1e-6, 0.0, 1.0, -1.0], n)
        x[rng.random((n, f)) < 0.2] = np.nan
        return x

    def score(self, features: np.ndarray) -> np.ndarray:
        """Weighted sum of calibrated objective probabilities, (n,)."""
        probs = self.predict_proba(features)
        return np.sum([self.weights[o] * p for o, p in probs.items()], axis=0)

    def fingerprint(self) -> str:
        """A digest of the fitted ranker: objective weights, feature names, each booster's
        model text and calibrator."""
        if not getattr(self, "boosters_", None):
            raise ConfigError("GBDTRanker is not fitted; call fit() or load() first")
        parts: dict[str, Any] = {"weights": dict(self.weights), "features": self.feature_names_}
        for obj, booster in self.boosters_.items():
            parts[f"model.{obj}"] = booster.model_to_string()
            parts[f"calibrator.{obj}"] = self.calibrators_[obj].to_dict()
        return fingerprint_arrays(parts)

    def feature_importance(self, objective: str = "watch") -> dict[str, float]:
        b = self.boosters_[objective]
        gains = b.feature_importance(importance_type="gain")
        return dict(zip(self.feature_names_, map(float, gains), strict=True))

    # -- persistence (LightGBM text + JSON; nothing executable)
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for obj, b in self.boosters_.items():
            b.save_model(str(d / f"ranker_{obj}.txt"))
        meta = {
            "weights": self.weights,
            "feature_names": self.feature_names_,
            "calibrators": {o: c.to_dict() for o, c in self.calibrators_.items()},
            "metrics": self.metrics_,
            "params": self._params(),
            "kind": "gbdt",
        }
        (d / "ranker.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path) -> GBDTRanker:
        d = Path(directory)
        try:
            meta = json.loads((d / "ranker.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{d / 'ranker.json'}: cannot load ranker metadata: {e}") from e
        r = cls(meta["weights"])
        r.feature_names_ = list(meta["feature_names"])
        r.metrics_ = meta.get("metrics", {})
        r.boosters_ = {}
        for obj in meta["weights"]:
            path = d / f"ranker_{obj}.txt"
            try:
                r.boosters_[obj] = lgb.Booster(model_file=str(path))
            except lgb.basic.LightGBMError as e:
                raise DataError(f"{path}: not a valid LightGBM model: {e}") from e
        r.calibrators_ = {o: PlattCalibrator.from_dict(c) for o, c in meta["calibrators"].items()}
        return r


def _leaves(model_file: Path) -> int:
    """Total leaves of the forest in a LightGBM text model (its ``num_leaves=`` lines)."""
    with model_file.open() as f:
        return sum(int(ln[11:]) for ln in f if ln.startswith("num_leaves="))
