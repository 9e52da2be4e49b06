"""The two-stage recommender as composed stages (see ``docs/architecture.md``)."""

from mlsd.pipeline.recommender import PipelineConfig, Recommender, as_dataset
from mlsd.pipeline.servable import Servable, ServingOptions
from mlsd.pipeline.types import (
    DEGRADED_KINDS,
    DegradedKind,
    RecommendationBatch,
    RequestCtx,
    Served,
    ServedItem,
    ServingStatus,
)

__all__ = [
    "DEGRADED_KINDS",
    "DegradedKind",
    "PipelineConfig",
    "RecommendationBatch",
    "Recommender",
    "RequestCtx",
    "Servable",
    "Served",
    "ServedItem",
    "ServingOptions",
    "ServingStatus",
    "as_dataset",
]
