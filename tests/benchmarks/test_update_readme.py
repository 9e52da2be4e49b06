"""``benchmarks/update_readme.py``: the pages agree with the results files, and ``--check``
catches a page that does not, without writing anything. Works on copies in ``tmp_path``."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "update_readme.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_readme", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def pages(tmp_path: Path) -> tuple[Path, Path]:
    readme, docs = tmp_path / "README.md", tmp_path / "benchmarks.md"
    shutil.copy(ROOT / "README.md", readme)
    shutil.copy(ROOT / "docs" / "benchmarks.md", docs)
    return readme, docs


def _args(readme: Path, docs: Path, *extra: str) -> list[str]:
    return ["--readme", str(readme), "--docs", str(docs), *extra]


def _first_row(text: str, block: str) -> str:
    """The first data row of the first table in ``block``."""
    m = re.search(rf"<!-- bench:{block} -->(.*?)<!-- /bench:{block} -->", text, re.S)
    assert m is not None, f"no {block} block"
    rows = [line for line in m.group(1).splitlines() if line.startswith("|")]
    return rows[2]  # header, separator, first row


def _alter_cell(path: Path, block: str) -> tuple[str, str]:
    """Change the second cell of the block's first row; returns (row, altered row)."""
    text = path.read_text()
    row = _first_row(text, block)
    cells = row.split("|")
    cells[2] = cells[2].rstrip() + "9 "
    altered = "|".join(cells)
    path.write_text(text.replace(row, altered, 1))
    return row, altered


def test_check_passes_on_the_repo_as_is() -> None:
    # as `make lint` runs it: its own process, the repository's pages and results
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(("page", "block"), [(0, "simulate"), (1, "serving-runs")])
def test_check_fails_on_an_altered_cell_and_writes_nothing(
    script: ModuleType,
    pages: tuple[Path, Path],
    page: int,
    block: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = pages[page]
    row, altered = _alter_cell(path, block)
    before = [p.read_text() for p in pages]
    assert script.main(_args(*pages, "--check")) == 1
    out = capsys.readouterr()
    assert f"-{altered}\n" in out.out and f"+{row}\n" in out.out  # a unified diff
    assert "out of date" in out.err
    assert [p.read_text() for p in pages] == before


def test_without_check_the_pages_are_regenerated(
    script: ModuleType, pages: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = [(ROOT / "README.md").read_text(), (ROOT / "docs" / "benchmarks.md").read_text()]
    row, altered = _alter_cell(pages[0], "features")
    assert script.main(_args(*pages)) == 0
    text = pages[0].read_text()
    assert row in text and altered not in text
    assert script.main(_args(*pages, "--check")) == 0
    assert [p.read_text() for p in pages] == repo  # the copies again, the repo's untouched
    assert [(ROOT / "README.md").read_text(), (ROOT / "docs" / "benchmarks.md").read_text()] == repo


def test_missing_results_leave_a_placeholder(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(ROOT / "benchmarks" / "results" / "simulate.json", results)
    readme = tmp_path / "README.md"
    readme.write_text(
        "a <!-- bench:simulate -->old<!-- /bench:simulate --> b\n"
        "<!-- bench:demo -->\nold\n<!-- /bench:demo -->\n"
    )
    docs = tmp_path / "benchmarks.md"
    docs.write_text("no blocks\n")
    assert script.main(_args(readme, docs, "--results", str(results))) == 0
    text = readme.read_text()
    scales = json.loads((results / "simulate.json").read_text())["scales"]
    assert f"{scales['large']['rows']['events']:,}" in text
    assert "<!-- bench:demo -->\n_No results yet: run `python benchmarks/demo.py`._\n" in text


def test_an_unknown_block_is_refused(script: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:nonesuch -->\n<!-- /bench:nonesuch -->\n")
    with pytest.raises(SystemExit, match="unknown block"):
        script.main(_args(readme, readme, "--check"))
