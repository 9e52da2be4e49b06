"""The model registry: versions of a model bundle, their metrics and gate results, and the
``champion`` / ``challenger`` aliases, on MLflow's tracking server and model registry.

The embedded default is a SQLite database and an artifact directory under ``./mlsd-registry``
(no server); any MLflow tracking URI (``http://...``, ``postgresql://...``) works the same way,
passed as ``uri`` or in the ``MLSD_REGISTRY_URI`` variable. MLflow keeps no history of alias
moves, so :class:`Registry` records each move of ``champion`` in a tag of the registered
model; :meth:`Registry.rollback` reads it.
"""

from __future__ import annotations

from mlsd.registry.client import (
    DEFAULT_DIR,
    REGISTRY_URI_ENV,
    ModelRef,
    Registry,
    VersionInfo,
    default_uri,
    parse_model_uri,
)

__all__ = [
    "DEFAULT_DIR",
    "REGISTRY_URI_ENV",
    "ModelRef",
    "Registry",
    "VersionInfo",
    "default_uri",
    "parse_model_uri",
]
