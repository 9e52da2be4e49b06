"""The networks of the neural rankers: the input transform, DCN-v2 cross layers, a shared MLP
and one logit per objective.

Shapes: ``(n, f)`` float32 feature rows in -> ``(n, n_objectives)`` logits out. The input
transform lives in the network (its statistics are buffers of the state dict), so that a saved
ranker carries everything it needs to score raw feature rows, and so that the online path and
training transform rows the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["FeatureScaler", "RankerNet", "fit_scaler"]

CLIP = 5.0  # standard deviations: a heavy tail the log did not tame cannot swamp a layer


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def fit_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(center, scale, missing)``: ``float32[f]`` mean and standard deviation of each
    column of ``x`` ``(n, f)`` after a signed log1p, NaNs ignored (a column with no value or
    a single value: center 0 or its value, scale 1), and the columns with a NaN in ``x``."""
    t = _signed_log1p(np.asarray(x, dtype=np.float64))
    finite = np.isfinite(t)
    n = finite.sum(axis=0)
    t0 = np.where(finite, t, 0.0)
    center = np.divide(t0.sum(axis=0), n, out=np.zeros(t.shape[1]), where=n > 0)
    var = np.divide(
        (np.where(finite, t - center, 0.0) ** 2).sum(axis=0),
        n,
        out=np.zeros(t.shape[1]),
        where=n > 0,
    )
    scale = np.sqrt(var)
    scale[~(scale > 1e-6)] = 1.0
    missing = np.flatnonzero(np.isnan(x).any(axis=0)).tolist()
    return center.astype(np.float32), scale.astype(np.float32), missing


class FeatureScaler(nn.Module):
    """Raw feature rows ``(n, f)`` -> ``[z, missing]`` ``(n, f + m)``: ``z`` is the signed
    log1p of each feature standardized by training statistics and clipped to +-:data:`CLIP`
    (0 when missing); ``missing`` is 1 where one of the ``missing_columns`` (the ``m``
    columns that had NaNs in training) is NaN: missing is information (a candidate that a
    source did not propose is not one it ranked average). A NaN elsewhere is scored as 0."""

    center: torch.Tensor
    scale: torch.Tensor
    missing_columns: torch.Tensor

    def __init__(self, n_features: int, missing_columns: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.register_buffer(
            "missing_columns", torch.tensor(list(missing_columns), dtype=torch.long)
        )
        self.n_out = n_features + len(missing_columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(x.index_select(1, self.missing_columns))
        t = torch.sign(x) * torch.log1p(torch.abs(x))
        z = torch.nan_to_num((t - self.center) / self.scale, nan=0.0, posinf=CLIP, neginf=-CLIP)
        return torch.cat([z.clamp_(-CLIP, CLIP), missing.to(z.dtype)], dim=1)


class RankerNet(nn.Module):
    """A multi-task ranking network: :class:`FeatureScaler`, ``cross_layers`` DCN-v2 cross
    layers, an MLP of ``hidden`` widths (ReLU) shared by every objective, and a linear head
    per objective (the columns of ``heads``).

    Cross layer (Wang et al., "DCN V2", WWW 2021, eq. 1): ``x_{l+1} = x_0 * (W_l x_l + b_l) +
    x_l``, full-rank ``W_l``: explicit feature crosses of bounded degree, which an MLP learns
    only slowly. With ``cross_layers=0`` and one narrow hidden layer it is the distilled
    student. Every weight is an ``nn.Linear``, so that dynamic quantization covers them all.
    """

    def __init__(
        self,
        n_features: int,
        n_objectives: int,
        hidden: Sequence[int],
        cross_layers: int,
        missing_columns: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.scaler = FeatureScaler(n_features, missing_columns)
        d = self.scaler.n_out
        cross = [nn.Linear(d, d) for _ in range(cross_layers)]
        for c in cross:  # start near the identity: x_{l+1} ~ x_l (the paper's residual)
            nn.init.normal_(c.weight, std=0.01)
            nn.init.zeros_(c.bias)
        self.cross = nn.ModuleList(cross)
        layers: list[nn.Module] = []
        width = d
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.heads = nn.Linear(width, n_objectives)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_scaled(self.scaler(x))

    def from_scaled(self, x0: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, n_objectives)`` of rows already through :attr:`scaler`."""
        h = x0
        for c in self.cross:
            h = x0 * c(h) + h
        out: torch.Tensor = self.heads(self.mlp(h))
        return out
