"""The serving tests' tiny dataset and real bundle, shared with the experiment tests."""

from tests.serving.conftest import real_bundle, tiny_dataset

__all__ = ["real_bundle", "tiny_dataset"]
