"""The two-stage recommender as composed stages (see ``docs/architecture.md``)."""

from mlsd.pipeline.config import PipelineConfig, StagesConfig
from mlsd.pipeline.data import as_dataset
from mlsd.pipeline.recommender import Recommender
from mlsd.pipeline.servable import Servable, ServingOptions
from mlsd.pipeline.two_stage import TwoStage
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
    "StagesConfig",
    "TwoStage",
    "as_dataset",
]
