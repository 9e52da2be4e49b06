"""Evaluation reports in Markdown and HTML, built from composable sections.

A :class:`Report` is a title and a list of sections; each section renders itself to Markdown
and to HTML:

- :class:`Text`: paragraphs with a small Markdown subset (``- `` bullets, ``**bold**``,
  `` `code` ``);
- :class:`Table`: rows of cells, numbers formatted, optionally the best value per column bold;
- :class:`Figure`: a matplotlib figure, saved as PNG (embedded as base64 in HTML, or written
  next to the report);
- :class:`Group`: a titled list of sections one heading level down (e.g. one of the book's
  seven steps holding its tables and plots).

Builders turn evaluation results into sections: :func:`metrics_table`, :func:`metric_bars`,
:func:`segment_table`, :func:`tuning_table`, :func:`backtest_table`, :func:`backtest_plot`,
and the bundles :func:`comparison_sections` and :func:`backtest_sections`. Figures are drawn
with ``matplotlib.figure.Figure`` (no pyplot), so no GUI backend or global state is touched.
The HTML is self-contained and static (no scripts), for a headless browser to load.
"""

from mlsd.evaluation.report import builders
from mlsd.evaluation.report.builders import *  # noqa: F403 - the builders are public
from mlsd.evaluation.report.sections import Assets, Figure, Group, Report, Section, Table, Text

__all__ = ["Assets", "Figure", "Group", "Report", "Section", "Table", "Text", *builders.__all__]
