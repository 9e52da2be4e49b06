"""Model bundles: round trip, manifest contents, atomic writes, and a clear DataError (naming
the file) for every way a bundle can be missing, malformed, corrupt or hostile."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

import mlsd
from mlsd.errors import DataError
from mlsd.pipeline import RequestCtx
from mlsd.serving.app import API_KEY_HEADER, create_app
from mlsd.serving.bundle import (
    KINDS_ENV,
    BundleError,
    fingerprint_files,
    fingerprint_table,
    kind_of,
    load_bundle,
    read_manifest,
    save_bundle,
    verify_bundle,
)
from tests.serving.stub_model import KIND_TARGET, StubModel

FP = "sha256:" + "0" * 64


def _save(model: Any, out: Path, **kw: Any) -> Path:
    return save_bundle(model, out, config={"a": 1}, data_fingerprint=FP, metrics={}, **kw)


def _manifest(b: Path) -> dict[str, Any]:
    return json.loads((b / "manifest.json").read_text())


def _reseal(b: Path, artifact: str) -> None:
    """Make the manifest's size and checksum match a rewritten artifact again."""
    p = b / "artifacts" / artifact
    m = _manifest(b)
    for a in m["artifacts"]:
        if a["path"] == artifact:
            a["size"] = p.stat().st_size
            a["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    _write_manifest(b, m)


def _write_manifest(b: Path, m: dict[str, Any]) -> None:
    (b / "manifest.json").write_text(json.dumps(m))


def test_round_trip_and_manifest(stub_bundle: Path) -> None:
    m = _manifest(stub_bundle)
    assert m["format_version"] == 1 and m["kind"] == "stub"
    assert m["model_version"] == "stub-v1"
    assert m["created_at"].endswith("+00:00")
    assert m["code_version"].startswith(mlsd.__version__)
    assert m["data_fingerprint"] == FP
    assert m["config"] == {"dim": 16, "n_candidates": 50}
    assert m["metrics"] == {"recall@20": 0.25}
    assert sorted(a["path"] for a in m["artifacts"]) == ["item_emb.npy", "meta.json"]
    assert all(len(a["sha256"]) == 64 and a["size"] > 0 for a in m["artifacts"])
    assert not [p for p in stub_bundle.parent.iterdir() if p.name.startswith(".")]  # no temp

    model = load_bundle(stub_bundle)
    assert isinstance(model, StubModel) and model.version == "stub-v1"
    ctx = RequestCtx(time_ms=0)
    assert [i.video_id for i in model.serve(3, 5, ctx).items] == [
        i.video_id for i in StubModel("x").serve(3, 5, ctx).items
    ]


def test_metrics_and_config_become_strict_json(tmp_path: Path, stub_kind: str) -> None:
    b = save_bundle(
        StubModel(),
        tmp_path / "b",
        config={"n": np.int64(3), "path": Path("/x")},
        data_fingerprint=FP,
        metrics={"auc": float("nan"), "recall": np.float32(0.5)},
    )
    m = _manifest(b)
    assert m["config"] == {"n": 3, "path": "/x"}
    assert m["metrics"] == {"auc": None, "recall": 0.5}
    with pytest.raises(BundleError, match=r"config\.bad"):
        save_bundle(StubModel(), tmp_path / "c", config={"bad": object()}, data_fingerprint=FP,
                    metrics={})  # fmt: skip
    assert not (tmp_path / "c").exists()


def test_overwrite_rules(tmp_path: Path, stub_kind: str) -> None:
    out = tmp_path / "b"
    out.mkdir()
    _save(StubModel("v1"), out)  # an existing empty directory is fine
    with pytest.raises(BundleError, match="not empty"):
        _save(StubModel("v2"), out)
    assert load_bundle(out).version == "v1"
    _save(StubModel("v2"), out, overwrite=True)
    assert load_bundle(out).version == "v2"
    (tmp_path / "f").write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        _save(StubModel(), tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "f"]


def test_failed_save_leaves_nothing(tmp_path: Path, stub_kind: str) -> None:
    class Broken(StubModel):
        def save(self, directory: Path) -> None:
            (directory / "half.json").write_text("{")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _save(Broken(), tmp_path / "b", kind="stub")
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_class(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no model kind registered"):
        kind_of(object())
    with pytest.raises(BundleError, match="unknown model kind 'nope'"):
        _save(StubModel(), tmp_path / "b", kind="nope")


def test_recommender_kind_is_known_without_importing_it() -> None:
    from mlsd.serving.bundle import known_kinds

    assert "recommender" in known_kinds()


# --- every way to be bad -----------------------------------------------------------------


def test_not_a_bundle(tmp_path: Path, stub_kind: str) -> None:
    with pytest.raises(DataError, match="not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_bundle(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"manifest\.json: missing"):
        load_bundle(tmp_path / "empty")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format_version": 1,', r"manifest\.json: invalid JSON at line 1"),
        ("[1, 2]", "expected a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_bad_manifest_json(stub_bundle: Path, text: str | bytes, message: str) -> None:
    p = stub_bundle / "manifest.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(BundleError, match=message):
        load_bundle(stub_bundle)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"format_version": "1"}, "format_version '1' is not supported"),
        ({"kind": "pickle"}, "unknown model kind 'pickle'"),
        ({"artifacts": "all"}, "field 'artifacts' is str; expected list"),
        ({"model_version": None}, "field 'model_version' is NoneType"),
        ({"config": None, "_drop": "config"}, "field 'config' missing"),
    ],
)
def test_bad_manifest_fields(stub_bundle: Path, change: dict[str, Any], message: str) -> None:
    m = _manifest(stub_bundle)
    drop = change.pop("_drop", None)
    m.update(change)
    if drop:
        del m[drop]
    _write_manifest(stub_bundle, m)
    with pytest.raises(BundleError, match=message) as e:
        load_bundle(stub_bundle)
    assert "manifest.json" in str(e.value)


@pytest.mark.parametrize(
    "path", ["../outside.json", "/etc/passwd", "a/../../b", "./meta.json", "a//b", "a\\..\\b", ""]
)
def test_path_escapes_are_refused(stub_bundle: Path, path: str) -> None:
    m = _manifest(stub_bundle)
    m["artifacts"][0]["path"] = path
    _write_manifest(stub_bundle, m)
    with pytest.raises(BundleError, match="artifacts\\[0\\]"):
        load_bundle(stub_bundle)


def test_symlinked_artifact_is_refused(stub_bundle: Path, tmp_path: Path) -> None:
    target = stub_bundle / "artifacts" / "meta.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(target.read_bytes())  # same bytes: only the link gives it away
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(BundleError, match=r"meta\.json: is or passes through a symlink"):
        load_bundle(stub_bundle)


def test_corrupt_artifact_checksum(stub_bundle: Path) -> None:
    p = stub_bundle / "artifacts" / "item_emb.npy"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"item_emb\.npy: sha256 does not match"):
        load_bundle(stub_bundle)


def test_truncated_missing_and_extra_artifacts(stub_bundle: Path) -> None:
    p = stub_bundle / "artifacts" / "item_emb.npy"
    full = p.read_bytes()
    p.write_bytes(full[:100])
    with pytest.raises(BundleError, match=r"item_emb\.npy: size 100 bytes, manifest says"):
        verify_bundle(stub_bundle)
    p.unlink()
    with pytest.raises(BundleError, match=r"item_emb\.npy: listed in manifest\.json but missing"):
        verify_bundle(stub_bundle)
    p.write_bytes(full)
    verify_bundle(stub_bundle)
    (stub_bundle / "artifacts" / "extra.bin").write_bytes(b"\0")
    with pytest.raises(BundleError, match=r"extra\.bin: not listed in manifest\.json"):
        verify_bundle(stub_bundle)


def test_loader_failure_is_a_bundle_error(stub_bundle: Path) -> None:
    """A consistent manifest over an artifact the model's loader rejects: still a clear
    BundleError (so a reload is refused), not a stray ValueError."""
    p = stub_bundle / "artifacts" / "item_emb.npy"
    np.save(p, np.zeros((3, 3), np.float32), allow_pickle=False)
    _reseal(stub_bundle, "item_emb.npy")
    with pytest.raises(BundleError, match=r"'stub' loader failed: ValueError: item_emb\.npy"):
        load_bundle(stub_bundle)


def test_pickled_npy_is_refused_by_the_loader(stub_bundle: Path) -> None:
    """An object array (which needs pickle) never loads, even with a matching manifest."""
    p = stub_bundle / "artifacts" / "item_emb.npy"
    np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    _reseal(stub_bundle, "item_emb.npy")
    with pytest.raises(BundleError, match="allow_pickle"):
        load_bundle(stub_bundle)


def test_kinds_from_the_environment(stub_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsd.serving.bundle import unregister_kind

    unregister_kind("stub")
    with pytest.raises(BundleError, match="unknown model kind 'stub'"):
        read_manifest(stub_bundle)
    monkeypatch.setenv(KINDS_ENV, f"stub={KIND_TARGET}")
    assert load_bundle(stub_bundle).version == "stub-v1"
    monkeypatch.setenv(KINDS_ENV, "stub=tests.serving.nope:Nope")
    with pytest.raises(BundleError, match=r"cannot import tests\.serving\.nope:Nope"):
        load_bundle(stub_bundle)
    monkeypatch.setenv(KINDS_ENV, "garbage")
    with pytest.raises(BundleError, match=KINDS_ENV):
        load_bundle(stub_bundle)


# --- reload through the real app ---------------------------------------------------------


def test_reload_corrupt_bundle_keeps_old_model_serving(tmp_path: Path, stub_bundle: Path) -> None:
    v2 = _save(StubModel("stub-v2"), tmp_path / "bundle-v2")
    bad = _save(StubModel("stub-v3"), tmp_path / "bundle-v3")
    (bad / "artifacts" / "meta.json").write_text('{"version": "evil"}')
    app = create_app(load_bundle(stub_bundle), loader=load_bundle, api_key="k")
    c = TestClient(app, raise_server_exceptions=False)
    h = {API_KEY_HEADER: "k"}
    r = c.post("/admin/reload", json={"model_dir": str(v2)}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"model_version": "stub-v2", "previous_version": "stub-v1"}
    for target, where in [(bad, "meta.json"), (tmp_path / "nope", "not found")]:
        r = c.post("/admin/reload", json={"model_dir": str(target)}, headers=h)
        assert r.status_code == 409 and "still serving stub-v2" in r.text and where in r.text
    r = c.post("/v1/recommendations", json={"user_id": 1, "k": 3})
    assert r.status_code == 200 and r.json()["model_version"] == "stub-v2"
    assert 'mlsd_reloads_total{outcome="refused"} 2.0' in c.get("/metrics").text


# --- fingerprints ------------------------------------------------------------------------


def test_fingerprint_table_is_canonical() -> None:
    t = pa.table(
        {
            "u": pa.array([1, None, 3], pa.int64()),
            "ts": pa.array([1, 2, None], pa.timestamp("ms")),
            "s": ["a", None, "ccc"],
            "b": [True, None, False],
            "e": pa.array(["play", "like", None]).dictionary_encode(),
        }
    )
    fp = fingerprint_table(t)
    assert fp.startswith("sha256:")
    rechunked = pa.concat_tables([t.slice(0, 1), t.slice(1)])
    decoded = t.set_column(4, "e", pa.array(["play", "like", None]))
    assert fingerprint_table(rechunked) == fp == fingerprint_table(decoded)
    assert fingerprint_table(t.slice(1)) != fp
    changed = t.set_column(2, "s", pa.array(["a", None, "ccd"]))
    assert fingerprint_table(changed) != fp
    assert fingerprint_table({"events": t}) != fp  # the table name is part of it


def test_fingerprint_files(tmp_path: Path) -> None:
    for d in ("x", "y"):
        (tmp_path / d / "data").mkdir(parents=True)
        (tmp_path / d / "data" / "events.parquet").write_bytes(b"abc")
    a = fingerprint_files([tmp_path / "x" / "data"])
    assert a == fingerprint_files([tmp_path / "y" / "data"])  # location does not matter
    (tmp_path / "y" / "data" / "events.parquet").write_bytes(b"abd")
    assert fingerprint_files([tmp_path / "y" / "data"]) != a
    with pytest.raises(DataError, match="no such file"):
        fingerprint_files([tmp_path / "missing"])
    assert os.path.exists(tmp_path / "x")


def test_real_recommender_round_trip(real_bundle: Path) -> None:
    """Kind 'recommender' (mlsd.pipeline:Recommender, imported lazily) bundles and loads."""
    m = read_manifest(real_bundle)
    assert m["kind"] == "recommender" and m["model_version"].startswith("rec-")
    assert m["data_fingerprint"].startswith("sha256:") and m["config"]["candidates"] == 100
    assert any(a["path"].endswith(".json") for a in m["artifacts"])
    a, b = load_bundle(real_bundle), load_bundle(real_bundle)
    assert a.version == b.version == m["model_version"]
    ctx = RequestCtx(time_ms=a.now_ms_)
    for user in (3, 10**12):
        got = [i.video_id for i in a.serve(user, 10, ctx).items]
        assert got == [i.video_id for i in b.serve(user, 10, ctx).items] and len(got) == 10
