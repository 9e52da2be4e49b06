"""Dynamic int8 quantization of a ranker network's Linear layers (PyTorch's own
``torch.ao.quantization.quantize_dynamic``: weights stored as int8 with a per-tensor scale,
activations quantized on the fly per batch; no calibration data needed).

torch 2.13 marks ``torch.ao.quantization`` deprecated in favour of the separate torchao
package; it still works and ships with torch, so no dependency is added (pyproject pins torch
below 2.14). Its deprecation warnings are silenced here, where quantized networks are built
and loaded, and nowhere else.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["flat_state", "load_quantized_state", "quantize_net", "rank_agreement", "state_nbytes"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*")
        warnings.filterwarnings("ignore", message=r".*TypedStorage is deprecated.*")
        yield


def quantize_net(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (left unchanged) with every ``nn.Linear`` replaced by a dynamically
    quantized int8 one, in eval mode."""
    with _quiet():
        q: nn.Module = torch.ao.quantization.quantize_dynamic(
            net.eval(), {nn.Linear}, dtype=torch.qint8, inplace=False
        )
    return q.eval()


def load_quantized_state(float_net: nn.Module, path: Path) -> nn.Module:
    """Quantize ``float_net`` (any weights: its structure is what counts) and load into it the
    int8 state dict saved at ``path`` (read with ``weights_only``: no code runs)."""
    q = quantize_net(float_net)
    with _quiet():
        state = torch.load(path, weights_only=True)
        q.load_state_dict(state, strict=True)
    return q


def flat_state(net: nn.Module) -> dict[str, Any]:
    """The state dict of a float or quantized network as numpy arrays and plain values (for a
    fingerprint): a quantized weight contributes its int8 values and its dequantized ones (so
    its scale and zero point count)."""
    out: dict[str, Any] = {}

    def put(name: str, v: Any) -> None:
        if isinstance(v, torch.Tensor):
            if v.is_quantized:
                out[f"{name}.int"] = v.int_repr().numpy()
                out[f"{name}.deq"] = v.dequantize().numpy()
            else:
                out[name] = v.detach().numpy()
        elif isinstance(v, tuple | list):
            for i, x in enumerate(v):
                put(f"{name}.{i}", x)
        else:
            out[name] = str(v)

    with _quiet():
        for k, v in net.state_dict().items():
            put(k, v)
    return out


def state_nbytes(net: nn.Module) -> int:
    """Bytes of ``net``'s state dict as ``torch.save`` writes it (the size on disk)."""
    buf = io.BytesIO()
    with _quiet():
        torch.save(net.state_dict(), buf)
    return buf.tell()


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (1: same order)."""
    from scipy.stats import spearmanr

    if len(a) < 2:
        return 1.0
    return float(spearmanr(a, b).statistic)
