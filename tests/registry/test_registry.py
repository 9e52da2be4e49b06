"""The MLflow-backed registry: versions, idempotent registration, aliases, rollback history."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mlsd.errors import BundleError, RegistryError
from mlsd.registry import Registry, default_uri, parse_model_uri
from mlsd.registry.client import metric_key


def test_register_stores_bundle_params_metrics_and_tags(
    registry: Registry, make_bundle: Callable[..., Path]
) -> None:
    v = registry.register(make_bundle("stub-a", 0.31), "videorec", metrics={"ndcg@20": 0.2})
    assert v.version == 1 and v.model_version == "stub-a"
    assert v.metrics["recall_at_20"] == pytest.approx(0.31)
    assert v.metrics["ndcg_at_20"] == pytest.approx(0.2)
    assert v.params["config.ranker.lr"] == "0.05" and v.params["kind"] == "stub"
    assert v.tags["mlsd.data_fingerprint"].startswith("sha256:")
    assert v.tags["mlsd.code_version"]
    path = registry.bundle_path(v)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model_version"] == "stub-a"


def test_registering_the_same_bundle_twice_gives_one_version(
    registry: Registry, make_bundle: Callable[..., Path]
) -> None:
    b = make_bundle("stub-a")
    assert registry.register(b, "m").version == 1
    assert registry.register(b, "m").version == 1
    assert registry.register(make_bundle("stub-b"), "m").version == 2
    assert [v.version for v in registry.versions("m")] == [1, 2]


def test_a_broken_bundle_is_refused_before_anything_is_stored(
    registry: Registry, make_bundle: Callable[..., Path]
) -> None:
    b = make_bundle("stub-a")
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError):
        registry.register(b, "m")
    with pytest.raises(RegistryError, match="no model named 'm'"):
        registry.versions("m")


def test_promote_and_rollback_follow_the_recorded_history(
    registry: Registry, make_bundle: Callable[..., Path]
) -> None:
    for i, name in enumerate(("a", "b", "c"), start=1):
        assert registry.register(make_bundle(f"stub-{name}"), "m").version == i
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("m")
    registry.promote("m", 1)
    registry.set_challenger("m", 2)
    assert registry.alias("m", "challenger").version == 2
    promoted = registry.promote("m", 2, reason="gates passed")
    assert promoted.aliases == ("champion",)  # the challenger alias moved with it
    assert registry.alias("m", "challenger") is None
    registry.promote("m", 3)
    old, new = registry.rollback("m")
    assert (old.version, new.version) == (3, 2)
    old, new = registry.rollback("m")
    assert (old.version, new.version) == (2, 1)
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("m")
    assert registry.resolve("models:/m@champion").version == 1
    actions = [(h["action"], h["version"]) for h in registry.history("m")]
    assert actions == [
        ("promote", 1), ("promote", 2), ("promote", 3), ("rollback", 2), ("rollback", 1)
    ]  # fmt: skip


def test_a_champion_moved_outside_mlsd_counts_as_the_current_one(
    registry: Registry, make_bundle: Callable[..., Path]
) -> None:
    for name in ("a", "b"):
        registry.register(make_bundle(f"stub-{name}"), "m")
    registry.promote("m", 1)
    # the MLflow UI or another client moves the alias without writing mlsd's history
    registry._c.set_registered_model_alias("m", "champion", "2")
    old, new = registry.rollback("m")
    assert (old.version, new.version) == (2, 1)


def test_gate_results_are_kept_on_the_version(
    registry: Registry, make_bundle: Callable[..., Path]
) -> None:
    v = registry.register(make_bundle("stub-a"), "m")
    assert v.gates is None and v.gates_passed is None
    registry.set_gates("m", 1, {"ndcg": {"passed": False, "value": 0.1}}, passed=False)
    got = registry.version("m", 1)
    assert got.gates == {"ndcg": {"passed": False, "value": 0.1}}
    assert got.gates_passed is False


def test_unknown_names_versions_and_aliases_are_clear_errors(
    registry: Registry, make_bundle: Callable[..., Path]
) -> None:
    registry.register(make_bundle("stub-a"), "m")
    with pytest.raises(RegistryError, match="has no version 7"):
        registry.version("m", 7)
    with pytest.raises(RegistryError, match="no alias 'champion'"):
        registry.resolve("models:/m@champion")
    with pytest.raises(RegistryError, match="no model named 'x'"):
        registry.resolve("models:/x/1")


def test_model_uris_parse_or_are_refused() -> None:
    assert parse_model_uri("models:/videorec@champion").alias == "champion"
    assert parse_model_uri("models:/videorec/3").version == 3
    assert str(parse_model_uri("models:/a@b")) == "models:/a@b"
    for bad in ("videorec", "models:/", "models:/a/b/c", "models:/a@"):
        with pytest.raises(RegistryError, match="expected models:/NAME@ALIAS"):
            parse_model_uri(bad)
    assert metric_key("ndcg@20") == "ndcg_at_20"


def test_the_uri_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSD_REGISTRY_URI", "http://mlflow.internal:5000")
    assert default_uri() == "http://mlflow.internal:5000"
    monkeypatch.delenv("MLSD_REGISTRY_URI")
    assert default_uri().startswith("sqlite:///") and default_uri().endswith(
        "mlsd-registry/mlflow.db"
    )
