"""``Registry``: mlsd's model lifecycle on the MLflow client (tracking runs + model registry).

One registered model per name; each version is an MLflow run (params: the bundle's config,
flattened; metrics: the bundle's training metrics and whatever evaluation metrics the caller
adds; tags: data fingerprint, code version, the bundle's ``model_version``) whose artifact
``bundle/`` is the model bundle, and a model version pointing at it. Gate results are tags of
the version (``mlsd.gates``, JSON; ``mlsd.gates.passed``).

Registering is idempotent: a bundle whose ``model_version`` and data fingerprint are already
registered under the name returns that version; a run left RUNNING by a killed registration is
marked FAILED and never becomes a version (the version is created, in one database
transaction, only after every artifact is stored).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlsd.errors import BundleError, RegistryError
from mlsd.serving.bundle import read_manifest, verify_bundle

__all__ = [
    "DEFAULT_DIR",
    "REGISTRY_URI_ENV",
    "ModelRef",
    "Registry",
    "VersionInfo",
    "default_uri",
    "parse_model_uri",
]

REGISTRY_URI_ENV = "MLSD_REGISTRY_URI"
DEFAULT_DIR = "mlsd-registry"
CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "mlsd.champion_history"
HISTORY_KEEP = 100  # alias moves kept in the tag (MLflow caps a tag value's length)
_GATES_TAG, _PASSED_TAG = "mlsd.gates", "mlsd.gates.passed"
_MV_TAG, _FP_TAG, _CODE_TAG = "mlsd.model_version", "mlsd.data_fingerprint", "mlsd.code_version"
_PARAM_MAX = 500  # characters kept of one param value (MLflow allows 6,000)
_KEY_BAD = re.compile(r"[^\w.\-/ :]")

log = logging.getLogger(__name__)


def default_uri() -> str:
    """``MLSD_REGISTRY_URI`` if set, else a SQLite database in ``./mlsd-registry``."""
    env = os.environ.get(REGISTRY_URI_ENV, "").strip()
    if env:
        return env
    return f"sqlite:///{(Path(DEFAULT_DIR) / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class ModelRef:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""

    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        tail = f"@{self.alias}" if self.alias else f"/{self.version}"
        return f"models:/{self.name}{tail}"


def parse_model_uri(uri: str) -> ModelRef:
    """Parse ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``; :class:`RegistryError` else."""
    m = re.fullmatch(r"models:/([^/@]+)(?:@([\w\-]+)|/(\d+))", uri.strip())
    if m is None:
        raise RegistryError(
            f"{uri!r}: not a registry model URI; expected models:/NAME@ALIAS (e.g. "
            "models:/videorec@champion) or models:/NAME/VERSION"
        )
    name, alias, version = m.groups()
    return ModelRef(name, alias, int(version) if version else None)


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, as ``mlsd models`` shows it."""

    name: str
    version: int
    aliases: tuple[str, ...]
    model_version: str  # the bundle's own version (manifest ``model_version``)
    run_id: str
    source: str  # artifact URI of the bundle
    created_at: str  # ISO-8601, UTC
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def gates(self) -> dict[str, Any] | None:
        raw = self.tags.get(_GATES_TAG)
        return json.loads(raw) if raw else None

    @property
    def gates_passed(self) -> bool | None:
        raw = self.tags.get(_PASSED_TAG)
        return None if raw is None else raw == "true"


def _flatten(d: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def metric_key(key: str) -> str:
    """``key`` as MLflow accepts it (``ndcg@20`` -> ``ndcg_at_20``)."""
    return _KEY_BAD.sub("_", key.replace("@", "_at_"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's artifact progress bars off for the call; its INFO lines (database
    migrations) are turned off for good by :func:`_mlflow_warnings_only`."""
    old = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = old


def _mlflow_warnings_only() -> None:
    # mlflow configures its logger at INFO when imported: set it after the import
    import mlflow  # noqa: F401

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Registry:
    """Model versions and aliases under one MLflow tracking/registry URI.

    ``uri``: an MLflow tracking URI; None: :func:`default_uri`. For a ``sqlite:///PATH``
    URI, the directory of PATH is created and artifacts go to ``artifacts/`` beside it.
    Every failure of the backend is raised as :class:`RegistryError` naming the URI.
    """

    def __init__(self, uri: str | None = None, *, cache_dir: str | Path | None = None) -> None:
        self.uri = uri or default_uri()
        self._artifacts: str | None = None
        parsed = urlparse(self.uri)
        if parsed.scheme == "sqlite":
            db = Path(self.uri[len("sqlite:///") :])
            db.parent.mkdir(parents=True, exist_ok=True)
            self._artifacts = str((db.parent / "artifacts").resolve())
        self.cache_dir = Path(cache_dir) if cache_dir else None
        _mlflow_warnings_only()
        from mlflow import MlflowClient

        self._c = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    # -- helpers -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            with _quiet():
                return fn(*args, **kwargs)
        except MlflowException as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RegistryError(f"registry {self.uri}: {what}: {msg}") from e

    def _experiment(self, name: str) -> str:
        exp_name = f"mlsd/{name}"
        exp = self._call("experiment", self._c.get_experiment_by_name, exp_name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(
            self._call(
                "create experiment",
                self._c.create_experiment,
                exp_name,
                artifact_location=self._artifacts,
            )
        )

    def _info(self, mv: Any, aliases: dict[str, int] | None = None) -> VersionInfo:
        run = self._call("run", self._c.get_run, mv.run_id) if mv.run_id else None
        if aliases is None:
            rm = self._call("model", self._c.get_registered_model, mv.name)
            aliases = dict(rm.aliases)
        version = int(mv.version)
        return VersionInfo(
            name=mv.name,
            version=version,
            aliases=tuple(sorted(a for a, v in aliases.items() if int(v) == version)),
            model_version=mv.tags.get(_MV_TAG, ""),
            run_id=mv.run_id or "",
            source=mv.source,
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                timespec="seconds"
            ),
            metrics=dict(run.data.metrics) if run else {},
            params=dict(run.data.params) if run else {},
            tags=dict(mv.tags),
        )

    # -- registering -------------------------------------------------------------------------
    def register(
        self,
        bundle: str | Path,
        name: str,
        *,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
        dataset: str | Path | None = None,
    ) -> VersionInfo:
        """Store the bundle at ``bundle`` as a new version of ``name`` (created if missing);
        returns it. The bundle is verified first (:class:`BundleError` when broken). Already
        registered (same ``model_version`` and data fingerprint): returns that version.
        ``dataset``: a dataset directory stored beside the bundle (artifact ``dataset/``), the
        data the next retraining starts from when it is more than the bundle was trained on
        (a holdout kept out of training, say)."""
        from mlflow.entities import RunStatus

        manifest = verify_bundle(bundle)
        mv_id, fp = str(manifest["model_version"]), str(manifest.get("data_fingerprint", ""))
        exp = self._experiment(name)
        if self._call("model", self._c.search_registered_models, f"name = '{name}'"):
            for mv in self._versions(name):
                if mv.tags.get(_MV_TAG) == mv_id and mv.tags.get(_FP_TAG) == fp:
                    return self._info(mv)
        else:
            self._call("create model", self._c.create_registered_model, name)
        # a registration killed before its version was created left its run RUNNING: close it
        for run in self._call(
            "runs",
            self._c.search_runs,
            [exp],
            filter_string=f"tags.`{_MV_TAG}` = '{mv_id}' and attributes.status = 'RUNNING'",
        ):
            self._call("close run", self._c.set_terminated, run.info.run_id, "FAILED")
        run_tags = {_MV_TAG: mv_id, _FP_TAG: fp, _CODE_TAG: str(manifest.get("code_version"))}
        run = self._call("create run", self._c.create_run, exp, tags=run_tags, run_name=mv_id)
        rid = run.info.run_id
        params = {
            f"config.{k}": str(v)[:_PARAM_MAX]
            for k, v in _flatten(manifest.get("config") or {})
            if v is not None
        }
        params["kind"] = str(manifest.get("kind"))
        from mlflow.entities import Metric, Param

        now = int(datetime.now(UTC).timestamp() * 1000)
        all_metrics = {
            metric_key(k): float(v)
            for k, v in _flatten(manifest.get("metrics") or {})
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        all_metrics.update({metric_key(k): float(v) for k, v in (metrics or {}).items()})
        self._call(
            "log",
            self._c.log_batch,
            rid,
            metrics=[Metric(k, v, now, 0) for k, v in all_metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        self._call("store bundle", self._c.log_artifacts, rid, str(bundle), "bundle")
        if dataset is not None:
            self._call("store dataset", self._c.log_artifacts, rid, str(dataset), "dataset")
        self._call(
            "close run", self._c.set_terminated, rid, RunStatus.to_string(RunStatus.FINISHED)
        )
        mv = self._call(
            "create version",
            self._c.create_model_version,
            name,
            source=f"{run.info.artifact_uri}/bundle",
            run_id=rid,
            tags={**run_tags, **(tags or {})},
            description=description,
        )
        return self._info(mv)

    def _versions(self, name: str) -> list[Any]:
        found = self._call("versions", self._c.search_model_versions, f"name = '{name}'")
        return sorted(found, key=lambda mv: int(mv.version))

    # -- reading -----------------------------------------------------------------------------
    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, oldest first; :class:`RegistryError` if unknown."""
        rm = self._model(name)
        aliases = dict(rm.aliases)
        return [self._info(mv, aliases) for mv in self._versions(name)]

    def _model(self, name: str) -> Any:
        found = self._call("model", self._c.search_registered_models, f"name = '{name}'")
        if not found:
            raise RegistryError(f"registry {self.uri}: no model named {name!r}")
        return found[0]

    def version(self, name: str, version: int) -> VersionInfo:
        """Version ``version`` of ``name``; :class:`RegistryError` if missing."""
        rm = self._model(name)
        try:
            mv = self._call("version", self._c.get_model_version, name, str(version))
        except RegistryError as e:
            raise RegistryError(f"registry {self.uri}: {name} has no version {version}") from e
        return self._info(mv, dict(rm.aliases))

    def alias(self, name: str, alias: str) -> VersionInfo | None:
        """The version ``alias`` points at, or None when it points nowhere."""
        rm = self._model(name)
        v = dict(rm.aliases).get(alias)
        return None if v is None else self.version(name, int(v))

    def resolve(self, ref: ModelRef | str) -> VersionInfo:
        """The version a ``models:/`` URI (or :class:`ModelRef`) names."""
        ref = parse_model_uri(ref) if isinstance(ref, str) else ref
        if ref.version is not None:
            return self.version(ref.name, ref.version)
        got = self.alias(ref.name, str(ref.alias))
        if got is None:
            raise RegistryError(f"registry {self.uri}: {ref.name} has no alias {ref.alias!r}")
        return got

    def bundle_path(self, info: VersionInfo) -> Path:
        """A local directory holding ``info``'s bundle: the artifact itself on a local store,
        else a download into the cache directory (atomic: a complete copy or none)."""
        parsed = urlparse(info.source)
        if parsed.scheme in ("", "file"):
            path = Path(parsed.path)
        else:
            root = self.cache_dir or Path(tempfile.gettempdir()) / "mlsd-registry-cache"
            path = root / info.name / str(info.version) / "bundle"
            if not path.is_dir():
                from mlflow.artifacts import download_artifacts

                root.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=root))
                try:
                    got = self._call(
                        "download", download_artifacts, artifact_uri=info.source, dst_path=str(tmp)
                    )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(got, path)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        try:
            read_manifest(path)
        except BundleError as e:
            raise RegistryError(f"{info.name} v{info.version}: its bundle is unusable: {e}") from e
        return path

    def dataset_path(self, info: VersionInfo) -> Path | None:
        """The dataset stored with ``info`` (see :meth:`register`), as a local directory; None
        when it has none."""
        if not info.source.endswith("/bundle"):
            return None
        src = info.source[: -len("/bundle")] + "/dataset"
        parsed = urlparse(src)
        if parsed.scheme in ("", "file"):
            path = Path(parsed.path)
            return path if path.is_dir() else None
        from mlflow.artifacts import download_artifacts

        root = self.cache_dir or Path(tempfile.gettempdir()) / "mlsd-registry-cache"
        path = root / info.name / str(info.version) / "dataset"
        if not path.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=root))
            try:
                got = download_artifacts(artifact_uri=src, dst_path=str(tmp))
            except Exception:
                shutil.rmtree(tmp, ignore_errors=True)
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, path)
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    # -- aliases and their history -----------------------------------------------------------
    def history(self, name: str) -> list[dict[str, Any]]:
        """The recorded moves of ``champion``, oldest first: ``{"version", "action", "at",
        "reason"}`` with action ``promote`` or ``rollback``."""
        raw = self._model(name).tags.get(HISTORY_TAG)
        return json.loads(raw) if raw else []

    def _record(self, name: str, moves: list[dict[str, Any]]) -> None:
        self._call(
            "record history",
            self._c.set_registered_model_tag,
            name,
            HISTORY_TAG,
            json.dumps(moves[-HISTORY_KEEP:], separators=(",", ":")),
        )

    def champion_stack(self, name: str) -> list[int]:
        """The champions that rollbacks would return to, last = the current one."""
        stack: list[int] = []
        for m in self.history(name):
            if m["action"] == "rollback":
                if stack:
                    stack.pop()
            elif not stack or stack[-1] != int(m["version"]):
                stack.append(int(m["version"]))
        current = dict(self._model(name).aliases).get(CHAMPION)
        if current is not None and (not stack or stack[-1] != int(current)):
            stack.append(int(current))  # moved outside mlsd (the MLflow UI, say)
        return stack

    def promote(self, name: str, version: int, *, reason: str = "") -> VersionInfo:
        """Point ``champion`` at ``version`` (recorded for :meth:`rollback`); a
        ``challenger`` alias on that version is removed."""
        info = self.version(name, version)
        moves = self.history(name)
        current = dict(self._model(name).aliases).get(CHAMPION)
        if current is not None and not moves:
            moves.append(_move(int(current), "promote", "champion before history"))
        self._call("set alias", self._c.set_registered_model_alias, name, CHAMPION, str(version))
        if CHALLENGER in info.aliases:
            self._call("drop alias", self._c.delete_registered_model_alias, name, CHALLENGER)
        moves.append(_move(version, "promote", reason))
        self._record(name, moves)
        return self.version(name, version)

    def set_challenger(self, name: str, version: int) -> VersionInfo:
        """Point ``challenger`` at ``version``."""
        self.version(name, version)
        self._call("set alias", self._c.set_registered_model_alias, name, CHALLENGER, str(version))
        return self.version(name, version)

    def rollback(self, name: str, *, reason: str = "") -> tuple[VersionInfo, VersionInfo]:
        """Move ``champion`` back to the previous champion; returns (from, to).
        :class:`RegistryError` when there is no previous champion."""
        stack = self.champion_stack(name)
        if len(stack) < 2:
            raise RegistryError(
                f"{name}: no previous champion to roll back to (champion history: "
                f"{stack or 'empty'}); promote a version instead"
            )
        old, new = stack[-1], stack[-2]
        self.version(name, new)
        self._call("set alias", self._c.set_registered_model_alias, name, CHAMPION, str(new))
        moves = self.history(name)
        moves.append(_move(new, "rollback", reason or f"rollback from v{old}"))
        self._record(name, moves)
        return self.version(name, old), self.version(name, new)

    # -- gates -------------------------------------------------------------------------------
    def set_gates(self, name: str, version: int, report: dict[str, Any], passed: bool) -> None:
        """Record a gate report (JSON-able) and its verdict on ``version``."""
        self._call(
            "gates", self._c.set_model_version_tag, name, str(version), _GATES_TAG,
            json.dumps(report, separators=(",", ":"), default=str),
        )  # fmt: skip
        self._call(
            "gates", self._c.set_model_version_tag, name, str(version), _PASSED_TAG,
            "true" if passed else "false",
        )  # fmt: skip


def _move(version: int, action: str, reason: str) -> dict[str, Any]:
    return {
        "version": int(version),
        "action": action,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "reason": reason,
    }
