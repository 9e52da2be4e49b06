"""``mlsd serve`` and ``mlsd bench serve``: the HTTP service and its load benchmark.

Both delegate to :mod:`mlsd.serving` (``server.run`` and ``loadtest.run_sweep``); a bad
model bundle or option prints one line and exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mlsd.cli._common import RegistryUriOpt, console, err_console, user_errors

bench_app = typer.Typer(
    rich_markup_mode="markdown", help="Benchmarks that ship with mlsd.", no_args_is_help=True
)

ModelOpt = Annotated[
    Path, typer.Option("--model", "-m", help="Model bundle directory (see mlsd.serving.bundle).")
]
ServeModelOpt = Annotated[
    Path,
    typer.Option(
        "--model",
        "-m",
        help="Model bundle directory, or a registry model: models:/NAME@ALIAS (followed: the "
        "service swaps to the version the alias moves to, without downtime) or "
        "models:/NAME/VERSION.",
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        help="Worker processes, one per core (forked from one loaded model on Linux/macOS: "
        "they share its memory; SIGHUP reloads them).",
    ),
]
ThreadsOpt = Annotated[
    int,
    typer.Option(
        "--threads",
        help="Threads per worker running model calls. 0: on the event loop, no hand-off to a "
        "thread (~0.3 ms less a request, the lowest latency with one worker per core); a "
        "request's wait then counts from when the loop parsed it (not while the loop was "
        "busy with one model call).",
    ),
]


@user_errors
def serve(
    model: ServeModelOpt,
    online_store: Annotated[
        str, typer.Option(help="'memory' (embedded) or redis://HOST:PORT/DB.")
    ] = "memory",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: WorkersOpt = 1,
    threads: ThreadsOpt = 2,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="MLSD_API_KEY",
            help="Key for the write endpoints (X-API-Key); prefer the MLSD_API_KEY variable. "
            "Without one, /v1/events and /admin/* answer 403.",
        ),
    ] = None,
    event_log: Annotated[
        str | None,
        typer.Option(
            help="The durable event log: a JSON-lines file, or redis://HOST:PORT/DB for a "
            "Redis stream (several instances can share it; run Redis with appendfsync "
            "always). Events are acknowledged once durable there, every worker applies them "
            "from it, and a restart replays it. Default: none with one worker (events kept "
            "in memory), a temporary file with several.",
        ),
    ] = None,
    max_event_rate: Annotated[
        float,
        typer.Option(
            help="Events per second the service admits (split among the workers); over it, "
            "POST /v1/events answers 429 with Retry-After. 0: no limit.",
        ),
    ] = 1000.0,
    snapshot_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where snapshots of the online state go, so a restart replays only the log "
            "after the newest one. Default: beside a file event log.",
        ),
    ] = None,
    candidate_cache: Annotated[
        bool,
        typer.Option(
            help="Retrieve every known user's candidates ahead at start (exact: a user's new "
            "events invalidate theirs); requests then skip retrieval. Costs start-up time "
            "(~4 ms of CPU a user) and memory (~26 bytes a candidate).",
        ),
    ] = True,
    candidate_cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the retrieved-ahead candidates in this directory between starts: reused "
            "(memory-mapped, seconds) when saved there for this model and mlsd version, else "
            "retrieved and saved there.",
        ),
    ] = None,
    candidate_refresh: Annotated[
        str,
        typer.Option(
            help="When a user's events change their history, their cached candidates are "
            "stale: 'background' serves them once more (ranked with fresh features, watched "
            "videos still filtered) and retrieves them again off the request path; "
            "'request' drops them and the next request retrieves them (slower).",
        ),
    ] = "background",
    max_requests_per_connection: Annotated[
        int,
        typer.Option(
            help="Ask a client to reconnect after this many requests on one keep-alive "
            "connection (0: never), so that the kernel spreads load across --workers again "
            "(nginx's keepalive_requests).",
        ),
    ] = 0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request (costs latency).")] = False,
    registry_uri: RegistryUriOpt = None,
    follow_interval: Annotated[
        float,
        typer.Option(help="Seconds between looks at the registry alias (--model models:/...)."),
    ] = 2.0,
    experiment: Annotated[
        Path | None,
        typer.Option(
            help="An A/B experiment config (YAML: name, salt, arms, split, metrics, mde; see "
            "docs/experiments.md): users are assigned to arms by a hash of user and salt, "
            "each arm's model serves its users, responses and stored events name the arm. "
            "Arms without a model serve --model; registry arms (models:/...) are resolved "
            "at start. Needs --online-store memory.",
        ),
    ] = None,
    exposure_log: Annotated[
        Path | None,
        typer.Option(
            help="Where an experiment logs each slate served (JSON lines). Default: "
            "<event log>.exposures.jsonl beside a file event log, else not logged.",
        ),
    ] = None,
    monitor_interval: Annotated[
        float,
        typer.Option(
            help="Seconds between drift checks of sampled requests' features and scores "
            "against the training reference (gauges mlsd_drift_* and "
            "mlsd_data_quality_issues on /metrics; alerting rules in deploy/prometheus/). "
            "0: off.",
        ),
    ] = 15.0,
    monitor_reference: Annotated[
        str,
        typer.Option(
            help="What the monitor's drift is measured against: 'deployment' (the first full "
            "window after the model went live) or 'training' (rows served at the training "
            "data's end). Data quality is always checked against training.",
        ),
    ] = "deployment",
    feature_fault: Annotated[
        str | None,
        typer.Option(
            help="Drill: serve these features as constants (NAME=VALUE[,...], e.g. a "
            "feature pipeline sending zeros), to see the data-quality alert fire.",
        ),
    ] = None,
) -> None:
    """Serve a model bundle over HTTP until interrupted (OpenAPI docs at /docs).

    The bundle is verified and loaded first: a bad one exits 2 with a one-line message. With
    ``--model models:/NAME@champion`` the alias is resolved in the registry and followed:
    `mlsd models promote` or `rollback` makes the service reload (as SIGHUP does), and the
    model it served before stays in memory so that a rollback to it is immediate.
    """
    from mlsd.serving.server import ServeSettings, run

    follower = None
    if str(model).startswith("models:"):
        from mlsd.errors import ConfigError
        from mlsd.serving import prefork

        if not prefork.available() and "@" in str(model):
            raise ConfigError(
                f"--model {model}: following an alias reloads by SIGHUP under the pre-fork "
                "supervisor, which needs os.fork (Linux, macOS); serve models:/NAME/VERSION"
            )
        follower = _follow(str(model), registry_uri, follow_interval)
        model = follower.link
    settings = ServeSettings(
        model_dir=model,
        online_store=online_store,
        api_key=api_key,
        event_log=event_log,
        workers=workers,
        model_threads=threads,
        candidate_cache=candidate_cache,
        candidate_cache_dir=candidate_cache_dir,
        candidate_refresh=candidate_refresh,
        max_requests_per_connection=max_requests_per_connection,
        max_event_rate=max_event_rate,
        snapshot_dir=snapshot_dir,
        experiment=_resolved_experiment(experiment, registry_uri) if experiment else None,
        exposure_log=exposure_log,
        monitor_interval=monitor_interval,
        monitor_reference=monitor_reference,
        feature_fault=feature_fault,
    )

    def ready(what: str) -> None:
        err_console.print(f"serving {what} on http://{host}:{port}", markup=False)
        if api_key is None:
            err_console.print("note: no API key; write endpoints answer 403", markup=False)
        if follower is not None:
            # only now: the supervisor has its SIGHUP handler (before it, SIGHUP would end
            # the process), and the workers are forked (they do not inherit this thread)
            import os
            import signal

            follower.start(lambda new: os.kill(os.getpid(), signal.SIGHUP))

    run(
        settings,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        on_ready=ready,
        supervised=follower is not None,
        keep_previous=follower is not None,
    )


def _resolved_experiment(path: Path, registry_uri: str | None) -> Path:
    """``path``, or a copy with its registry arms (models:/...) resolved to bundle paths."""
    from mlsd.serving.experiment import load_config

    cfg = load_config(path)
    if not any(a.model and a.model.startswith("models:/") for a in cfg.arms):
        return path
    import tempfile

    import yaml

    from mlsd.registry import Registry

    reg = Registry(registry_uri)
    arms = []
    for a in cfg.arms:
        if a.model and a.model.startswith("models:/"):
            info = reg.resolve(a.model)
            err_console.print(f"arm {a.name}: {a.model} -> v{info.version}", markup=False)
            a = a.model_copy(update={"model": str(reg.bundle_path(info))})
        arms.append(a)
    out = Path(tempfile.mkdtemp(prefix="mlsd-experiment-")) / path.name
    out.write_text(yaml.safe_dump(cfg.model_copy(update={"arms": arms}).model_dump(mode="json")))
    return out


def _follow(uri: str, registry_uri: str | None, interval_s: float) -> Any:
    from mlsd.registry import Registry
    from mlsd.registry.follow import AliasFollower

    follower = AliasFollower(Registry(registry_uri), uri, interval_s=interval_s)
    follower.resolve()
    v = follower.current
    assert v is not None
    err_console.print(
        f"{uri}: v{v.version} ({v.model_version}); following the registry every {interval_s:g} s",
        markup=False,
    )
    return follower


@bench_app.command("serve")
@user_errors
def bench_serve(
    model: ModelOpt,
    rate: Annotated[float, typer.Option(help="Requests per second (open loop).")] = 200.0,
    duration: Annotated[float, typer.Option(help="Measured seconds.")] = 60.0,
    warmup: Annotated[float, typer.Option(help="Unmeasured seconds at the same rate first.")] = 5.0,
    k: Annotated[int, typer.Option(help="Videos per recommendation.")] = 20,
    workers: WorkersOpt = 1,
    threads: ThreadsOpt = 2,
    data: Annotated[
        Path | None,
        typer.Option(help="Dataset the model was trained on, to pick heavy and light users."),
    ] = None,
    candidate_cache: Annotated[
        bool, typer.Option(help="Serve with known users' candidates retrieved ahead.")
    ] = True,
    candidate_cache_dir: Annotated[
        Path | None,
        typer.Option(help="Keep those candidates there between runs (see `mlsd serve`)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the user sampling.")] = 0,
    out: Annotated[Path, typer.Option(help="Where to write the JSON result.")] = Path(
        "benchmarks/results/serving.json"
    ),
) -> None:
    """Load-test `mlsd serve`: start it on loopback, send POST /v1/recommendations open-loop at
    RATE for DURATION seconds (heavy, light and new users), report latency percentiles from
    each request's due time, throughput and errors; write JSON to OUT."""
    from mlsd.serving.loadtest import run_sweep, verdict, write_result

    (res,) = run_sweep(
        model,
        rates=[rate],
        duration_s=duration,
        warmup_s=warmup,
        k=k,
        workers=workers,
        model_threads=threads,
        candidate_cache=candidate_cache,
        candidate_cache_dir=candidate_cache_dir,
        data=data,
        seed=seed,
        log=lambda m: err_console.print(m, markup=False),
    )
    path = write_result(res, out)
    lat = res["latency_ms"]
    console.print(
        f"{res['ok']:,}/{res['requests']:,} ok, {res['errors']} errors, "
        f"{res['achieved_rps']} rps; latency ms p50 {lat['p50']} p95 {lat['p95']} "
        f"p99 {lat['p99']} max {lat['max']}; goal: {verdict(res)}",
        markup=False,
    )
    console.print(f"wrote {path}", markup=False)
    if res["errors"]:
        err_console.print(json.dumps(res["errors_by_kind"]), markup=False)
