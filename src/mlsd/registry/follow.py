"""Serving a registry alias: ``mlsd serve --model models:/NAME@champion``.

:class:`AliasFollower` resolves the alias to a bundle directory and points a symlink at it;
the service serves the symlink. A thread then polls the registry every ``interval_s``: when
the alias names another version, the follower fetches that bundle, retargets the symlink
(atomically: a new link renamed over the old) and calls ``on_change`` (``mlsd serve`` sends
itself SIGHUP: the supervisor loads the new bundle beside the old workers and swaps them,
the reload path of :mod:`mlsd.serving.prefork`). A registry that cannot be reached is logged
and tried again at the next poll; the service keeps its model meanwhile.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from mlsd.errors import MlsdError
from mlsd.registry.client import ModelRef, Registry, VersionInfo, parse_model_uri

__all__ = ["AliasFollower"]

log = logging.getLogger(__name__)


class AliasFollower:
    """Keeps ``link`` pointing at the bundle of ``ref`` (``models:/NAME@ALIAS`` or
    ``models:/NAME/VERSION``; a version never moves, so it is resolved once)."""

    def __init__(
        self,
        registry: Registry,
        ref: ModelRef | str,
        *,
        link: str | Path | None = None,
        interval_s: float = 2.0,
    ) -> None:
        self.registry = registry
        self.ref = parse_model_uri(ref) if isinstance(ref, str) else ref
        if link is None:
            root = Path(tempfile.mkdtemp(prefix=f"mlsd-serve-{self.ref.name}-"))
            link = root / "bundle"
        self.link = Path(link)
        self.interval_s = interval_s
        self.current: VersionInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def resolve(self) -> Path:
        """Resolve the reference now and point the link at its bundle; returns the link.
        :class:`~mlsd.errors.RegistryError` when it names nothing."""
        info = self.registry.resolve(self.ref)
        self._point(info)
        return self.link

    def _point(self, info: VersionInfo) -> None:
        target = self.registry.bundle_path(info)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, self.link)  # readers see the old target or the new, never none
        self.current = info

    def poll(self) -> bool:
        """One look at the registry: True when the link moved to another version."""
        info = self.registry.resolve(self.ref)
        if self.current is not None and info.version == self.current.version:
            return False
        old = self.current
        self._point(info)
        log.warning(
            "%s: v%s -> v%s (%s)", self.ref, old.version if old else "-", info.version,
            info.model_version,
        )  # fmt: skip
        return True

    def start(self, on_change: Callable[[VersionInfo], None]) -> None:
        """Poll on a daemon thread until :meth:`stop`; ``on_change(new)`` after each move."""
        if self.ref.version is not None:
            return  # models:/NAME/VERSION never moves

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    moved = self.poll()
                except MlsdError as e:
                    log.warning("%s: registry poll failed (%s); still serving v%s", self.ref, e,
                                self.current.version if self.current else "-")  # fmt: skip
                    continue
                except Exception as e:  # never let the thread die: the service depends on it
                    log.exception("%s: registry poll failed: %s", self.ref, e)
                    continue
                if moved and self.current is not None:
                    on_change(self.current)

        self._thread = threading.Thread(target=loop, name="mlsd-alias-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
