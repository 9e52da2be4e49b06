"""Running the service: the app built from a model bundle and its settings
(:class:`~mlsd.serving.settings.ServeSettings`), and uvicorn.

``mlsd serve`` calls :func:`run`. With one worker the app is built in-process; with several,
uvicorn starts worker processes that each call :func:`app_from_env`, which reads the same
settings from ``MLSD_*`` environment variables (uvicorn needs an import string and a factory
to spawn workers).

Several workers: where the platform can fork (Linux, macOS), the bundle is loaded once and the
workers are forked from it, sharing its memory (:mod:`.prefork`); elsewhere uvicorn spawns
workers that each load it.

Hot reload with several workers: ``/admin/reload`` would only swap the model of the one worker
that received the request, so it is refused; instead point ``--model`` at a symlink, retarget
it, and send ``SIGHUP`` to the ``mlsd serve`` process, which loads it (and replays the event
log into it) while the old workers serve, then replaces them all.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from fastapi import FastAPI

from mlsd.errors import ConfigError, MlsdError
from mlsd.features import open_store
from mlsd.pipeline.servable import Servable, ServingOptions
from mlsd.serving import experiment, prefork
from mlsd.serving.app import create_app
from mlsd.serving.arrival import ArrivalStampedHttpTools
from mlsd.serving.bundle import load_bundle, verify_bundle
from mlsd.serving.ingest import EventLogBackend, open_log
from mlsd.serving.ingest.applier import Replayed, SnapshotStore, replay
from mlsd.serving.ingest.memory_log import MemoryEventLog
from mlsd.serving.ingest.runtime import IngestOptions
from mlsd.serving.limits import uvicorn_options
from mlsd.serving.model_calls import single_threaded_kernels
from mlsd.serving.settings import ServeSettings

__all__ = [
    "ServeSettings", "app_from_env", "build_app", "load_kwargs", "model_loader", "prepare", "run"
]  # fmt: skip

PRECOMPUTE_THREADS = 2


def load_kwargs(online_store: str) -> dict[str, Any]:
    """Keyword arguments for the model loader: the online store, unless the embedded default.

    A shared store is opened to check, on every read, that it still holds the model's
    records (see ``RedisStore.require_populated``): one that came back empty makes requests
    degrade with that reason until the tailer has repopulated it."""
    if online_store == "memory":
        return {}
    store = open_store(online_store)
    if hasattr(store, "require_populated"):
        store.require_populated = True
    return {"online_store": store}


class _NoReloadAcrossWorkers:
    def __init__(self, workers: int) -> None:
        self.workers = workers

    def __call__(self, model_dir: str) -> NoReturn:
        raise ConfigError(
            f"this service runs {self.workers} worker processes and /admin/reload would swap "
            "only one of them; point --model at a symlink, retarget it and send SIGHUP to "
            f"the mlsd serve process (pid {os.getppid()}) to replace the workers one by one"
        )


def prepare(
    model: Servable,
    *,
    candidate_cache: bool = True,
    cache_dir: str | Path | None = None,
    stale_while_revalidate: bool = False,
) -> Servable:
    """Serving-only preparation of a loaded model (see :meth:`Servable.prepare`), each step
    reported on stderr; returns the model."""
    model.prepare(
        ServingOptions(
            candidate_cache=candidate_cache,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            threads=PRECOMPUTE_THREADS,
            stale_while_revalidate=stale_while_revalidate,
        ),
        _say,
    )
    return model


def _say(message: str) -> None:
    print(f"mlsd serve: {message}", file=sys.stderr, flush=True)


def model_loader(settings: ServeSettings) -> Callable[[str | Path], Servable]:
    """``load(model_dir)``: a bundle loaded with ``settings``' online store and prepared for
    serving (the one path of a start, an /admin/reload and a SIGHUP reload)."""
    kwargs = load_kwargs(settings.online_store)

    faults = parse_faults(settings.feature_fault)

    def load(model_dir: str | Path) -> Servable:
        model = load_bundle(model_dir, **kwargs)
        if faults:  # a drill: the feature pipeline sends these constants
            model.feature_faults = faults
            _say(f"feature fault injected: {settings.feature_fault}")
        return prepare(
            model,
            candidate_cache=settings.candidate_cache,
            cache_dir=settings.candidate_cache_dir,
            stale_while_revalidate=settings.candidate_refresh == "background",
        )

    if settings.experiment is None:
        return load
    if settings.online_store != "memory":
        raise ConfigError(
            "--experiment needs the embedded online store (--online-store memory): each arm "
            "keeps its own online state"
        )
    config = experiment.load_config(settings.experiment)
    log = exposure_log(settings)
    exposures = experiment.ExposureLog(log) if log is not None else None

    def load_experiment(model_dir: str | Path) -> Servable:
        arms = experiment.build_arms(config, model_dir, load)
        return experiment.ExperimentServable(config, arms, exposures)

    return load_experiment


def parse_faults(text: str | None) -> dict[str, float]:
    """``NAME=VALUE[,NAME=VALUE]`` (``--feature-fault``) as a dict; ConfigError otherwise."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value) if sep else 0.0
        except ValueError:
            raise ConfigError(f"--feature-fault {text!r}: expected NAME=NUMBER[,...]") from None
    return out


def exposure_log(settings: ServeSettings) -> Path | None:
    """Where an experiment's exposures go: ``settings.exposure_log``, else
    ``<event log>.exposures.jsonl`` beside a file event log, else None (not logged)."""
    if settings.exposure_log is not None:
        return settings.exposure_log
    log = settings.event_log
    if log is None or log.startswith("redis://"):
        return None
    return Path(log).with_name(Path(log).name + ".exposures.jsonl")


def open_events(settings: ServeSettings) -> EventLogBackend:
    """The service's event log: ``settings.event_log`` (a file or a Redis stream), or an
    in-memory one without it."""
    if settings.event_log is None:
        return MemoryEventLog()
    return open_log(settings.event_log)


def snapshot_store(settings: ServeSettings) -> SnapshotStore | None:
    """Where snapshots of the online state go: ``settings.snapshot_dir``, else beside a file
    event log (``<log>.snapshots``); None for a Redis stream without a directory."""
    if settings.snapshot_dir is not None:
        return SnapshotStore(settings.snapshot_dir)
    log = settings.event_log
    if log is None or log.startswith("redis://"):
        return None
    return SnapshotStore(Path(log).with_name(Path(log).name + ".snapshots"))


def load_replayed(settings: ServeSettings) -> Replayed:
    """The bundle loaded and prepared, its online state brought up to the end of the event
    log (snapshot + replay): what a start, a re-fork and a SIGHUP reload serve."""
    model = model_loader(settings)(settings.model_dir)
    events = open_events(settings)
    try:
        return replay(model, events, snapshots=snapshot_store(settings), say=_say)
    finally:
        events.close()


def build_app(settings: ServeSettings, model: Servable | Replayed | None = None) -> FastAPI:
    """The FastAPI app for ``settings``; loads the bundle and replays the event log unless
    ``model`` is given (a :class:`Replayed` model continues the log from its position; a bare
    one, from the log's end as it is now)."""
    single_threaded_kernels()
    reload = model_loader(settings)
    if model is None:
        model = load_replayed(settings)
    events = open_events(settings)
    if isinstance(model, Replayed):
        replayed = model
    else:
        replayed = Replayed(model, events.end() if settings.event_log is not None else None)
    loader: Callable[[str], Servable] = (
        reload if settings.workers == 1 else _NoReloadAcrossWorkers(settings.workers)
    )
    slot = prefork.worker_slot() or 0
    return create_app(
        replayed.model,
        loader=loader,
        events=events,
        position=replayed.position,
        ingest=IngestOptions(
            max_event_rate=settings.max_event_rate / settings.workers,
            snapshots=snapshot_store(settings),
            snapshot_writer=slot == 0,
        ),
        api_key=settings.api_key,
        model_threads=settings.model_threads,
        max_requests_per_connection=settings.max_requests_per_connection,
        monitor_interval_s=settings.monitor_interval,
        monitor_reference=settings.monitor_reference,
    )


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes (``--workers > 1``)."""
    return build_app(ServeSettings.from_env())


def run(
    settings: ServeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = False,
    on_ready: Any = None,
    supervised: bool = False,
    keep_previous: bool = False,
) -> None:
    """Load (or, with several workers, verify) the bundle, then serve until interrupted.

    A bad bundle raises :class:`~mlsd.serving.bundle.BundleError` before any socket is opened.
    ``on_ready(description)`` is called once the model is loaded, before uvicorn starts.
    ``supervised``: run even one worker under the pre-fork supervisor, so that SIGHUP reloads
    it (what serving a registry alias needs). ``keep_previous``: the supervisor keeps the model
    it served before a reload in memory, so that a reload back to that bundle (a rollback)
    forks workers from it at once instead of loading it again.
    """
    import uvicorn

    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "timeout_graceful_shutdown": 10,
        # longer than a load balancer's idle timeout (60 s on the common ones): with uvicorn's
        # default of 5 s the server closes connections a client is about to reuse
        "timeout_keep_alive": 75,
        # stamps each request's arrival, so that waits on a busy event loop count toward the
        # queue budget (see mlsd.serving.arrival)
        "http": ArrivalStampedHttpTools,
        # header size limit (431) and the header timeout of idle new connections
        **uvicorn_options(),
    }
    if settings.workers == 1 and not (supervised and prefork.available()):
        app = build_app(settings)
        model = app.state.service.holder.get()
        if settings.event_log is None:
            _say("no --event-log: events are kept in memory only (lost at exit)")
        if on_ready is not None:
            on_ready(f"model {model.version} from {settings.model_dir}")
        uvicorn.run(app, **common)
        return
    if prefork.available():
        _run_preforked(settings, common, on_ready, keep_previous=keep_previous)
        return
    manifest = verify_bundle(settings.model_dir)
    if on_ready is not None:
        on_ready(
            f"model {manifest['model_version']} from {settings.model_dir}, "
            f"{settings.workers} workers"
        )
    os.environ.update(settings.to_env())
    try:
        uvicorn.run(
            "mlsd.serving.server:app_from_env", factory=True, workers=settings.workers, **common
        )
    except SystemExit as e:  # uvicorn exits when a worker cannot import or build the app
        if e.code not in (0, None):
            raise MlsdError(f"the service stopped with status {e.code}; see the log above") from e
        raise


def _run_preforked(
    settings: ServeSettings, common: dict[str, Any], on_ready: Any, *, keep_previous: bool = False
) -> None:
    """Load once, fork ``settings.workers`` uvicorn servers on the port (see :mod:`.prefork`);
    returns when they have all stopped."""
    import uvicorn

    single_threaded_kernels()
    if settings.event_log is None:  # the workers must share one log to agree
        tmp = tempfile.mkdtemp(prefix="mlsd-events-")
        settings = settings.model_copy(update={"event_log": str(Path(tmp) / "events.jsonl")})
        _say(
            f"no --event-log: the {settings.workers} workers share {settings.event_log}, "
            "removed at exit (pass --event-log to keep events across restarts)"
        )
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)

    kept: OrderedDict[str, Replayed] = OrderedDict()  # bundle path -> model, last used last

    def load() -> Replayed:
        # OpenMP thread counts are per thread, and a SIGHUP's load runs on the supervisor's
        # loader thread: keep it to one there too (no OpenMP pool in the process workers fork)
        single_threaded_kernels()
        key = os.path.realpath(settings.model_dir)
        if key in kept:
            # the supervisor's copy was never served from (workers have their own): its state
            # is the one loaded; the new workers' tailers replay the log from its position
            kept.move_to_end(key)
            _say(f"{key}: the model served before is still in memory; forking from it")
            return kept[key]
        loaded = load_replayed(settings)
        if keep_previous:
            kept[key] = loaded
            while len(kept) > 2:  # the one serving and the one before it
                kept.popitem(last=False)
        return loaded

    def serve(model: Any, channel: Any) -> None:
        app = build_app(settings, model=model)  # /admin/reload refused: several workers
        prefork.HandedServer(uvicorn.Config(app, **common), channel).run()

    model = load()
    try:
        sock = prefork.bind(common["host"], common["port"])
    except OSError as e:
        raise MlsdError(f"cannot listen on {common['host']}:{common['port']}: {e}") from e
    sup = prefork.Supervisor(load=load, serve=serve, sock=sock, workers=settings.workers)

    def ready() -> None:
        if on_ready is not None:
            on_ready(
                f"model {model.model.version} from {settings.model_dir}, "
                f"{settings.workers} workers forked from one loaded copy"
            )

    code = sup.run(model, on_ready=ready)
    sock.close()
    if code:
        raise MlsdError(f"the service stopped with status {code}; see the log above")
