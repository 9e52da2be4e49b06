"""Online experiments: deterministic assignment and the statistics of A/B tests (per-arm
estimates, ratio metrics, CUPED, sample-ratio mismatch, always-valid sequential tests, power).
The closed loop and the service's experiment routing build on these (issue 19)."""

from __future__ import annotations

from mlsd.experiments.assignment import assign, bucket
from mlsd.experiments.stats import (
    Estimate,
    SrmResult,
    cuped,
    difference,
    mde,
    mean,
    msprt_pvalues,
    ratio,
    relative_lift,
    sample_size,
    srm,
)

__all__ = ["Estimate", "SrmResult", "assign", "bucket", "cuped", "difference", "mde", "mean",
           "msprt_pvalues", "ratio", "relative_lift", "sample_size", "srm"]  # fmt: skip
