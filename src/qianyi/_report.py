"""Small helpers shared by the measurement reports: Markdown tables and atomic PNG files."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Sequence

from ._io import atomic_write


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.5 * 10 ** -digits:  # would print as 0.0000: show its size instead
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def md_cell(text: Any) -> str:
    """``text`` safe in a Markdown table cell: ``|`` (a column break) and ``<`` (raw HTML in most renderers)
    backslash-escaped, as CommonMark reads them (a domain named ``a|b.npz`` shifted every column after it)."""
    return str(text).replace("|", "\\|").replace("<", "\\<")


def md_cells(row: str) -> list[str]:
    """The cells of a Markdown table row, :func:`md_cell`'s escapes undone."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [c.replace("\\|", "|").replace("\\<", "<").strip() for c in re.split(r"(?<!\\)\|", row)]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A Markdown table (readable on screen too); floats with ``digits`` decimals, None as '–'; text cells
    through :func:`md_cell`."""
    header = [md_cell(h) for h in header]
    cells = [[md_cell(fmt(v, digits)) for v in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(header)]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in cells)])


def figure(figsize: tuple[float, float] = (6.0, 4.0)) -> Any:
    """A matplotlib Figure detached from pyplot: no backend is chosen or changed (PNG export works anywhere).
    Its texts are drawn as written: a ``$`` in a name (a file ``sales_$5_to_$10.npz``) is not read as matplotlib's
    math markup (two of them failed the plot)."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    class PlainFigure(Figure):
        def _plain(self) -> None:
            for text in self.findobj(Text):
                text.set_parse_math(False)

        def draw(self, renderer: Any) -> None:
            self._plain()
            super().draw(renderer)

        def tight_layout(self, *args: Any, **kwargs: Any) -> None:
            self._plain()
            super().tight_layout(*args, **kwargs)

    return PlainFigure(figsize=figsize)


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.0, 4.0), **kw: Any) -> tuple[Any, Any]:
    """Like ``plt.subplots`` but on a detached :func:`figure`."""
    fig = figure(figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()), mode="wb")
