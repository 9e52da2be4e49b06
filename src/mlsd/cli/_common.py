"""What every command module shares: the consoles, the user-error wrapper, the progress bar,
a logging spinner, option types used by more than one command, and loading helpers.

Command modules import this module and library modules only, never each other; only
:mod:`mlsd.cli` (the package) imports the command modules.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from mlsd.errors import DataValidationError, MlsdError

if TYPE_CHECKING:
    from mlsd.data.dataset import Dataset
    from mlsd.pipeline import PipelineConfig

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

# the model registry, for every command that reads or writes it
RegistryUriOpt = Annotated[
    str | None,
    typer.Option(
        "--registry-uri",
        envvar="MLSD_REGISTRY_URI",
        help="MLflow tracking URI of the registry (sqlite:///..., http://...). Default: "
        "MLSD_REGISTRY_URI, else a SQLite registry in ./mlsd-registry.",
        show_default=False,
    ),
]
EventsOpt = Annotated[
    Path,
    typer.Option(
        "--events",
        help="Event log: an mlsd dataset directory, a Parquet/CSV events file, an "
        "interactions-only file (user_id,item_id[,timestamp][,weight|rating]) or a MovieLens "
        "folder/file.",
    ),
]
VideosOpt = Annotated[
    Path | None, typer.Option("--videos", help="Videos catalog (Parquet/CSV, mlsd schema).")
]
UsersOpt = Annotated[Path | None, typer.Option("--users", help="Users table (Parquet/CSV).")]
FormatOpt = Annotated[str, typer.Option("--format", help="auto, mlsd, interactions or movielens.")]

# Column mapping: an interactions log read under its own column names (see column_map).
_COLS = "(interactions files; the mlsd and MovieLens formats have fixed names)"
UserColOpt = Annotated[
    str | None,
    typer.Option(
        "--user-col",
        metavar="NAME",
        help="Column holding the user ids (default: user_id). With --item-col, --time-col, "
        "--weight-col and --rating-col, reads a log such as customer,product,ts,count "
        f"without renaming it; errors name your columns {_COLS}.",
    ),
]
ItemColOpt = Annotated[
    str | None,
    typer.Option(
        "--item-col",
        metavar="NAME",
        help="Column holding the item (video) ids (default: item_id or video_id).",
    ),
]
TimeColOpt = Annotated[
    str | None,
    typer.Option(
        "--time-col",
        metavar="NAME",
        help="Column holding the event times, ISO-8601 or epoch s/ms (default: timestamp).",
    ),
]
WeightColOpt = Annotated[
    str | None,
    typer.Option(
        "--weight-col",
        metavar="NAME",
        help="Column holding a count or confidence >= 0 per row, e.g. plays (default: "
        "weight): a higher weight counts more (ALS confidence, the ranker's sample weight); "
        "0 means seen but not a positive; a negative weight is refused.",
    ),
]
RatingColOpt = Annotated[
    str | None,
    typer.Option(
        "--rating-col",
        metavar="NAME",
        help="Column holding explicit ratings (default: rating); a row with a rating is a "
        "positive when the rating is >= 4.",
    ),
]
UsersFileColOpt = Annotated[
    str,
    typer.Option(
        "--user-col",
        metavar="NAME",
        help="Column of the --users file holding the user ids (the output's user_id).",
    ),
]


def column_map(
    user: str | None, item: str | None, time: str | None, weight: str | None, rating: str | None
) -> dict[str, str]:
    """The column map (:mod:`mlsd.data.loaders.columns`) of the --*-col options given."""
    given = {"user_id": user, "item_id": item, "timestamp": time, "weight": weight}
    return {role: name for role, name in {**given, "rating": rating}.items() if name}


def user_errors(fn: F) -> F:
    """Wrap a command so that an :class:`~mlsd.errors.MlsdError` becomes a message on stderr
    and exit status ``e.exit_code`` (2), without a traceback.

    The message is one line, ``error: <message>``; a :class:`~mlsd.errors.DataValidationError`
    with several problems lists them one per line (then its note). With ``MLSD_DEBUG`` set in
    the environment the error is re-raised instead. The wrapper keeps ``fn``'s signature
    (``functools.wraps``), which is what Typer reads the options from.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlsdError as e:
            if os.environ.get("MLSD_DEBUG"):
                raise
            _print_error(e)
            raise typer.Exit(e.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _print_error(e: MlsdError) -> None:
    if isinstance(e, DataValidationError) and len(e.problems) > 1:
        head = f"{len(e.problems)} problems found"
        err_console.print(Text.assemble(("error:", "red"), " ", head), soft_wrap=True)
        for p in e.problems:
            err_console.print(f"  - {p}", soft_wrap=True, markup=False)
        if e.note:
            err_console.print(f"  ({e.note})", soft_wrap=True, markup=False)
    else:
        # Text, not markup: messages quote file contents and paths, which may hold "[...]".
        err_console.print(Text.assemble(("error:", "red"), " ", str(e)), soft_wrap=True)


def progress() -> Progress:
    """A Rich progress bar (description, bar, done/total, elapsed) on stderr, so that stdout
    keeps only results; it is left on screen only when stderr is a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=not err_console.is_terminal,
    )


@contextmanager
def status_log(what: str) -> Iterator[Callable[[str], None]]:
    """Show a spinner reading ``what`` on the console; yield ``say(message)``, which logs the
    message above the spinner and makes it the spinner's text (for long library calls that
    report their steps through a ``log`` callback)."""
    with console.status(what) as status:

        def say(message: str) -> None:
            console.log(message)
            status.update(message)

        yield say


def load_events(
    events: Path,
    videos: Path | None,
    users: Path | None,
    fmt: str,
    columns: dict[str, str] | None = None,
) -> Dataset:
    """Load a user's event log (and optional catalogs) with :func:`mlsd.data.loaders.load`,
    behind a spinner; ``columns`` is the column map of the --*-col options. Raises what the
    loader raises (a :class:`~mlsd.errors.DataError`)."""
    from mlsd.data.loaders import load

    with console.status(f"loading {events} ..."):
        return load(events, fmt=fmt, videos=videos, users=users, columns=columns)


def simulated(scale: str, seed: int) -> Dataset:
    """The simulated platform of ``scale`` (tiny, small or large) and ``seed``; a
    :class:`~mlsd.errors.ConfigError` for an unknown scale."""
    from mlsd.config import SimulationConfig
    from mlsd.data.simulate import simulate

    return simulate(SimulationConfig.for_scale(scale, seed=seed))


def pipeline_config(path: Path | None) -> PipelineConfig:
    """The :class:`~mlsd.pipeline.PipelineConfig` in YAML file ``path``; the defaults when
    ``path`` is None."""
    from mlsd.config import load_yaml
    from mlsd.pipeline import PipelineConfig

    return load_yaml(path, PipelineConfig) if path is not None else PipelineConfig()
