"""The command line's shape: ``mlsd.cli`` is the top layer (nothing imports it), its command
modules share ``_common`` and never import each other, and user errors go through one wrapper."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mlsd
from mlsd.cli import app

SRC = Path(mlsd.__file__).parent
CLI = SRC / "cli"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from a import b`` gives ``a`` and
    ``a.b``, since ``b`` may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_nothing_outside_the_cli_imports_it() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if CLI not in p.parents
        and any(n == "mlsd.cli" or n.startswith("mlsd.cli.") for n in _imports(p))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "module",
    sorted(p.name for p in CLI.glob("*.py") if p.name not in ("__init__.py", "__main__.py")),
)
def test_command_modules_import_only_common_from_the_cli(module: str) -> None:
    from_cli = {n for n in _imports(CLI / module) if n == "mlsd.cli" or n.startswith("mlsd.cli.")}
    assert {n for n in from_cli if not n.startswith("mlsd.cli._common")} == set()


def test_mlsd_debug_reraises_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsd.errors import ConfigError

    res = CliRunner().invoke(app, ["features", "skew-check"])
    assert res.exit_code == 2 and "error: give either a dataset PATH" in res.output
    monkeypatch.setenv("MLSD_DEBUG", "1")
    res = CliRunner().invoke(app, ["features", "skew-check"])
    assert isinstance(res.exception, ConfigError)


def test_python_dash_m_runs_the_same_app() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mlsd.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert "Usage: python -m mlsd.cli" in res.stdout and "simulate" in res.stdout
