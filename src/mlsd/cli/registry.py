"""``mlsd models ...``: the model registry (list, show, promote, rollback, diff).

Every command takes ``--registry-uri`` (or the ``MLSD_REGISTRY_URI`` variable); without
either, the embedded registry in ``./mlsd-registry`` (SQLite, no server).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mlsd.cli._common import RegistryUriOpt, console, user_errors

models_app = typer.Typer(
    rich_markup_mode="markdown",
    help="The model registry (MLflow): versions, the champion and challenger aliases, "
    "promotion, rollback and side-by-side diffs.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Registered model name.")]

#: metrics shown in list/show, in this order, when a version has them
HEADLINE = {
    "ndcg_at_20": "NDCG@20",
    "recall_at_20": "Recall@20",
    "ranker.watch.valid_auc": "AUC",
    "seconds.total": "train s",
}


def _registry(uri: str | None) -> Any:
    from mlsd.registry import Registry

    return Registry(uri)


def _gates_text(v: Any) -> str:
    if v.gates_passed is None:
        return "-"
    failed = [k for k, g in (v.gates or {}).items() if isinstance(g, dict) and not g.get("passed")]
    return "passed" if v.gates_passed else "failed: " + ", ".join(failed)


@models_app.command("register")
@user_errors
def models_register(
    name: NameArg,
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory (mlsd train --out).")],
    champion: Annotated[
        bool, typer.Option(help="Make it the champion (default: when the name has none).")
    ] = False,
    registry_uri: RegistryUriOpt = None,
) -> None:
    """Register an existing bundle as a new version (the same bundle twice: one version)."""
    reg = _registry(registry_uri)
    v = reg.register(bundle, name)
    console.print(f"registered {name} v{v.version} ({v.model_version}) in {reg.uri}")
    if champion or reg.alias(name, "champion") is None:
        reg.promote(name, v.version, reason="registered as champion")
        console.print(f"{name} v{v.version} is the champion")


@models_app.command("list")
@user_errors
def models_list(name: NameArg, registry_uri: RegistryUriOpt = None) -> None:
    """Versions of a model, oldest first, with their aliases, headline metrics and gates."""
    reg = _registry(registry_uri)
    versions = reg.versions(name)
    t = Table(title=f"{name} ({reg.uri})")
    for col in ("v", "aliases", "bundle", "created"):
        t.add_column(col)
    for col in HEADLINE.values():
        t.add_column(col, justify="right")
    t.add_column("gates")
    for v in versions:
        t.add_row(
            str(v.version), ", ".join(v.aliases) or "-", v.model_version, v.created_at[:16],
            *(f"{v.metrics[m]:.4g}" if m in v.metrics else "-" for m in HEADLINE),
            _gates_text(v),
        )  # fmt: skip
    console.print(t)


@models_app.command("show")
@user_errors
def models_show(
    name: NameArg,
    version: Annotated[
        str | None, typer.Argument(help="Version number or alias (default: champion).")
    ] = None,
    registry_uri: RegistryUriOpt = None,
) -> None:
    """One version in full: aliases, source, tags, every metric and the gate report; then
    the champion history."""
    reg = _registry(registry_uri)
    v = _version(reg, name, version or "champion")
    t = Table(title=f"{name} v{v.version}", show_header=False)
    t.add_column("field")
    t.add_column("value")
    t.add_row("aliases", ", ".join(v.aliases) or "-")
    t.add_row("bundle version", v.model_version)
    t.add_row("created", v.created_at)
    t.add_row("source", v.source)
    t.add_row("run", v.run_id)
    for k, val in sorted(v.tags.items()):
        if k not in ("mlsd.gates",):
            t.add_row(f"tag {k}", val)
    for k, m in sorted(v.metrics.items()):
        t.add_row(f"metric {k}", f"{m:.6g}")
    t.add_row("gates", _gates_text(v))
    console.print(t)
    for gate, g in (v.gates or {}).items():
        console.print(f"  gate {gate}: {json.dumps(g, default=str)}")
    hist = reg.history(name)
    if hist:
        console.print("champion history: " + " -> ".join(
            f"v{h['version']} ({h['action']})" for h in hist[-10:]
        ))  # fmt: skip


def _version(reg: Any, name: str, which: str) -> Any:
    from mlsd.errors import RegistryError

    if which.isdigit():
        return reg.version(name, int(which))
    got = reg.alias(name, which)
    if got is None:
        raise RegistryError(f"{name} has no alias {which!r}")
    return got


@models_app.command("promote")
@user_errors
def models_promote(
    name: NameArg,
    version: Annotated[int, typer.Argument(help="Version to make the champion.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "manual",
    registry_uri: RegistryUriOpt = None,
) -> None:
    """Move the `champion` alias to VERSION (services following the alias swap to it)."""
    reg = _registry(registry_uri)
    before = reg.alias(name, "champion")
    v = reg.promote(name, version, reason=reason)
    was = f"v{before.version}" if before else "none"
    console.print(f"{name}: champion {was} -> v{v.version} ({v.model_version})")


@models_app.command("rollback")
@user_errors
def models_rollback(
    name: NameArg,
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "",
    registry_uri: RegistryUriOpt = None,
) -> None:
    """Move `champion` back to the previous champion (from the recorded alias history)."""
    reg = _registry(registry_uri)
    old, new = reg.rollback(name, reason=reason)
    console.print(f"{name}: champion v{old.version} -> v{new.version} ({new.model_version})")


@models_app.command("diff")
@user_errors
def models_diff(
    name: NameArg,
    v1: Annotated[str, typer.Argument(help="Version number or alias.")],
    v2: Annotated[str, typer.Argument(help="Version number or alias.")],
    all_params: Annotated[
        bool, typer.Option("--all", help="Show every param, not only those that differ.")
    ] = False,
    registry_uri: RegistryUriOpt = None,
) -> None:
    """Params, metrics and gate results of two versions side by side."""
    reg = _registry(registry_uri)
    a, b = _version(reg, name, v1), _version(reg, name, v2)
    t = Table(title=f"{name}: v{a.version} vs v{b.version}")
    for col in ("", f"v{a.version}", f"v{b.version}", "change"):
        t.add_column(col)
    t.add_row("bundle", a.model_version, b.model_version, "")
    t.add_row("aliases", ", ".join(a.aliases) or "-", ", ".join(b.aliases) or "-", "")
    t.add_row("data", a.tags.get("mlsd.data_fingerprint", "-")[:19],
              b.tags.get("mlsd.data_fingerprint", "-")[:19], "")  # fmt: skip
    for k in sorted(set(a.metrics) | set(b.metrics)):
        x, y = a.metrics.get(k), b.metrics.get(k)
        change = f"{y - x:+.4g}" if x is not None and y is not None else ""
        t.add_row(f"metric {k}", _fmt(x), _fmt(y), change)
    for k in sorted(set(a.params) | set(b.params)):
        x, y = a.params.get(k, "-"), b.params.get(k, "-")
        if all_params or x != y:
            t.add_row(f"param {k}", x, y, "differs" if x != y else "")
    ga, gb = a.gates or {}, b.gates or {}
    for k in sorted(set(ga) | set(gb)):
        t.add_row(f"gate {k}", _gate(ga.get(k)), _gate(gb.get(k)), "")
    t.add_row("gates", _gates_text(a), _gates_text(b), "")
    console.print(t)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _gate(g: Any) -> str:
    if not isinstance(g, dict):
        return "-"
    verdict = "pass" if g.get("passed") else "FAIL"
    value = g.get("value")
    return f"{verdict} ({value:.4g})" if isinstance(value, int | float) else verdict
