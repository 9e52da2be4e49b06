"""Report building blocks: :class:`Report` and the sections it is made of (Text, Table, Figure,
Group). Each section renders itself to Markdown and to HTML at a heading level; figures are
matplotlib ``Figure`` objects (no pyplot, so no GUI backend or global state) saved as PNG,
embedded as base64 or written as files (:class:`Assets`). The HTML is static (no scripts)."""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from matplotlib.figure import Figure as MplFigure

__all__ = ["Assets", "Figure", "Group", "Report", "Section", "Table", "Text"]

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
caption { caption-side: bottom; font-size: 0.8rem; color: #555; text-align: left; }
figure { margin: 0.5rem 0 1.5rem; } figcaption { font-size: 0.8rem; color: #555; }
img { max-width: 100%; }
code { background: #f5f5f5; padding: 0 0.2rem; }
"""


class Assets:
    """Where figures go: embedded as ``data:`` URIs (``directory`` None) or written as PNG
    files into ``directory`` and referenced as ``<prefix><name>.png``."""

    def __init__(self, directory: Path | None = None, prefix: str = "") -> None:
        self.directory = directory
        self.prefix = prefix
        self.written: list[Path] = []

    def image(self, name: str, png: bytes) -> str:
        if self.directory is None:
            return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{name}.png"
        path.write_bytes(png)
        self.written.append(path)
        return f"{self.prefix}{name}.png"


class Section(Protocol):
    """Anything that renders to Markdown and HTML at a heading ``level`` (2 = ``##``)."""

    def markdown(self, assets: Assets, level: int) -> str: ...

    def html(self, assets: Assets, level: int) -> str: ...


def _inline_html(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _heading_md(title: str | None, level: int) -> str:
    return f"{'#' * level} {title}\n\n" if title else ""


def _heading_html(title: str | None, level: int) -> str:
    lv = min(level, 6)
    return f"<h{lv}>{html.escape(title)}</h{lv}>\n" if title else ""


@dataclass
class Text:
    """Paragraphs separated by blank lines; lines starting with ``- `` form a bullet list."""

    body: str
    title: str | None = None

    def markdown(self, assets: Assets, level: int) -> str:
        return _heading_md(self.title, level) + self.body.strip() + "\n\n"

    def html(self, assets: Assets, level: int) -> str:
        parts = [_heading_html(self.title, level)]
        for block in re.split(r"\n\s*\n", self.body.strip()):
            lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
            if lines and all(ln.startswith("- ") for ln in lines):
                items = "".join(f"<li>{_inline_html(ln[2:])}</li>" for ln in lines)
                parts.append(f"<ul>{items}</ul>\n")
            elif lines:
                parts.append(f"<p>{_inline_html(' '.join(lines))}</p>\n")
        return "".join(parts)


def _cell(v: Any, digits: int) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


@dataclass
class Table:
    """A table: ``columns`` (header) and ``rows`` (lists of cells). Floats print with ``digits``
    decimals (NaN as a dash); with ``bold_best`` the largest float of each column
    (``lower_better`` names columns where the smallest wins) is bold."""

    columns: list[str]
    rows: list[list[Any]]
    title: str | None = None
    caption: str | None = None
    digits: int = 4
    bold_best: bool = False
    lower_better: Sequence[str] = ()

    def _best(self) -> set[tuple[int, int]]:
        best: set[tuple[int, int]] = set()
        if not self.bold_best or len(self.rows) < 2:
            return best
        for j, col in enumerate(self.columns):
            vals = [
                (i, r[j])
                for i, r in enumerate(self.rows)
                if isinstance(r[j], float) and not math.isnan(r[j])
            ]
            if len(vals) < 2:
                continue
            pick = min if col in self.lower_better else max
            target = pick(v for _, v in vals)
            best.update((i, j) for i, v in vals if v == target)
        return best

    def markdown(self, assets: Assets, level: int) -> str:
        best = self._best()

        def fmt(i: int, j: int, v: Any) -> str:
            s = _cell(v, self.digits).replace("|", "\\|")
            return f"**{s}**" if (i, j) in best else s

        lines = [
            "| " + " | ".join(c.replace("|", "\\|") for c in self.columns) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(self.columns) - 1)) + "|",
        ]
        lines += [
            "| " + " | ".join(fmt(i, j, v) for j, v in enumerate(r)) + " |"
            for i, r in enumerate(self.rows)
        ]
        cap = f"\n{self.caption}\n" if self.caption else ""
        return _heading_md(self.title, level) + "\n".join(lines) + "\n" + cap + "\n"

    def html(self, assets: Assets, level: int) -> str:
        best = self._best()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = []
        for i, r in enumerate(self.rows):
            cells = []
            for j, v in enumerate(r):
                s = html.escape(_cell(v, self.digits))
                if (i, j) in best:
                    s = f"<strong>{s}</strong>"
                cells.append(f"<td>{s}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption>{_inline_html(self.caption)}</caption>" if self.caption else ""
        return (
            _heading_html(self.title, level)
            + f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>"
            + "".join(body)
            + "</tbody></table>\n"
        )


@dataclass
class Figure:
    """A matplotlib figure rendered once as PNG; ``name`` is its file name (letters, digits,
    ``-`` and ``_``) when written next to the report."""

    figure: MplFigure
    name: str
    title: str | None = None
    caption: str | None = None
    dpi: int = 110
    _png: bytes | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ValueError(f"figure name {self.name!r}: expected letters, digits, - and _")

    def png(self) -> bytes:
        if self._png is None:
            buf = io.BytesIO()
            self.figure.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
            self._png = buf.getvalue()
        return self._png

    def markdown(self, assets: Assets, level: int) -> str:
        src = assets.image(self.name, self.png())
        alt = self.title or self.name
        cap = f"\n{self.caption}\n" if self.caption else ""
        return _heading_md(self.title, level) + f"![{alt}]({src})\n{cap}\n"

    def html(self, assets: Assets, level: int) -> str:
        src = assets.image(self.name, self.png())
        alt = html.escape(self.title or self.name)
        cap = f"<figcaption>{_inline_html(self.caption)}</figcaption>" if self.caption else ""
        return (
            _heading_html(self.title, level)
            + f'<figure><img src="{src}" alt="{alt}">{cap}</figure>\n'
        )


@dataclass
class Group:
    """A titled list of sections, rendered one heading level below the group's title."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def add(self, *sections: Section) -> Group:
        self.sections.extend(sections)
        return self

    def markdown(self, assets: Assets, level: int) -> str:
        inner = "".join(s.markdown(assets, level + 1) for s in self.sections)
        return _heading_md(self.title, level) + inner

    def html(self, assets: Assets, level: int) -> str:
        inner = "".join(s.html(assets, level + 1) for s in self.sections)
        return f"<section>{_heading_html(self.title, level)}{inner}</section>\n"


class Report:
    """A titled sequence of sections; ``add`` returns the report so calls chain."""

    def __init__(self, title: str, sections: Sequence[Section] = ()) -> None:
        self.title = title
        self.sections: list[Section] = list(sections)

    def add(self, *sections: Section) -> Report:
        self.sections.extend(sections)
        return self

    def to_markdown(self, assets: Assets | None = None) -> str:
        """Markdown; figures embedded as data URIs unless ``assets`` writes them to files."""
        a = assets or Assets()
        return f"# {self.title}\n\n" + "".join(s.markdown(a, 2) for s in self.sections)

    def to_html(self, assets: Assets | None = None) -> str:
        """A standalone HTML page; figures embedded as base64 unless ``assets`` says files."""
        a = assets or Assets()
        body = "".join(s.html(a, 2) for s in self.sections)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>\n"
            f"<body>\n<h1>{html.escape(self.title)}</h1>\n{body}</body></html>\n"
        )

    def write(self, out_dir: str | Path, name: str = "report") -> dict[str, Path]:
        """Write ``<name>.md`` (figures as ``<name>_files/*.png`` next to it) and a
        self-contained ``<name>.html`` (figures embedded) into ``out_dir``; returns the paths
        (``markdown``, ``html``, ``figures``: the directory)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = out / f"{name}_files"
        md = out / f"{name}.md"
        md.write_text(self.to_markdown(Assets(files, prefix=f"{name}_files/")), encoding="utf-8")
        page = out / f"{name}.html"
        page.write_text(self.to_html(), encoding="utf-8")
        return {"markdown": md, "html": page, "figures": files}
