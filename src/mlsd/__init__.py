"""mlsd: running, measured implementations of the systems in *Machine Learning System Design
Interview* (Aminian & Xu). The first system is video recommendation.

The public surface is re-exported here; everything else is internal.
"""

from mlsd._version import __version__
from mlsd.data.dataset import Dataset, load_dataset
from mlsd.data.schema import EVENT_TYPES, ValidationReport, validate
from mlsd.errors import ConfigError, DataError, DataValidationError, MlsdError

__all__ = [
    "EVENT_TYPES",
    "ConfigError",
    "DataError",
    "DataValidationError",
    "Dataset",
    "MlsdError",
    "ValidationReport",
    "__version__",
    "load_dataset",
    "validate",
]
