"""``ServeSettings``: typed, strict, and every bad value named where it came from (a ``mlsd
serve`` option, or the ``MLSD_*`` variable a worker process read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsd.errors import ConfigError
from mlsd.serving.server import ServeSettings
from mlsd.serving.settings import ENV


def test_round_trip_through_the_environment() -> None:
    s = ServeSettings(
        model_dir=Path("/srv/m"),
        online_store="redis://localhost:6379",
        api_key="s3cret",
        event_log=Path("/var/ev.jsonl"),
        workers=3,
        model_threads=0,
        candidate_cache=False,
        candidate_cache_dir=Path("/tmp/cc"),
        max_requests_per_connection=100,
    )
    assert ServeSettings.from_env(s.to_env()) == s
    plain = ServeSettings(model_dir=Path("m"))
    assert ServeSettings.from_env(plain.to_env()) == plain
    assert "s3cret" not in repr(s)  # the key stays out of logs


def test_unset_and_empty_variables() -> None:
    s = ServeSettings.from_env({ENV["model_dir"]: "m", ENV["api_key"]: "", ENV["event_log"]: ""})
    assert s == ServeSettings(model_dir=Path("m"))
    with pytest.raises(ConfigError, match="MLSD_MODEL_DIR is not set"):
        ServeSettings.from_env({})


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("MLSD_WORKERS", "two", "an integer >= 1"),
        ("MLSD_WORKERS", "0", "an integer >= 1"),
        ("MLSD_WORKERS", "", "an integer >= 1"),
        ("MLSD_WORKERS", "1.5", "an integer >= 1"),
        ("MLSD_MODEL_THREADS", "-1", "an integer >= 0"),
        ("MLSD_MAX_REQUESTS_PER_CONNECTION", "lots", "an integer >= 0"),
        ("MLSD_CANDIDATE_CACHE", "maybe", "1 or 0"),
        ("MLSD_ONLINE_STORE", "mongo://x", "'memory' or redis://HOST:PORT"),
        ("MLSD_ONLINE_STORE", "", "'memory' or redis://HOST:PORT"),
    ],
)
def test_bad_variables_are_named_with_their_value(var: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        ServeSettings.from_env({"MLSD_MODEL_DIR": "m", var: value})
    assert str(e.value).startswith(f"{var}={value!r}: expected {expected}")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "--workers 0; expected an integer >= 1"),
        ({"model_threads": -1}, "--threads -1; expected an integer >= 0"),
        ({"online_store": "mongo://x"}, "--online-store 'mongo://x'; expected 'memory' or redis"),
        ({"max_requests_per_connection": -5}, "--max-requests-per-connection -5; expected"),
        ({"wrokers": 2}, "unknown setting 'wrokers'"),
    ],
)
def test_bad_keywords_are_named_as_the_cli_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        ServeSettings(model_dir=Path("m"), **kwargs)
    assert str(e.value).startswith(message)


def test_settings_are_frozen() -> None:
    s = ServeSettings(model_dir=Path("m"))
    with pytest.raises(ValueError, match="frozen"):
        s.workers = 2  # type: ignore[misc]
