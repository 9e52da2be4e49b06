"""Bundles written before the stages redesign load, and recommend what they recommended;
a bundle of a format this mlsd cannot read is refused with a message naming the format and
what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlsd.data.fingerprint import sha256_file
from mlsd.errors import BundleError
from mlsd.serving.bundle import ARTIFACTS, MANIFEST, load_bundle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V1 = FIXTURES / "bundle_v1"


def test_a_format_1_bundle_loads_and_recommends_as_before() -> None:
    want = json.loads((FIXTURES / "bundle_v1.expected.json").read_text())
    model = load_bundle(V1)
    got = model.recommend(np.array(want["users"], np.int64), want["k"])
    np.testing.assert_array_equal(got, np.array(want["recommend"]))
    # its old version hashed the config, the last timestamp and the row count: replaced by a
    # fingerprint of the loaded content
    assert model.version != want["model_version"] and model.version.startswith("rec-")
    assert model.version == model.content_version()


def test_a_format_this_mlsd_cannot_read_is_refused_with_what_to_do(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(V1, bundle)
    meta_path = bundle / ARTIFACTS / "recommender.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = 99
    meta_path.write_text(json.dumps(meta))
    manifest = json.loads((bundle / MANIFEST).read_text())  # keep the bundle's integrity
    for a in manifest["artifacts"]:
        if a["path"] == "recommender.json":
            a["sha256"], a["size"] = sha256_file(meta_path), meta_path.stat().st_size
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    what = r"model format 99; this mlsd reads formats 1, 2: retrain the model with this mlsd"
    with pytest.raises(BundleError, match=what):
        load_bundle(bundle)
