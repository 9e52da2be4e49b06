"""The ``mlsd`` command line: a thin Typer front door; every command delegates to the library.

User errors (any :class:`~mlsd.errors.MlsdError`) print a short message and exit with status 2,
without a traceback. Set ``MLSD_DEBUG=1`` to see the traceback anyway.

This package only composes :data:`app` from the command modules (one per command group); they
share :mod:`mlsd.cli._common` and never import each other. Nothing in mlsd imports this package.
"""

from __future__ import annotations

import typer

from mlsd.cli.data import data_app, simulate
from mlsd.cli.demo import demo
from mlsd.cli.evaluate import evaluate_app
from mlsd.cli.experiment import experiment_app
from mlsd.cli.features import features_app
from mlsd.cli.models import recommend, train
from mlsd.cli.monitor import monitor
from mlsd.cli.registry import models_app
from mlsd.cli.retrain import retrain
from mlsd.cli.search import search_app
from mlsd.cli.serve import bench_app, serve

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode="markdown",
    name="mlsd",
    help="Machine-learning system design, running: simulate, validate, train, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Registration order is the order `mlsd --help` lists the commands in.
app.command("train")(train)
app.command("recommend")(recommend)
app.command("demo")(demo)
app.command("serve")(serve)
app.command("simulate")(simulate)
app.command("retrain")(retrain)
app.command("monitor")(monitor)
app.add_typer(data_app, name="data")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(features_app, name="features")
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")
app.add_typer(experiment_app, name="experiment")
app.add_typer(search_app, name="search")
