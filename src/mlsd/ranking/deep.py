"""Neural rankers over the GBDT's feature rows: a deep multi-task network, a distilled student,
and an int8 copy of either.

The interview's trade-off: a complex model for accuracy, but a 50 ms budget for the whole
request, so a lighter GBDT or a distilled model. :class:`DeepRanker` is the three of them
behind the :class:`~mlsd.ranking.Ranker` protocol:

- ``deep``: :class:`~mlsd.ranking.nn.RankerNet` with DCN-v2 cross layers and an MLP shared by
  the objectives (one logit each), trained on the labels (binary cross-entropy summed over
  objectives) with early stopping on the validation rows;
- ``distilled``: the same class with a small MLP, fitted with ``teacher=``: its targets are
  the teacher's calibrated probabilities (soft labels; Hinton et al., "Distilling the
  knowledge in a neural network", 2015), mixed with the labels by ``hard_label_weight``;
- ``int8``: :meth:`DeepRanker.quantize`, the Linear layers dynamically quantized
  (:mod:`.quantize`), recalibrated on the validation rows and checked to order them as the
  float network does.

Every kind is Platt-calibrated per objective on the validation rows and scored as the GBDT is:
``sum_o w_o * p_o``. Files: ``model.pt`` (a state dict, read with ``weights_only``) and
``ranker.json`` (kind, architecture, calibrators, metrics): nothing that runs code on load.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mlsd.data.fingerprint import fingerprint_arrays
from mlsd.errors import ConfigError, DataError
from mlsd.ranking.base import Ranker, validation_metrics
from mlsd.ranking.calibration import PlattCalibrator
from mlsd.ranking.nn import RankerNet, fit_scaler
from mlsd.ranking.quantize import (
    flat_state,
    load_quantized_state,
    quantize_net,
    rank_agreement,
)
from mlsd.retrieval.two_tower_train import inference_threads, reproducible

__all__ = ["DeepRanker"]

NeuralKind = Literal["deep", "distilled", "int8"]
_EVAL_BATCH = 16_384  # rows per forward pass outside training (bounded memory)
_SALIENCY_ROWS = 2048


@dataclass(eq=False)
class DeepRanker:
    """A multi-task neural ranker with explicit hyperparameters (scikit-learn style).

    ``weights``: objective -> weight in the final score (each needs a label column at
    ``fit``); ``hidden``: the shared MLP's widths; ``cross_layers``: DCN-v2 cross layers
    before it (0: a plain MLP); ``learning_rate``, ``weight_decay``, ``batch_size``: Adam;
    ``max_epochs`` and ``patience`` (epochs without a better validation loss before
    stopping); ``hard_label_weight``: with a teacher, the labels' share of the loss;
    ``num_threads``: torch threads while training and predicting (1: a shared 2-core machine
    gains nothing from more and results stay reproducible); ``seed``.

    Learned: ``net_``, ``calibrators_``, ``objectives_``, ``feature_names_``, ``metrics_``
    (validation log-loss, AUC, ECE per objective), ``kind_`` (``deep``, ``distilled`` or
    ``int8``), ``importances_`` (objective -> feature -> mean |input x gradient|),
    ``details_`` (teacher, quantization agreement).
    """

    weights: dict[str, float] = field(default_factory=lambda: {"watch": 1.0, "like": 0.5})
    _: KW_ONLY
    hidden: tuple[int, ...] = (128, 64)
    cross_layers: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 1024
    max_epochs: int = 30
    patience: int = 3
    hard_label_weight: float = 0.0
    num_threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        self.weights = dict(self.weights)
        self.hidden = tuple(int(h) for h in self.hidden)

    def _params(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "cross_layers": self.cross_layers,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "hard_label_weight": self.hard_label_weight,
            "num_threads": self.num_threads,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------------ training --
    def fit(
        self,
        features: np.ndarray,
        labels: Mapping[str, np.ndarray],
        feature_names: Sequence[str],
        *,
        valid: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None,
        categorical: Sequence[str] = (),
        teacher: Ranker | None = None,
        sample_weight: Mapping[str, np.ndarray] | None = None,
    ) -> DeepRanker:
        """Train the network on ``features`` ``(n, f)`` (NaN: missing) and ``labels[o]``
        ``(n,)`` binary for each objective in ``weights``; with a ``teacher`` (a fitted
        ranker over the same columns), on its probabilities instead (distillation). ``valid``
        (features, labels) drives early stopping and calibration (without it, the last 10% of
        rows). ``sample_weight[o]`` ``(n,)``, optional per objective, weighs the training rows'
        loss (validation and calibration stay unweighted). ``categorical`` is accepted for the
        GBDT's signature; the network sees every column as a number. Raises
        :class:`DataError` for a single-class objective or a shape mismatch and
        :class:`ConfigError` for unknown objectives or bad settings."""
        del categorical
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(feature_names) or len(x) == 0:
            raise DataError(
                f"features have shape {x.shape}; expected (n > 0, {len(feature_names)}) columns"
            )
        missing = [o for o in self.weights if o not in labels]
        if missing:
            raise ConfigError(f"no labels for objectives {missing}; got {sorted(labels)}")
        if self.batch_size < 1 or self.max_epochs < 1 or not self.weights:
            raise ConfigError(
                f"batch_size {self.batch_size}, max_epochs {self.max_epochs}, weights "
                f"{self.weights}: expected positive sizes and at least one objective"
            )
        objs = list(self.weights)
        y = np.stack([np.asarray(labels[o]).astype(np.float32) for o in objs], 1)
        sw = dict(sample_weight or {})
        w = np.stack([np.asarray(sw.get(o, np.ones(len(x))), np.float32) for o in objs], 1)
        if w.shape != y.shape or not (w >= 0).all():
            raise DataError(f"sample_weight: expected ({len(x)},) weights >= 0 per objective")
        if valid is None:
            cut = int(len(x) * 0.9)
            x, xv, y, yv, w = x[:cut], x[cut:], y[:cut], y[cut:], w[:cut]
        else:
            xv = np.asarray(valid[0], dtype=np.float32)
            yv = np.stack([np.asarray(valid[1][o]).astype(np.float32) for o in objs], 1)
        for j, o in enumerate(objs):
            if y[:, j].min() == y[:, j].max():
                raise DataError(
                    f"objective '{o}': every training label is {int(y[0, j])}; "
                    "expected both positives and negatives"
                )
        if teacher is not None:
            if teacher.feature_names_ != list(feature_names):
                raise ConfigError(
                    f"teacher features {teacher.feature_names_}; expected {list(feature_names)}"
                )
            t, tv = _teacher_probs(teacher, x, objs), _teacher_probs(teacher, xv, objs)
            a = self.hard_label_weight
            target, target_v = (1 - a) * t + a * y, (1 - a) * tv + a * yv
        else:
            target, target_v = y, yv
        self.objectives_ = objs
        self.feature_names_ = list(feature_names)
        with reproducible(self.seed, self.num_threads):
            center, scale, self.missing_columns_ = fit_scaler(x)
            net = RankerNet(
                x.shape[1], len(objs), self.hidden, self.cross_layers, self.missing_columns_
            )
            net.scaler.center.copy_(torch.from_numpy(center))
            net.scaler.scale.copy_(torch.from_numpy(scale))
            best_epoch = self._train(net, x, target, w, xv, target_v)
            self.net_: nn.Module = net.eval()
            self.importances_ = _saliency(net, xv if len(xv) else x, objs, self.feature_names_)
        self.kind_: NeuralKind = "deep" if teacher is None else "distilled"
        self.details_: dict[str, Any] = {}
        if teacher is not None:
            self.details_["teacher"] = {
                "kind": str(getattr(teacher, "kind_", "gbdt")),
                "fingerprint": teacher.fingerprint(),
            }
        self._calibrate(xv, yv, best_epoch)
        return self

    def _train(
        self,
        net: RankerNet,
        x: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        xv: np.ndarray,
        yv: np.ndarray,
    ) -> int:
        """Adam on the mean binary cross-entropy of every objective (rows weighed by ``w``,
        ``(n, objectives)``); the best epoch's weights on the validation rows are kept (all
        ``max_epochs`` when there are none). Returns the best epoch (1-based)."""
        opt = torch.optim.Adam(
            net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        loss_fn = nn.BCEWithLogitsLoss()
        row_loss = nn.BCEWithLogitsLoss(reduction="none")
        xt, yt = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y))
        wt = torch.from_numpy(np.ascontiguousarray(w))
        xvt, yvt = torch.from_numpy(xv), torch.from_numpy(np.ascontiguousarray(yv))
        gen = torch.Generator().manual_seed(self.seed)
        best, best_epoch, best_state, stale = math.inf, self.max_epochs, None, 0
        for epoch in range(1, self.max_epochs + 1):
            net.train()
            order = torch.randperm(len(xt), generator=gen)
            for lo in range(0, len(xt), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                loss = (row_loss(net(xt[idx]), yt[idx]) * wt[idx]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if len(xvt) == 0:
                continue
            net.eval()
            with torch.no_grad():
                total = sum(
                    float(loss_fn(net(xvt[lo : lo + _EVAL_BATCH]), yvt[lo : lo + _EVAL_BATCH]))
                    * len(xvt[lo : lo + _EVAL_BATCH])
                    for lo in range(0, len(xvt), _EVAL_BATCH)
                )
            val = total / len(xvt)
            if val < best - 1e-6:
                best, best_epoch, stale = val, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        return best_epoch

    def _calibrate(self, xv: np.ndarray, yv: np.ndarray, best_epoch: int) -> None:
        """Platt per objective on the validation logits (identity without both classes
        there), and the validation metrics."""
        logits = self._logits(xv) if len(xv) else np.zeros((0, len(self.objectives_)))
        self.calibrators_: dict[str, PlattCalibrator] = {}
        self.metrics_: dict[str, dict[str, float]] = {}
        for j, obj in enumerate(self.objectives_):
            cal = PlattCalibrator()
            if len(yv) and yv[:, j].min() != yv[:, j].max():
                cal.fit(logits[:, j], yv[:, j])
                self.metrics_[obj] = validation_metrics(
                    cal.predict(logits[:, j]), yv[:, j], best_epoch
                )
            self.calibrators_[obj] = cal

    def quantize(
        self, valid: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None
    ) -> DeepRanker:
        """An int8 copy (this ranker is left as it is): every Linear layer dynamically
        quantized. With ``valid`` (features, labels) it is recalibrated on those rows and
        ``details_["int8"]`` records how closely it orders them as the float network does
        (Spearman correlation of the scores, largest probability difference)."""
        self._check()
        if self.kind_ == "int8":
            raise ConfigError("this ranker is already int8")
        q = copy.copy(self)
        q.net_ = quantize_net(copy.deepcopy(self.net_))
        q.kind_ = "int8"
        q.details_ = {**self.details_, "quantized_from": self.kind_}
        q.calibrators_ = dict(self.calibrators_)
        q.metrics_ = dict(self.metrics_)
        if valid is not None and len(valid[0]):
            xv = np.asarray(valid[0], dtype=np.float32)
            yv = np.stack([np.asarray(valid[1][o]).astype(np.float32) for o in q.objectives_], 1)
            best = {o: m.get("best_iteration", 0.0) for o, m in self.metrics_.items()}
            q._calibrate(xv, yv, int(max(best.values(), default=0)))
            ref, got = self.predict_proba(xv), q.predict_proba(xv)
            q.details_["int8"] = {
                "valid_rows": len(xv),
                "score_spearman": rank_agreement(self.score(xv), q.score(xv)),
                "max_abs_proba_diff": float(max(np.max(np.abs(ref[o] - got[o])) for o in ref)),
            }
        return q

    # ---------------------------------------------------------------------- prediction --
    def _check(self) -> None:
        if not hasattr(self, "net_"):
            raise ConfigError("DeepRanker is not fitted; call fit() or load() first")

    def _logits(self, features: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != len(self.feature_names_):
            raise DataError(
                f"features have shape {tuple(x.shape)}; expected (n, "
                f"{len(self.feature_names_)}) columns"
            )
        with torch.inference_mode(), inference_threads(self.num_threads):
            if len(x) <= _EVAL_BATCH:
                return self.net_(x).numpy()
            return np.concatenate(
                [
                    self.net_(x[lo : lo + _EVAL_BATCH]).numpy()
                    for lo in range(0, len(x), _EVAL_BATCH)
                ]
            )

    def predict_proba(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Calibrated probability per objective, each ``(n,)``."""
        self._check()
        logits = self._logits(features)
        return {
            o: self.calibrators_[o].predict(logits[:, j]) for j, o in enumerate(self.objectives_)
        }

    def score(self, features: np.ndarray) -> np.ndarray:
        """Weighted sum of calibrated objective probabilities, ``(n,)``."""
        probs = self.predict_proba(features)
        return np.sum([self.weights[o] * p for o, p in probs.items()], axis=0)

    def compile(self) -> bool:
        """Nothing to compile: the network already predicts in its serving form (False)."""
        self._check()
        return False

    def fingerprint(self) -> str:
        """A digest of the kind, objective weights, feature names, architecture, network
        state (int8 values and scales when quantized) and calibrators."""
        self._check()
        parts: dict[str, Any] = {
            "kind": self.kind_,
            "weights": dict(self.weights),
            "objectives": self.objectives_,
            "features": self.feature_names_,
            "arch": {
                "hidden": list(self.hidden),
                "cross_layers": self.cross_layers,
                "missing_columns": self.missing_columns_,
            },
        }
        parts.update({f"state.{k}": v for k, v in flat_state(self.net_).items()})
        for obj, cal in self.calibrators_.items():
            parts[f"calibrator.{obj}"] = cal.to_dict()
        return fingerprint_arrays(parts)

    def feature_importance(self, objective: str = "watch") -> dict[str, float]:
        """Feature -> mean |input x gradient| of ``objective``'s logit on validation rows,
        summed over the feature's value and missing indicator (measured at fit)."""
        return dict(self.importances_[objective])

    # ------------------------------------------------------------------- persistence --
    def save(self, directory: str | Path) -> None:
        self._check()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(self.net_.state_dict(), d / "model.pt")
        meta = {
            "kind": self.kind_,
            "weights": self.weights,
            "objectives": self.objectives_,
            "feature_names": self.feature_names_,
            "missing_columns": self.missing_columns_,
            "params": self._params(),
            "calibrators": {o: c.to_dict() for o, c in self.calibrators_.items()},
            "metrics": self.metrics_,
            "importances": self.importances_,
            "details": self.details_,
        }
        (d / "ranker.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path) -> DeepRanker:
        """Read a ranker written by :meth:`save`; :class:`DataError` names the file that is
        missing or unreadable."""
        d = Path(directory)
        try:
            meta = json.loads((d / "ranker.json").read_text())
            kind = meta["kind"]
            params = dict(meta["params"])
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise DataError(f"{d / 'ranker.json'}: cannot load ranker metadata: {e}") from e
        if kind not in ("deep", "distilled", "int8"):
            raise DataError(f"{d / 'ranker.json'}: kind {kind!r} is not a neural ranker")
        params["hidden"] = tuple(params["hidden"])
        r = cls(meta["weights"], **params)
        r.kind_ = kind
        r.objectives_ = list(meta["objectives"])
        r.feature_names_ = list(meta["feature_names"])
        r.missing_columns_ = [int(j) for j in meta["missing_columns"]]
        r.metrics_ = meta.get("metrics", {})
        r.importances_ = meta.get("importances", {})
        r.details_ = meta.get("details", {})
        r.calibrators_ = {o: PlattCalibrator.from_dict(c) for o, c in meta["calibrators"].items()}
        net = RankerNet(
            len(r.feature_names_), len(r.objectives_), r.hidden, r.cross_layers, r.missing_columns_
        )
        path = d / "model.pt"
        try:
            if kind == "int8":
                r.net_ = load_quantized_state(net, path)
            else:
                net.load_state_dict(torch.load(path, weights_only=True), strict=True)
                r.net_ = net.eval()
        except Exception as e:  # torch raises many kinds (unpickling, shapes, missing keys)
            raise DataError(f"{path}: not a valid {kind} ranker state: {e}") from e
        return r


def _teacher_probs(teacher: Ranker, x: np.ndarray, objectives: list[str]) -> np.ndarray:
    """``float32[n, o]``: the teacher's calibrated probabilities of ``objectives``."""
    if len(x) == 0:
        return np.zeros((0, len(objectives)), np.float32)
    p = teacher.predict_proba(x)
    unknown = [o for o in objectives if o not in p]
    if unknown:
        raise ConfigError(f"the teacher predicts {sorted(p)}; the student needs {unknown}")
    return np.stack([np.asarray(p[o], np.float32) for o in objectives], 1)


def _saliency(
    net: RankerNet, x: np.ndarray, objectives: list[str], names: list[str]
) -> dict[str, dict[str, float]]:
    """Objective -> feature -> mean |input x gradient| of its logit over (at most
    :data:`_SALIENCY_ROWS` of) ``x``, through the scaled inputs (a feature's value and, when
    it has one, its missing indicator)."""
    rows = torch.from_numpy(np.ascontiguousarray(x[:_SALIENCY_ROWS]))
    f = len(names)
    with torch.no_grad():
        s0 = net.scaler(rows)
    out: dict[str, dict[str, float]] = {}
    for j, obj in enumerate(objectives):
        s = s0.clone().requires_grad_(True)
        net.from_scaled(s)[:, j].sum().backward()
        assert s.grad is not None
        contrib = (s * s.grad).abs().mean(0).detach().numpy()
        imp = contrib[:f].copy()
        imp[net.scaler.missing_columns.numpy()] += contrib[f:]
        out[obj] = {n: float(v) for n, v in zip(names, imp, strict=True)}
    net.zero_grad(set_to_none=True)
    return out
