"""Model bundles: a directory that carries a model and everything needed to trust it.

Layout::

    MODEL_DIR/
      manifest.json     format version, kind, model version, creation time (UTC), code version,
                        data fingerprint, config, offline metrics, sha256 + size of every artifact
      artifacts/        written by the model's own ``save(directory)``

Artifacts must use formats that cannot run code on load (LightGBM text, ``.npy`` read with
``allow_pickle=False``, torch state dicts read with ``weights_only=True``, FAISS indexes, JSON):
that is the model's ``save``/``load`` contract. The bundle adds integrity on top: before the
model's loader sees a byte, :func:`load_bundle` checks that every artifact listed in the
manifest is present with its recorded size and sha256, that no path leaves ``artifacts/``
(``..``, absolute paths, symlinks) and that nothing unlisted lies beside them. Every failure is
a :class:`BundleError` (a :class:`~mlsd.errors.DataError`) naming the file.

Which class loads a bundle is decided by the manifest's ``kind`` looked up in a registry of
trusted kinds (:func:`register_kind`); the manifest never names code to import. Operators can add
kinds without code changes through ``MLSD_BUNDLE_KINDS="name=module:Class,..."`` (the
environment is trusted, like ``PYTHONPATH``); tests use it to serve a stub model from a real
``mlsd serve`` subprocess.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np

from mlsd.data.fingerprint import (
    code_version,
    fingerprint_files,
    fingerprint_table,
    sha256_file,
)
from mlsd.errors import BundleError, DataError

__all__ = [
    "ARTIFACTS",
    "FORMAT_VERSION",
    "KINDS_ENV",
    "MANIFEST",
    "BundleError",
    "code_version",
    "fingerprint_files",
    "fingerprint_table",
    "kind_of",
    "known_kinds",
    "load_bundle",
    "read_manifest",
    "register_kind",
    "save_bundle",
    "unregister_kind",
    "verify_bundle",
]

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
MANIFEST = "manifest.json"
ARTIFACTS = "artifacts"
KINDS_ENV = "MLSD_BUNDLE_KINDS"
_MAX_MANIFEST_BYTES = 16 << 20


class Bundleable(Protocol):
    """What a model must offer to be bundled: ``save`` into an existing empty directory and a
    classmethod ``load(directory, **kwargs)``; ``version`` is recorded in the manifest."""

    def save(self, directory: Path) -> None: ...


# ---------------------------------------------------------------------------------------------
# kinds


@dataclass(frozen=True)
class _Kind:
    name: str
    target: str | type  # "module:Class" (imported lazily) or the class itself

    def resolve(self) -> Any:
        if isinstance(self.target, type):
            return self.target
        module, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise BundleError(
                f"model kind {self.name!r}: cannot import {self.target} ({type(e).__name__}: {e})"
            ) from e
        if not hasattr(obj, "load"):
            raise BundleError(f"model kind {self.name!r}: {self.target} has no load()")
        return obj

    def matches(self, model: object) -> bool:
        cls = type(model)
        if isinstance(self.target, type):
            return isinstance(model, self.target)
        return any(f"{c.__module__}:{c.__qualname__}" == self.target for c in cls.__mro__)


_KINDS: dict[str, _Kind] = {
    "recommender": _Kind("recommender", "mlsd.pipeline.recommender:Recommender")
}


def register_kind(name: str, target: str | type, *, replace: bool = False) -> None:
    """Register a model kind: ``target`` is a class with ``save``/``load`` or a lazy
    ``"module:Class"`` path. Registering an existing name needs ``replace=True``."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"model kind name {name!r}: expected letters, digits, '-' or '_'")
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"model kind target {target!r}: expected 'module:Class'")
    if name in _KINDS and not replace and _KINDS[name].target != target:
        raise ValueError(f"model kind {name!r} is already registered to {_KINDS[name].target}")
    _KINDS[name] = _Kind(name, target)


def unregister_kind(name: str) -> None:
    _KINDS.pop(name, None)


def _kinds() -> dict[str, _Kind]:
    kinds = dict(_KINDS)
    for entry in filter(None, (e.strip() for e in os.environ.get(KINDS_ENV, "").split(","))):
        name, sep, target = entry.partition("=")
        if not sep or ":" not in target:
            raise BundleError(f"{KINDS_ENV}: entry {entry!r}; expected name=module:Class")
        kinds[name.strip()] = _Kind(name.strip(), target.strip())
    return kinds


def known_kinds() -> list[str]:
    return sorted(_kinds())


def kind_of(model: object) -> str:
    """The registered kind of ``model`` (by class, without importing lazy targets)."""
    for kind in _kinds().values():
        if kind.matches(model):
            return kind.name
    raise BundleError(
        f"no model kind registered for {type(model).__module__}.{type(model).__qualname__}; "
        f"known kinds: {', '.join(known_kinds())} (see mlsd.serving.bundle.register_kind)"
    )


# ---------------------------------------------------------------------------------------------
# save


def json_safe(obj: Any, where: str = "value") -> Any:
    """Plain JSON types only (numpy scalars converted, non-finite floats become null, tuples
    become lists); :class:`BundleError` naming ``where`` for any other type."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/inf; an undefined metric is recorded as null
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    raise BundleError(f"{where}: {type(obj).__name__} is not JSON-serialisable")


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            _fsync(os.path.join(dirpath, name))
        _fsync(dirpath)


def _list_artifacts(artifacts: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(artifacts.rglob("*")):
        rel = f.relative_to(artifacts).as_posix()
        if f.is_symlink():
            raise BundleError(f"{ARTIFACTS}/{rel}: the model saved a symlink; bundles hold files")
        if f.is_file():
            out.append({"path": rel, "size": f.stat().st_size, "sha256": sha256_file(f)})
    return out


def save_bundle(
    model: Bundleable,
    out_dir: str | Path,
    *,
    config: Mapping[str, Any],
    data_fingerprint: str,
    metrics: Mapping[str, Any],
    kind: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bundle at ``out_dir`` and return its path.

    The bundle is built in a temporary directory beside ``out_dir`` and renamed into place, so
    a reader never sees a half-written bundle. An existing non-empty ``out_dir`` is refused
    unless ``overwrite``. ``kind`` defaults to the registered kind of the model's class.
    """
    out = Path(out_dir)
    kind = kind or kind_of(model)
    if kind not in _kinds():
        raise BundleError(f"unknown model kind {kind!r}; known kinds: {', '.join(known_kinds())}")
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BundleError(f"{out}: directory exists and is not empty (pass overwrite=True)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        artifacts = tmp / ARTIFACTS
        artifacts.mkdir()
        model.save(artifacts)
        version = getattr(model, "version", None)
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "model_version": str(version) if version is not None else tmp.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "data_fingerprint": str(data_fingerprint),
            "config": json_safe(config, "config"),
            "metrics": json_safe(metrics, "metrics"),
            "artifacts": _list_artifacts(artifacts),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
        _fsync_tree(tmp)
        if out.exists():  # empty directory, or overwrite: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "b")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
        _fsync(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------------------------
# load


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "kind": str,
    "model_version": str,
    "created_at": str,
    "code_version": str,
    "data_fingerprint": str,
    "config": dict,
    "metrics": dict,
    "artifacts": list,
}


def _safe_relpath(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise BundleError(f"{where}: artifact path {raw!r}; expected a non-empty string")
    p = PurePosixPath(raw)
    if (
        "\\" in raw
        or "\0" in raw
        or p.is_absolute()
        or any(part in ("..", ".", "") for part in raw.split("/"))
    ):
        raise BundleError(
            f"{where}: artifact path {raw!r} escapes or is not normalised; "
            f"expected a relative path inside {ARTIFACTS}/"
        )
    return raw


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and validate ``manifest.json`` of the bundle at ``path`` (structure only)."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"{root}: model bundle not found")
    if not root.is_dir():
        raise BundleError(f"{root}: a model bundle is a directory; this is a file")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing; not a model bundle (see `mlsd train`)")
    if mpath.stat().st_size > _MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath}: larger than {_MAX_MANIFEST_BYTES} bytes; not a manifest")
    try:
        manifest = json.loads(mpath.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BundleError(f"{mpath}: not UTF-8 text ({e})") from e
    except json.JSONDecodeError as e:
        raise BundleError(
            f"{mpath}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from e
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: expected a JSON object, found {type(manifest).__name__}")
    fv = manifest.get("format_version")
    if not isinstance(fv, int) or isinstance(fv, bool) or fv not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"{mpath}: format_version {fv!r} is not supported by mlsd "
            f"(supported: {', '.join(map(str, sorted(SUPPORTED_FORMAT_VERSIONS)))})"
        )
    for key, typ in _REQUIRED.items():
        if key not in manifest:
            raise BundleError(f"{mpath}: field '{key}' missing")
        if not isinstance(manifest[key], typ) or isinstance(manifest[key], bool):
            raise BundleError(
                f"{mpath}: field '{key}' is {type(manifest[key]).__name__}; "
                f"expected {getattr(typ, '__name__', typ)}"
            )
    if manifest["kind"] not in _kinds():
        raise BundleError(
            f"{mpath}: unknown model kind {manifest['kind']!r}; "
            f"known kinds: {', '.join(known_kinds())}"
        )
    seen: set[str] = set()
    for i, a in enumerate(manifest["artifacts"]):
        where = f"{mpath}: artifacts[{i}]"
        if not isinstance(a, dict):
            raise BundleError(f"{where}: expected an object with path, size and sha256")
        rel = _safe_relpath(a.get("path"), where)
        if rel in seen:
            raise BundleError(f"{where}: artifact {rel!r} listed twice")
        seen.add(rel)
        size, digest = a.get("size"), a.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleError(f"{where} ({rel}): size {size!r}; expected a non-negative integer")
        if not isinstance(digest, str) or len(digest) != 64:
            raise BundleError(f"{where} ({rel}): sha256 {digest!r}; expected 64 hex digits")
    return manifest


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check the bundle at ``path`` fully (manifest, every artifact's size and sha256, no
    escapes, nothing unlisted) and return its manifest; raises :class:`BundleError`."""
    root = Path(path)
    manifest = read_manifest(root)
    art = root / ARTIFACTS
    if art.is_symlink() or not art.is_dir():
        raise BundleError(f"{art}: missing or not a directory")
    art_real = art.resolve()
    listed = set()
    for a in manifest["artifacts"]:
        rel = a["path"]
        f = art / rel
        shown = f"{ARTIFACTS}/{rel}"
        # no component may be a symlink: a link could point anywhere on the machine
        cur = art
        for part in PurePosixPath(rel).parts:
            cur = cur / part
            if cur.is_symlink():
                raise BundleError(f"{root / shown}: is or passes through a symlink; refused")
        if not f.resolve().is_relative_to(art_real):
            raise BundleError(f"{root / shown}: resolves outside {art}; refused")
        if not f.is_file():
            raise BundleError(f"{root / shown}: listed in {MANIFEST} but missing")
        size = f.stat().st_size
        if size != a["size"]:
            raise BundleError(
                f"{root / shown}: size {size} bytes, manifest says {a['size']}; "
                "the bundle is corrupt or was modified"
            )
        if sha256_file(f) != a["sha256"].lower():
            raise BundleError(
                f"{root / shown}: sha256 does not match {MANIFEST}; "
                "the bundle is corrupt or was modified"
            )
        listed.add(rel)
    for f in sorted(art.rglob("*")):
        rel = f.relative_to(art).as_posix()
        if f.is_symlink() or (f.is_file() and rel not in listed):
            raise BundleError(f"{root / ARTIFACTS / rel}: not listed in {MANIFEST}; refused")
    return manifest


def load_bundle(path: str | Path, **load_kwargs: Any) -> Any:
    """Verify the bundle at ``path`` (see :func:`verify_bundle`) and load its model with the
    kind's ``load(artifacts_dir, **load_kwargs)``.

    Every failure, including one inside the model's loader, raises :class:`BundleError` naming
    the bundle, so a service reloading a bad bundle keeps serving the old model.
    """
    root = Path(path)
    manifest = verify_bundle(root)
    cls = _kinds()[manifest["kind"]].resolve()
    try:
        model = cls.load(root / ARTIFACTS, **load_kwargs)
    except DataError as e:
        raise BundleError(f"{root}: {e}") from e
    except Exception as e:  # a loader bug or a file the loader rejects: still a bad bundle
        raise BundleError(
            f"{root}: the {manifest['kind']!r} loader failed: {type(e).__name__}: {e}"
        ) from e
    if getattr(model, "version", None) is None:
        with contextlib.suppress(AttributeError):
            model.version = manifest["model_version"]
    return model
