"""The house's contracts hold, and they can fail: import-linter's layer and acyclic contracts
(pyproject.toml) and the module-size check, run on the repository and on a copy of ``src``
with a forbidden import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
sys.path.insert(0, str(ROOT / "scripts"))
from check_module_size import oversized  # noqa: E402

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT / "src" / "mlsd", tree / "src" / "mlsd",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_repository_keeps_its_layers(copy: Path) -> None:
    got = _lint(copy)
    assert got.returncode == 0, got.stdout[-3000:]
    assert "2 kept, 0 broken" in got.stdout


def test_retrieval_importing_serving_breaks_the_layers(copy: Path) -> None:
    module = copy / "src/mlsd/retrieval/popular.py"
    original = module.read_text()
    try:
        module.write_text(original + "\nimport mlsd.serving  # noqa: E402\n")
        got = _lint(copy)
    finally:
        module.write_text(original)
    assert got.returncode != 0
    assert "mlsd.retrieval is not allowed to import mlsd.serving" in got.stdout


def test_no_module_over_500_lines_and_the_check_sees_one(tmp_path: Path) -> None:
    assert oversized(ROOT / "src") == []
    (tmp_path / "big.py").write_text("x = 1\n" * 501)
    (tmp_path / "ok.py").write_text("x = 1\n" * 500)
    assert [(p.name, n) for p, n in oversized(tmp_path)] == [("big.py", 501)]
